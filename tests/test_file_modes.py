"""Files the user asked for (datasets, pairs, reports, label stores) follow the umask, as a plain write would,
though every one is written atomically (a temporary file renamed into place): never tempfile's private 0o600."""

from __future__ import annotations

import json
import os
import stat
from contextlib import contextmanager

import pytest

from prefgate.cli import app
from prefgate.data import read_dataset, write_records
from prefgate.label.store import Label, LabelStore
from prefgate.reportio import atomic_temp, write_json, write_text

PAIR = {"prompt": "Question: 2 + 2?", "chosen": " 4", "rejected": " 5"}


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture()
def records(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(PAIR) + "\n")
    return read_dataset(str(source)).records


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_new_outputs_get_0666_less_the_umask(records, tmp_path, mask, expected):
    with umask(mask):
        written = [write_records(records, tmp_path / name) for name in ("d.jsonl", "d.jsonl.gz", "d.parquet")]
        written += [write_json({"kind": "audit"}, tmp_path / "report.json"), write_text("<p>", tmp_path / "r.html")]
    assert {p.name: mode(p) for p in written} == {p.name: expected for p in written}
    assert read_dataset(str(tmp_path / "d.parquet")).records[0].chosen == " 4"  # still a complete, valid file
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left behind


def test_replacing_a_file_keeps_its_mode_as_a_plain_write_would(records, tmp_path):
    data, report = tmp_path / "d.jsonl", tmp_path / "report.json"
    with umask(0o022):
        write_records(records, data)
        write_json({}, report)
        os.chmod(data, 0o600)  # the user made them private: a rewrite must not widen them
        os.chmod(report, 0o640)
        write_records(records, data)
        write_json({"again": True}, report)
    assert (mode(data), mode(report)) == (0o600, 0o640)
    assert json.loads(report.read_text()) == {"again": True}


def test_atomic_temp_is_new_and_beside_the_target(tmp_path):
    with umask(0o022):
        first, second = atomic_temp(tmp_path / "x.json"), atomic_temp(tmp_path / "x.json")
    assert first != second and first.parent == tmp_path and first.name.startswith(".x.json.")
    assert first.stat().st_size == 0 and mode(first) == 0o644


def test_a_compacted_label_store_keeps_its_mode(tmp_path):
    store = LabelStore(tmp_path / "labels.jsonl")
    with umask(0o027):
        for preferred in ("chosen", "rejected"):  # the same (id, rater) twice: compaction drops one line
            store.append(Label(id="p1", preferred=preferred, rater="ann"))
        assert mode(store.path) == 0o640
        assert store.compact() == 1
    assert mode(store.path) == 0o640 and len(store.path.read_text().splitlines()) == 1


def test_the_cli_writes_datasets_with_the_umask(tmp_path, runner):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({**PAIR, "prompt": f"Q{i}?"}) + "\n" for i in range(20)))
    with umask(0o022):
        converted = runner.invoke(app, ["data", "convert", str(source), str(tmp_path / "out.jsonl")])
        split = runner.invoke(app, ["data", "split", str(source), "--out-dir", str(tmp_path / "parts")])
    assert converted.exit_code == 0 and split.exit_code == 0, converted.output + split.output
    assert mode(tmp_path / "out.jsonl") == 0o644
    assert {p.name: mode(p) for p in (tmp_path / "parts").iterdir()} == {"in.train.jsonl": 0o644,
                                                                      "in.eval.jsonl": 0o644}
