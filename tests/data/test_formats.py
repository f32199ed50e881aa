"""Every record format and every file format reads into the same canonical records."""

from __future__ import annotations

import csv
import gzip
import json

import pytest

from prefgate.data import PreferencePair, UnpairedExample, fingerprint, read_dataset, write_records
from prefgate.data.implicit import split_implicit
from prefgate.errors import InputError
from tests.conftest import write_jsonl

STANDARD = [
    {"prompt": "What is 2+2?", "chosen": " 4", "rejected": " 5", "category": "math", "meta": {"src": "x"}},
    {"prompt": "Capital of France?", "chosen": " Paris", "rejected": " Lyon", "rejection_type": "factual"},
]
CONVERSATIONAL = [
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
     "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}]},
]


def test_standard_records_keep_optional_and_unknown_fields(tmp_path):
    rows = [dict(STANDARD[0], source_url="http://a", score=0.5)]
    ds = read_dataset(write_jsonl(tmp_path / "a.jsonl", rows))
    rec = ds.records[0]
    assert isinstance(rec, PreferencePair) and not rec.conversational
    assert (rec.prompt, rec.chosen, rec.rejected, rec.category) == ("What is 2+2?", " 4", " 5", "math")
    assert rec.meta == {"src": "x"}
    assert rec.extra == {"source_url": "http://a", "score": 0.5}
    assert rec.to_dict()["source_url"] == "http://a"  # passed through on write
    assert len(rec.id) == 16


def test_conversational_records(tmp_path):
    ds = read_dataset(write_jsonl(tmp_path / "c.jsonl", CONVERSATIONAL))
    assert ds.conversational and ds.records[0].prompt[0]["role"] == "system"


def test_implicit_text_prompt_ends_at_last_shared_assistant_marker():
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: Fine, thanks."
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: Fine. Go away."
    prompt, c, r = split_implicit(chosen, rejected)
    assert prompt == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:"
    assert (c, r) == (" Fine, thanks.", " Fine. Go away.")  # shared "Fine" stays in both completions


def test_implicit_text_never_cuts_mid_turn_when_answers_share_words():
    prompt, c, r = split_implicit("\n\nHuman: q\n\nAssistant: I think yes", "\n\nHuman: q\n\nAssistant: I think no")
    assert prompt.endswith("\n\nAssistant:") and c == " I think yes" and r == " I think no"


def test_implicit_messages_prompt_is_shared_leading_messages():
    user = {"role": "user", "content": "hi"}
    chosen = [user, {"role": "assistant", "content": "hello"}]
    rejected = [user, {"role": "assistant", "content": "go away"}]
    prompt, c, r = split_implicit(chosen, rejected)
    assert prompt == [user] and c == chosen[1:] and r == rejected[1:]


def test_implicit_messages_first_difference_must_be_assistant():
    chosen = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    rejected = [{"role": "user", "content": "a"}, {"role": "user", "content": "c"}]
    with pytest.raises(InputError, match=r"field 'chosen\[1\].role'.*expected 'assistant'"):
        split_implicit(chosen, rejected)


def test_implicit_and_explicit_forms_give_the_same_fingerprint(tmp_path):
    implicit = [{"chosen": "\n\nHuman: q\n\nAssistant: yes", "rejected": "\n\nHuman: q\n\nAssistant: no"}]
    explicit = [{"prompt": "\n\nHuman: q\n\nAssistant:", "chosen": " yes", "rejected": " no"}]
    a = read_dataset(write_jsonl(tmp_path / "i.jsonl", implicit))
    b = read_dataset(write_jsonl(tmp_path / "e.jsonl", explicit))
    assert a.fingerprint == b.fingerprint and a.records[0].id == b.records[0].id


def test_unpaired_kto_records(tmp_path):
    rows = [{"prompt": "q", "completion": "good", "label": True}, {"prompt": "q", "completion": "bad", "label": False}]
    ds = read_dataset(write_jsonl(tmp_path / "k.jsonl", rows))
    assert not ds.paired and [r.label for r in ds.records] == [True, False]
    assert all(isinstance(r, UnpairedExample) for r in ds.records)


def _write_all_formats(tmp_path, rows):
    jsonl = write_jsonl(tmp_path / "d.jsonl", rows)
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress(jsonl.read_bytes()))
    arr = tmp_path / "d.json"
    arr.write_text(json.dumps(rows))
    return [jsonl, gz, arr]


def test_every_file_format_gives_the_same_fingerprint(tmp_path):
    paths = _write_all_formats(tmp_path, STANDARD)
    base = read_dataset(paths[0])
    paths.append(write_records(base.records, tmp_path / "d.parquet"))
    with open(tmp_path / "d.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["prompt", "chosen", "rejected", "category", "rejection_type", "meta"])
        writer.writeheader()
        for row in STANDARD:
            writer.writerow({**row, "meta": json.dumps(row["meta"]) if "meta" in row else ""})
    paths.append(tmp_path / "d.csv")
    import datasets

    columns = {"id", "prompt", "chosen", "rejected", "category", "rejection_type"}
    table = {c: [r.to_dict().get(c) for r in base.records] for c in columns}
    table["meta"] = [json.dumps(r.meta) for r in base.records]
    datasets.Dataset.from_dict(table).save_to_disk(str(tmp_path / "folder"))
    paths.append(tmp_path / "folder")
    prints = {p.name: read_dataset(p).fingerprint for p in paths}
    assert set(prints.values()) == {base.fingerprint}, prints


def test_conversational_parquet_round_trip_keeps_fingerprint(tmp_path):
    ds = read_dataset(write_jsonl(tmp_path / "c.jsonl", CONVERSATIONAL))
    back = read_dataset(write_records(ds.records, tmp_path / "c.parquet"))
    assert back.fingerprint == ds.fingerprint


def test_fingerprint_depends_on_content_and_order(tmp_path):
    ds = read_dataset(write_jsonl(tmp_path / "a.jsonl", STANDARD))
    assert fingerprint(ds.records[::-1]) != ds.fingerprint
    changed = [dict(STANDARD[0], chosen=" four"), STANDARD[1]]
    assert read_dataset(write_jsonl(tmp_path / "b.jsonl", changed)).fingerprint != ds.fingerprint
    assert len(ds.fingerprint) == 64


def test_given_ids_are_kept_and_duplicate_content_gets_suffixed_ids(tmp_path):
    rows = [dict(STANDARD[0], id=7), STANDARD[1], STANDARD[1]]
    ds = read_dataset(write_jsonl(tmp_path / "a.jsonl", rows))
    ids = [r.id for r in ds.records]
    assert ids[0] == "7" and ids[2] == ids[1] + "-2"


def test_hub_id_offline_fails_with_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(InputError) as err:
        read_dataset("no-such-org/no-such-dataset")
    assert str(err.value).startswith("no-such-org/no-such-dataset: cannot load hub dataset")
    assert "\n" not in str(err.value)
