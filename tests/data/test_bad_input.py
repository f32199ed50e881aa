"""Bad input: one clear line naming file, line and field, exit 2, never a traceback; or accepted by design.

Each case of the issue's list is here. The CLI cases run `prefgate data validate` in-process.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefgate.cli import app
from prefgate.data import read_dataset, write_records
from prefgate.errors import InputError
from tests.conftest import write_jsonl

GOOD = {"prompt": "q", "chosen": "a", "rejected": "b"}


def _fails(tmp_path, rows, expected: str):
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(InputError) as err:
        read_dataset(path)
    message = str(err.value)
    assert "\n" not in message
    assert message == expected.format(path=path), message


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([GOOD, "{not json"], "{path}:2: invalid JSON: Expecting property name enclosed in double quotes (column 2)"),
        ([{"prompt": "q", "chosen": "a"}],
         "{path}:1: field 'rejected': missing (paired records need chosen and rejected, and usually prompt)"),
        ([{"prompt": "q", "chosen": 3, "rejected": "b"}],
         "{path}:1: field 'chosen': expected a string or a list of messages, got int"),
        ([{"prompt": "", "chosen": "a", "rejected": "b"}], "{path}:1: field 'prompt': is empty"),
        ([{"prompt": "q", "chosen": [], "rejected": "b"}], "{path}:1: field 'chosen': is an empty list of messages"),
        ([dict(GOOD, id="x"), dict(GOOD, id="x", chosen="c")],
         "{path}:2: field 'id': duplicate id 'x' (first at {path}:1)"),
        ([{"prompt": [{"role": "human", "content": "hi"}], "chosen": [{"role": "assistant", "content": "a"}],
           "rejected": [{"role": "assistant", "content": "b"}]}],
         "{path}:1: field 'prompt[0].role': unknown role 'human', expected one of system, user, assistant, tool"),
        ([{"chosen": "Human: hi. Assistant: yes", "rejected": "Sure, no"}],
         "{path}:1: field 'rejected': implicit prompt: chosen and rejected have no shared prefix (looked for markers "
         "such as '\\n\\nAssistant:'); give an explicit 'prompt' field"),
        ([[1, 2]], "{path}:1: expected a JSON object, got list"),
        ([{"prompt": "q", "completion": "a", "label": "yes"}],
         "{path}:1: field 'label': expected true or false, got 'yes'"),
        ([GOOD, {"prompt": "q", "completion": "a", "label": True}],
         "{path}:2: is a standard unpaired record, but the first record ({path}:1) is standard paired; one dataset "
         "holds one format"),
        ([{"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}],
         "{path}:1: field 'chosen': expected a list of messages like the prompt, got string"),
    ],
    ids=["invalid-json", "missing-field", "number-for-text", "empty-prompt", "empty-message-list", "duplicate-id",
         "unknown-role", "implicit-no-shared-prefix", "not-an-object", "bad-label", "mixed-kinds", "mixed-shapes"],
)
def test_bad_rows_give_one_line_with_file_line_field(tmp_path, rows, expected):
    _fails(tmp_path, rows, expected)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(InputError, match=r"empty\.jsonl: no records \(empty\)$"):
        read_dataset(path)


def test_non_utf8_bytes_name_the_line_and_byte(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"prompt": "q\xff", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(InputError, match=r"d\.jsonl:2: not valid UTF-8 \(byte 0xff at column 14\)$"):
        read_dataset(path)


def test_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(GOOD) + "\r\n").encode() * 2 + b"\r\n")
    ds = read_dataset(path)
    assert len(ds) == 2 and ds.records[0].prompt == "q"


def test_empty_completion_and_identical_pair_are_accepted(tmp_path):
    """Accepted by design: an empty answer is a real answer (HH-RLHF has them); the audit flags chosen == rejected."""
    rows = [{"prompt": "q", "chosen": "", "rejected": "b"}, {"prompt": "q2", "chosen": "same", "rejected": "same"}]
    ds = read_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    assert [r.chosen for r in ds.records] == ["", "same"]


def test_ten_megabyte_line_is_accepted(tmp_path):
    big = dict(GOOD, chosen="x" * 10_000_000)
    ds = read_dataset(write_jsonl(tmp_path / "big.jsonl", [big, GOOD]))
    assert len(ds.records[0].chosen) == 10_000_000


def test_parquet_with_wrong_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"question": ["q"], "answer": ["a"]}), path)
    with pytest.raises(InputError, match=r"bad\.parquet: columns \['answer', 'question'\] match no record format"):
        read_dataset(path)


def test_skip_invalid_writes_every_rejected_line_verbatim_with_reason(tmp_path):
    rows = [GOOD, "{broken", {"prompt": "q", "chosen": 1, "rejected": "b"}, dict(GOOD, chosen="c")]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    sidecar = tmp_path / "side.jsonl"
    ds = read_dataset(path, skip_invalid=True, rejected_path=sidecar)
    assert len(ds) == 2 and len(ds.rejected) == 2
    lines = [json.loads(x) for x in sidecar.read_text().splitlines()]
    assert [x["line"] for x in lines] == ["{broken", json.dumps(rows[2])]
    assert lines[1]["reason"].endswith("field 'chosen': expected a string or a list of messages, got int")
    assert lines[0]["where"] == f"{path}:2"


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, runner):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, {"prompt": "q", "chosen": 3, "rejected": "b"}])
    result = runner.invoke(app, ["data", "validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {path}:2: field 'chosen': expected a string or a list of messages, got int"
    assert "Traceback" not in result.output


def test_cli_skip_invalid_reports_the_count_and_sidecar(tmp_path, runner, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, "{bad"])
    result = runner.invoke(app, ["data", "convert", str(path), "out.jsonl", "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "skipped 1 invalid rows; each, with its reason, is in d.rejected.jsonl" in result.stderr
    assert (tmp_path / "d.rejected.jsonl").exists()


def test_cli_missing_file_and_unsupported_type(tmp_path, runner):
    result = runner.invoke(app, ["data", "validate", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and "nope.jsonl: no such file or directory" in result.stderr
    (tmp_path / "x.txt").write_text("hi")
    result = runner.invoke(app, ["data", "validate", str(tmp_path / "x.txt")])
    assert result.exit_code == 2 and "unsupported file type" in result.stderr


def test_write_to_unwritable_place_is_exit_2(tmp_path, runner):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    result = runner.invoke(app, ["data", "convert", str(path), str(tmp_path / "d.jsonl" / "x.jsonl")])
    assert result.exit_code == 2 and result.stderr.splitlines()[-1] == f"error: {path}: File exists"
    with pytest.raises(InputError, match="unsupported output type"):
        write_records(read_dataset(path).records, tmp_path / "out.txt")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["prompt", "chosen", "rejected", "completion", "label", "id", "meta", "category",
                               "role", "content", "x"])
rows = st.dictionaries(field_names, json_values | st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "robot"]), "content": json_values}), max_size=3), max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(rows | json_values | st.text(max_size=30), min_size=1, max_size=5))
def test_random_json_lines_never_raise_anything_but_input_error(tmp_path, lines):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    try:
        ds = read_dataset(path)
    except InputError as err:
        assert "\n" not in str(err)
    else:
        assert len(ds) >= 1 and len(ds.fingerprint) == 64
