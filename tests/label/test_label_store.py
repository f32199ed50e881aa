"""The labels file: appended and fsynced per answer, last line wins, torn tail tolerated, safe to share."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from prefgate.errors import InputError
from prefgate.label import Label, LabelStore, latest, read_labels_file


def label(rid: str, preferred: str = "chosen", rater: str = "alice", **kw) -> Label:
    return Label(rid, preferred, rater, **kw)


def test_every_append_is_fsynced_before_it_returns(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    store = LabelStore(tmp_path / "sub" / "labels.jsonl")
    store.append(label("p1", position=1, a="chosen", time="t"))
    assert len(synced) == 2  # the file, and the folder that got a new file
    store.append(label("p2"))
    assert len(synced) == 3
    rows = [json.loads(line) for line in store.path.read_text().splitlines()]
    assert rows[0] == {"id": "p1", "preferred": "chosen", "rater": "alice", "position": 1, "a": "chosen", "time": "t"}


def test_last_line_wins_and_compact_keeps_only_it(tmp_path):
    store = LabelStore(tmp_path / "labels.jsonl")
    for lab in (label("p1"), label("p2"), label("p1", "tie"), label("p1", "rejected", rater="bob")):
        store.append(lab)
    assert [(x.id, x.preferred, x.rater) for x in latest(store.read())] == \
        [("p2", "chosen", "alice"), ("p1", "tie", "alice"), ("p1", "rejected", "bob")]
    assert store.compact() == 1
    assert [(x.id, x.preferred) for x in store.read()] == [("p2", "chosen"), ("p1", "tie"), ("p1", "rejected")]
    assert store.compact() == 0


def test_a_torn_last_line_is_ignored_then_dropped(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(label("p1").to_json() + "\n" + '{"id": "p2", "prefe')
    assert [x.id for x in read_labels_file(path)] == ["p1"]
    store = LabelStore(path)
    store.append(label("p3"))  # cuts the torn tail first
    assert [x.id for x in store.read()] == ["p1", "p3"]
    path.write_text(label("p1").to_json() + "\n" + '{"id": "p2"')
    assert store.compact() == 1 and path.read_text() == label("p1").to_json() + "\n"


def test_a_bad_line_elsewhere_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text('{"id": "p1", "preferred": "maybe", "rater": "a"}\n')
    with pytest.raises(InputError, match=r"labels.jsonl:1: field 'preferred': expected one of chosen, rejected, tie"):
        read_labels_file(path)
    path.write_text("not json\n" + label("p1").to_json() + "\n")
    with pytest.raises(InputError, match=r"labels.jsonl:1: not valid JSON"):
        read_labels_file(path)
    assert read_labels_file(tmp_path / "missing.jsonl") == []


def _writer(path: str, rater: str, n: int) -> None:
    store = LabelStore(path)
    for i in range(n):
        store.append(Label(f"p{i}", "chosen", rater))
        if i % 5 == 4:
            store.compact()


def test_two_raters_appending_and_compacting_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "labels.jsonl")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, rater, 40)) for rater in ("alice", "bob")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    got = {(x.id, x.rater) for x in read_labels_file(path)}
    assert got == {(f"p{i}", r) for i in range(40) for r in ("alice", "bob")}
