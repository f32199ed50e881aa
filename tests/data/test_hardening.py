"""Issue 18, input side: damaged files, JSON the standard library reads wrongly, silent loss in CSV and JSON,
and hub ids offline. Every case is one line naming the file (and line and field), exit code 2, or a
rejected row in the sidecar under --skip-invalid."""

from __future__ import annotations

import gzip
import json
import time

import pytest

from prefgate.cli import app
from prefgate.data import read_dataset
from prefgate.errors import InputError

GOOD = {"prompt": "q", "chosen": "a", "rejected": "b"}
JSONL = (json.dumps(GOOD) + "\n").encode() * 200


def _validate(runner, *args):
    result = runner.invoke(app, ["data", "validate", *map(str, args)])
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(("name", "data"), [
    ("half.jsonl.gz", gzip.compress(JSONL)[: len(gzip.compress(JSONL)) // 2]),
    ("plain.jsonl.gz", JSONL),
    ("half.json.gz", gzip.compress(json.dumps([GOOD] * 50).encode())[:40]),
], ids=["truncated-jsonl", "not-gzip", "truncated-json"])
def test_a_damaged_gz_file_is_one_line_naming_it(tmp_path, runner, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    result = _validate(runner, path)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"error: {path}: corrupt or truncated gzip file (")


def test_a_damaged_gz_file_is_not_skipped_row_by_row(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    blob = gzip.compress(JSONL)
    path.write_bytes(blob[: len(blob) - 10])  # the last bytes of the deflate stream and the trailer cut off
    with pytest.raises(InputError, match="corrupt or truncated gzip file"):
        read_dataset(path, skip_invalid=True, rejected_path=tmp_path / "r.jsonl")


@pytest.mark.parametrize(("line", "expected"), [
    ('{"prompt": "q", "chosen": "a", "chosen": "c", "rejected": "b"}',
     ":2: field 'chosen': duplicate key in one JSON object (its first value would be silently replaced)"),
    ('{"prompt": "q\\udc00", "chosen": "a", "rejected": "b"}',
     ":2: field 'prompt': holds a lone surrogate escape \\udc00 (not valid Unicode)"),
    ('{"prompt": "q", "chosen": "a", "rejected": "b", "meta": ' + "[" * 50_000 + "]" * 50_000 + "}",
     ":2: JSON nested too deeply to read"),
    ('{"prompt": "q", "chosen": "a", "rejected": "b", "n": ' + "1" * 4400 + "}",
     ":2: a number too long to read (Exceeds the limit (4300 digits)"),
], ids=["duplicate-key", "lone-surrogate", "deep-nesting", "huge-integer"])
def test_json_the_standard_library_gets_wrong_is_a_bad_row(tmp_path, runner, monkeypatch, line, expected):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + line + "\n", encoding="utf-8")
    strict = _validate(runner, path)
    assert strict.exit_code == 2, strict.output
    assert strict.stderr.startswith(f"error: {path}{expected}"), strict.stderr
    lenient = _validate(runner, path, "--skip-invalid")
    assert lenient.exit_code == 0, lenient.output
    rejected = [json.loads(x) for x in (tmp_path / "d.rejected.jsonl").read_text().splitlines()]
    assert [r["where"] for r in rejected] == [f"{path}:2"]
    assert rejected[0]["line"] == line  # verbatim


def test_duplicate_keys_in_a_json_array_file_and_a_parquet_meta_string(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"prompt": "q", "chosen": "a", "rejected": "b", "rejected": "c"}]')
    with pytest.raises(InputError, match=r"d\.json: field 'rejected': duplicate key"):
        read_dataset(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["q"], "chosen": ["a"], "rejected": ["b"], "meta": ['{"k": 1, "k": 2}']}),
                   tmp_path / "d.parquet")
    with pytest.raises(InputError, match=r"d\.parquet:row 1: field 'meta': in its JSON string: duplicate key"):
        read_dataset(tmp_path / "d.parquet")


def test_a_csv_row_with_extra_cells_is_a_bad_row_never_a_dropped_cell(tmp_path, runner, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "d.csv"
    path.write_text("prompt,chosen,rejected\nq,a,b\nq2,a2,b2,surplus\n", encoding="utf-8")
    strict = _validate(runner, path)
    assert strict.exit_code == 2
    assert strict.stderr.strip() == f"error: {path}:3: 4 cells but the header has 3 columns"
    lenient = _validate(runner, path, "--skip-invalid")
    assert lenient.exit_code == 0 and "1 valid records" in lenient.stdout
    (rejected,) = [json.loads(x) for x in (tmp_path / "d.rejected.jsonl").read_text().splitlines()]
    assert rejected["line"] == json.dumps(["q2", "a2", "b2", "surplus"])


def test_a_csv_with_a_duplicate_column_stops(tmp_path, runner):
    path = tmp_path / "d.csv"
    path.write_text("prompt,chosen,rejected,chosen\nq,a,b,c\n", encoding="utf-8")
    result = _validate(runner, path, "--skip-invalid")
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {path}:1: duplicate column 'chosen' in the header (one of its cells "
                                     "would be silently dropped)")


def test_a_csv_messages_cell_with_a_duplicate_key_is_a_bad_row(tmp_path):
    path = tmp_path / "d.csv"
    cell = '"[{""role"": ""user"", ""content"": ""a"", ""content"": ""b""}]"'
    path.write_text(f"prompt,chosen,rejected\n{cell},x,y\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"d\.csv:2: field 'prompt': duplicate key .* \(at content\)$"):
        read_dataset(path)


def test_a_hub_id_fails_at_once_when_the_hub_cannot_be_reached(monkeypatch):
    """No offline switch set: the connection probe (here to a closed local port) decides in milliseconds."""
    from prefgate.hub import _probe

    _probe.cache_clear()
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    start = time.perf_counter()
    with pytest.raises(InputError) as err:
        read_dataset("no-such-org/no-such-dataset")
    assert time.perf_counter() - start < 5
    assert str(err.value).startswith("no-such-org/no-such-dataset: cannot load hub dataset: no such local file or "
                                     "folder, and the hub cannot be asked (cannot reach 127.0.0.1:9")
    _probe.cache_clear()


def test_a_hub_model_id_searches_only_the_local_cache_when_offline(monkeypatch):
    from transformers import AutoModelForCausalLM  # noqa: F401 (imported before the clock starts)

    from prefgate.lm.load import load_causal_lm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(InputError, match=r"^no-such-org/no-such-model: cannot load model: .*HF_HUB_OFFLINE is set; "
                                         r"only the local cache was searched\)$"):
        load_causal_lm("no-such-org/no-such-model")
    assert time.perf_counter() - start < 5
