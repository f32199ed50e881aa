"""Readers: every supported source as a stream of raw rows, each with the place it came from.

Sources: JSONL (also `.gz`), JSON (an array of objects), Parquet, CSV, a `datasets.save_to_disk`
folder, or a hub dataset id (passed to `datasets.load_dataset`; needs the network).
A row that cannot even be decoded (bad UTF-8, bad JSON, a duplicate key: see `prefgate.jsonio`; a CSV row
with more cells than the header) comes out with `error` set instead of `row`, so the loader can stop on it
or skip it into the sidecar. A problem with the source as a whole (a corrupt or truncated `.gz`, a duplicate
CSV column, a bad JSON array file) raises InputError. Blank lines in JSONL are ignored; a UTF-8 BOM and CRLF
line ends are accepted.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefgate.errors import InputError
from prefgate.hub import hub_unreachable
from prefgate.jsonio import InvalidJSON, gzip_errors, loads, open_binary

# The column sets a columnar file (Parquet, CSV, datasets folder) must contain, one per record format.
FORMAT_COLUMNS = ({"chosen", "rejected"}, {"prompt", "completion"}, {"messages"})


@dataclass(slots=True)
class RawRow:
    where: str  # "path:line" (JSONL, CSV), "path:item N" (JSON), "path:row N" (Parquet, datasets)
    row: Any = None
    raw: str | None = None  # the verbatim line, for the rejected-rows sidecar
    error: InputError | None = None


def iter_rows(source: str | Path, *, split: str | None = None) -> Iterator[RawRow]:
    """Yield the raw rows of `source`; raises InputError for a problem with the source as a whole."""
    path = Path(source)
    name = path.name.lower()
    if path.is_dir():
        yield from _iter_datasets_folder(path, split)
    elif not path.exists():
        if _looks_like_hub_id(str(source)):
            yield from _iter_hub(str(source), split)
        else:
            raise InputError("no such file or directory", where=str(source))
    elif name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        yield from _iter_jsonl(path)
    elif name.endswith((".json", ".json.gz")):
        yield from _iter_json_array(path)
    elif name.endswith(".parquet"):
        yield from _iter_parquet(path)
    elif name.endswith(".csv"):
        yield from _iter_csv(path)
    else:
        raise InputError("unsupported file type; expected .jsonl, .jsonl.gz, .json, .parquet, .csv or a "
                         "datasets folder", where=str(source))


def _iter_jsonl(path: Path) -> Iterator[RawRow]:
    with gzip_errors(path), open_binary(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            where = f"{path}:{lineno}"
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as err:
                raw = line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
                yield RawRow(where, raw=raw, error=InputError(
                    f"not valid UTF-8 (byte 0x{line[err.start]:02x} at column {err.start + 1})", where=where))
                continue
            if not text.strip():
                continue
            try:
                yield RawRow(where, row=loads(text, where, line=True), raw=text.rstrip("\r\n"))
            except InputError as err:
                yield RawRow(where, raw=text.rstrip("\r\n"), error=err)


def _iter_json_array(path: Path) -> Iterator[RawRow]:
    with gzip_errors(path), open_binary(path) as fh:
        data = fh.read()
    rows = loads(data, str(path))
    if not isinstance(rows, list):
        raise InputError("expected a JSON array of records (use .jsonl for one record per line)", where=str(path))
    for i, row in enumerate(rows, start=1):
        yield RawRow(f"{path}:item {i}", row=row, raw=json.dumps(row, ensure_ascii=False))


def check_columns(columns: list[str], where: str) -> None:
    """A columnar source must hold the columns of one record format."""
    if not any(need <= set(columns) for need in FORMAT_COLUMNS):
        raise InputError(f"columns {sorted(columns)} match no record format: expected prompt/chosen/rejected, "
                         "chosen/rejected (implicit prompt), prompt/completion(/label) or messages", where=where)


def _iter_columnar(rows: Iterator[dict], where: str) -> Iterator[RawRow]:
    for i, row in enumerate(rows, start=1):
        row = _drop_nulls(row)
        yield RawRow(f"{where}:row {i}", row=row, raw=json.dumps(row, ensure_ascii=False, default=str))


def _drop_nulls(row: dict) -> dict:
    """Columnar formats fill absent fields with null, in nested structs too (a user message gets `tool_calls:
    null` because an assistant message has them; a tool call's arguments get every key any call uses): drop
    them again, at every depth."""
    return {key: _without_nulls(value) for key, value in row.items() if value is not None}


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return _drop_nulls(value)
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _iter_parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a bad file
        raise InputError(f"cannot read Parquet: {err}", where=str(path)) from None
    check_columns(table.column_names, str(path))
    rows = (row for batch in table.to_batches(max_chunksize=8192) for row in batch.to_pylist())
    yield from _iter_columnar(rows, str(path))


def _iter_csv(path: Path) -> Iterator[RawRow]:
    """Rows of a CSV file with a header. A duplicate column name stops the read; a row with more cells than
    the header has columns is a bad row (never a silently dropped cell)."""
    csv.field_size_limit(sys.maxsize)
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            _check_header(header, path)
            for cells in reader:
                yield _csv_row(header, cells, f"{path}:{reader.line_num}")
    except UnicodeDecodeError as err:
        raise InputError(f"not valid UTF-8 (byte at offset {err.start})", where=str(path)) from None
    except csv.Error as err:
        raise InputError(f"invalid CSV: {err}", where=str(path)) from None


def _check_header(header: list[str], path: Path) -> None:
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise InputError(f"duplicate column {name!r} in the header (one of its cells would be silently "
                             "dropped)", where=f"{path}:1")
        seen.add(name)
    check_columns(header, str(path))


def _csv_row(header: list[str], cells: list[str], where: str) -> RawRow:
    if len(cells) > len(header):
        raw = json.dumps(cells, ensure_ascii=False)
        return RawRow(where, raw=raw, error=InputError(
            f"{len(cells)} cells but the header has {len(header)} columns", where=where))
    row = {}
    try:
        for name, value in zip(header, cells, strict=False):
            if value != "":
                row[name] = _csv_value(value, where, name)
    except InputError as err:
        return RawRow(where, raw=json.dumps(cells, ensure_ascii=False), error=err)
    return RawRow(where, row=row, raw=json.dumps(row, ensure_ascii=False))


def _csv_value(value: str, where: str, column: str) -> Any:
    """CSV cells are text; a cell holding a JSON list of messages is read as messages."""
    if value.startswith("[{") and '"role"' in value:
        try:
            parsed = loads(value, where, line=True)
        except InvalidJSON:
            return value
        except InputError as err:
            inner = f" (at {err.field})" if err.field else ""
            raise InputError(err.message + inner, where=where, field=column) from None
        if isinstance(parsed, list) and all(isinstance(m, dict) and "role" in m for m in parsed):
            return parsed
    return value


def _select_split(obj: Any, split: str | None, where: str) -> Any:
    if not hasattr(obj, "keys"):  # a single Dataset
        return obj
    splits = list(obj.keys())
    if split is None and len(splits) == 1:
        split = splits[0]
    if split not in splits:
        raise InputError(f"choose a split with --split: this dataset has {', '.join(splits)}", where=where)
    return obj[split]


def _iter_datasets_folder(path: Path, split: str | None) -> Iterator[RawRow]:
    import datasets

    try:
        obj = datasets.load_from_disk(str(path))
    except Exception as err:
        raise InputError(f"not a datasets folder (datasets.load_from_disk failed: {err})", where=str(path)) from None
    ds = _select_split(obj, split, str(path))
    check_columns(ds.column_names, str(path))
    yield from _iter_columnar(iter(ds), str(path))


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/")) and "." not in parts[1][-8:]


def _iter_hub(repo_id: str, split: str | None) -> Iterator[RawRow]:
    why = hub_unreachable("HF_DATASETS_OFFLINE")
    if why:  # fail now, not after datasets' retries (tens of seconds)
        raise InputError(f"cannot load hub dataset: no such local file or folder, and the hub cannot be asked "
                         f"({why}); offline, pass a local file or folder", where=repo_id)
    import datasets

    try:
        ds = datasets.load_dataset(repo_id, split=split or "train")
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"cannot load hub dataset (no such local file, and datasets.load_dataset failed: "
                         f"{reason}); offline, pass a local file or folder", where=repo_id) from None
    check_columns(ds.column_names, repo_id)
    yield from _iter_columnar(iter(ds), repo_id)
