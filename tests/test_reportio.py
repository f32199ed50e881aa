"""prefgate.reportio: the report header, reading and writing JSON, a file's sha256."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from prefgate import __version__
from prefgate.errors import InputError
from prefgate.reportio import header, now, read_json, read_json_with_sha256, sha256_file, write_json


def test_header_puts_the_contract_fields_first_then_the_inputs():
    report = {**header("eval", 3, model={"path": "m"}, suite={"path": "s"}), "overall": {}}
    assert list(report) == ["kind", "version", "created", "prefgate_version", "model", "suite", "overall"]
    assert report["kind"] == "eval" and report["version"] == 3 and report["prefgate_version"] == __version__
    assert report["created"].endswith("+00:00") and len(report["created"]) == len(now()) == 25
    assert header("gate", 1, created="2020-01-01T00:00:00+00:00")["created"] == "2020-01-01T00:00:00+00:00"


def test_write_then_read_round_trips_atomically(tmp_path):
    obj = {"name": "café", "n": [1, 2]}
    path = write_json(obj, tmp_path / "sub" / "r.json")
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    assert read_json(path) == obj
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]  # no temporary file left behind
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask  # as open() would make it, not mkstemp's 0600
    read = read_json_with_sha256(path)
    assert read.data == obj and read.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == sha256_file(path)


@pytest.mark.parametrize("content, message", [
    (None, "missing.json: no such file"),
    ("{not json", r"bad.json:1: not a valid JSON file: Expecting property name"),
    ("[1, 2]", r"bad.json: expected a JSON object \(a run manifest\), got list"),
    ('{"a": 1, "a": 2}', "bad.json: field 'a': duplicate key"),
])
def test_read_json_fails_with_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / ("missing.json" if content is None else "bad.json")
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message) as err:
        read_json(path, what="a run manifest")
    assert "\n" not in str(err.value)


def test_read_json_missing_ok_and_folders(tmp_path):
    assert read_json(tmp_path / "nope.json", missing_ok=True) is None
    with pytest.raises(InputError, match="expected a JSON file, got a folder"):
        read_json(tmp_path)
