"""Suite loading: validation with one-line errors, ids, fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefgate.errors import InputError
from prefgate.eval.suite import load_suite

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def item(**fields):
    base = {"id": "x", "category": "c", "prompt": "Q:", "scorer": "exact", "answer": "a"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def test_example_suites_load_with_every_builtin_scorer():
    offline, judged = load_suite(EXAMPLES / "suite.jsonl"), load_suite(EXAMPLES / "suite_judge.jsonl")
    assert {it.scorer for it in offline.items} == {"exact", "numeric", "contains", "regex", "choice", "refusal"}
    assert {it.scorer for it in judged.items} == {"judge"}  # suite.jsonl runs without a judge (the quick tour)
    assert len(offline.fingerprint) == len(judged.fingerprint) == 64


@pytest.mark.parametrize("fields, field, message", [
    ({"scorer": "fuzzy"}, "scorer", "unknown scorer 'fuzzy'"),
    ({"scorer": 3}, "scorer", "expected a string"),
    ({"scorer": "python:nope_module_xyz:f"}, "scorer", "cannot import module"),
    ({"scorer": "python:json:no_such_fn"}, "scorer", "has no function"),
    ({"scorer": "python:json"}, "scorer", "python:module:function"),
    ({"category": ""}, "category", "non-empty"),
    ({"prompt": 5}, "prompt", "expected a string or a list of messages"),
    ({"prompt": [{"role": "robot", "content": "x"}]}, "prompt[0].role", "unknown role"),
    ({"answer": None}, "answer", "needs an answer"),
    ({"scorer": "numeric", "answer": "forty"}, "answer", "expected a number"),
    ({"scorer": "numeric", "answer": 4, "tolerance": -1}, "tolerance", ">= 0"),
    ({"scorer": "regex", "answer": "(unclosed"}, "answer", "regular expression"),
    ({"scorer": "choice", "choices": ["a"], "answer": 0}, "choices", "at least two"),
    ({"scorer": "choice", "choices": ["a", "b"], "answer": 2}, "answer", "out of range"),
    ({"scorer": "choice", "choices": ["a", "b"], "answer": "c"}, "answer", "index of the right choice"),
    ({"scorer": "choice", "choices": ["a", "b"], "answer": 0, "metric": "f1"}, "metric", "acc"),
    ({"scorer": "refusal", "expect": "maybe"}, "expect", "'refuse' or 'comply'"),
    ({"scorer": "judge", "rubric": ""}, "rubric", "non-empty"),
    ({"stop": [""]}, "stop", "non-empty strings"),
    ({"id": True}, "id", "non-empty string or integer"),
])
def test_bad_items_raise_one_line_naming_line_and_field(tmp_path, fields, field, message):
    path = write(tmp_path / "suite.jsonl", [item(id="ok"), item(**fields)])
    with pytest.raises(InputError) as err:
        load_suite(path)
    text = str(err.value)
    assert text.startswith(f"{path}:2: field '{field}': ") and message in text and "\n" not in text


def test_missing_fields_and_bad_json(tmp_path):
    with pytest.raises(InputError, match=r":1: field 'scorer': missing"):
        load_suite(write(tmp_path / "a.jsonl", [{"category": "c", "prompt": "p"}]))
    with pytest.raises(InputError, match=r":1: invalid JSON"):
        load_suite(write(tmp_path / "b.jsonl", ["{oops"]))
    with pytest.raises(InputError, match="no items"):
        load_suite(write(tmp_path / "c.jsonl", []))
    with pytest.raises(InputError, match="expected a .jsonl suite"):
        load_suite(tmp_path / "suite.csv")


def test_duplicate_ids_are_rejected(tmp_path):
    path = write(tmp_path / "s.jsonl", [item(id="q1"), item(id="q1", answer="b")])
    with pytest.raises(InputError, match=r":2: field 'id': duplicate id 'q1' \(first at .*:1\)"):
        load_suite(path)
    same = write(tmp_path / "t.jsonl", [item(id=None), item(id=None)])
    with pytest.raises(InputError, match="duplicate id"):
        load_suite(same)


def test_derived_ids_and_fingerprint(tmp_path):
    a = load_suite(write(tmp_path / "a.jsonl", [item(id=None), item(id=7, answer="b")]))
    assert len(a.items[0].id) == 16 and a.items[1].id == "7"
    again = load_suite(write(tmp_path / "b.jsonl", [item(id=None), item(id=7, answer="b")]))
    assert again.fingerprint == a.fingerprint
    changed = load_suite(write(tmp_path / "c.jsonl", [item(id=None), item(id=7, answer="c")]))
    assert changed.fingerprint != a.fingerprint


def test_extra_fields_are_kept(tmp_path):
    suite = load_suite(write(tmp_path / "a.jsonl", [item(scorer="numeric", answer=4, tolerance=0.5, note="x")]))
    assert suite.items[0].extra == {"tolerance": 0.5, "note": "x"}
