"""The one JSON loader for user files: what `json.loads` lets through silently or raises as a traceback."""

from __future__ import annotations

import gzip
import json

import pytest

from prefgate.errors import InputError
from prefgate.jsonio import InvalidJSON, gzip_errors, loads, open_binary, read_json_file


def test_plain_json_is_read_as_json_loads_reads_it():
    text = '{"a": [1, 2.5, "x", null, true], "b": {"c": "\\ud83d\\ude00"}}'
    assert loads(text, "f.json") == json.loads(text)
    assert loads(b"\xef\xbb\xbf[1]", "f.json") == [1]  # a UTF-8 BOM


@pytest.mark.parametrize(("text", "expected"), [
    ('{"a": 1, "a": 2}', "f.json: field 'a': duplicate key in one JSON object (its first value would be silently "
                         "replaced)"),
    ('{"x": [{"role": "user", "role": "assistant"}]}', "f.json: field 'role': duplicate key"),
    ('{"a": "\\ud800"}', "f.json: field 'a': holds a lone surrogate escape \\ud800 (not valid Unicode)"),
    ('{"a": ["ok", {"b": "x\\uDFFFy"}]}', "f.json: field 'a[1].b': holds a lone surrogate escape \\udfff"),
    ('{"\\ud800": 1}', "f.json: field '\\ud800': a key holds a lone surrogate escape"),
    ("[" * 100_000 + "]" * 100_000, "f.json: JSON nested too deeply to read"),
    ('{"n": ' + "9" * 5000 + "}", "f.json: a number too long to read (Exceeds the limit (4300 digits) for integer "
                                 "string conversion: value has 5000 digits)"),
    ('{"a": 1,}', "f.json:1: invalid JSON: Expecting property name enclosed in double quotes (column 9)"),
])
def test_refused_with_one_line(text, expected):
    with pytest.raises(InputError) as err:
        loads(text, "f.json")
    assert str(err.value).startswith(expected), str(err.value)
    assert "\n" not in str(err.value)


def test_a_syntax_error_is_invalid_json_and_names_the_line_of_a_whole_file():
    with pytest.raises(InvalidJSON, match=r"^f\.json:3: not a valid JSON file: Expecting value \(column 2\)$"):
        loads('{\n"a":\n }', "f.json", what="not a valid JSON file")
    with pytest.raises(InvalidJSON, match=r"^f\.jsonl:7: invalid JSON: .*\(column 2\)$"):
        loads("{x", "f.jsonl:7", line=True)


def test_an_escaped_backslash_before_u_d800_is_not_a_surrogate():
    assert loads('{"a": "\\\\ud800"}', "f.json") == {"a": "\\ud800"}


def test_bytes_that_are_not_utf8_name_the_offset():
    with pytest.raises(InputError, match=r"^f\.json: not valid UTF-8 \(byte 0xff at offset 7\)$"):
        loads(b'{"a": "\xff"}', "f.json")


def test_read_json_file_missing_and_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_json_file(tmp_path / "nope.json")
    with pytest.raises(InputError, match="expected a JSON file, got a folder"):
        read_json_file(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "not-gzip", "corrupt-body"])
def test_gzip_errors_become_one_input_error(tmp_path, damage):
    blob = gzip.compress(b'{"a": 1}\n' * 2000)
    data = {"truncated": blob[: len(blob) // 2], "not-gzip": b"plain text\n",
            "corrupt-body": blob[:20] + bytes(b ^ 0xFF for b in blob[20:60]) + blob[60:]}[damage]
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(data)
    with pytest.raises(InputError) as err, gzip_errors(path), open_binary(path) as fh:
        fh.read()
    assert str(err.value).startswith(f"{path}: corrupt or truncated gzip file (")
