"""Write records in the canonical explicit-prompt form: JSONL (optionally .gz) or Parquet.

Writes are atomic: a temporary file in the same folder, renamed into place when complete, with the
permissions a plain write would give (`prefgate.reportio.atomic_temp`: the umask's, or the replaced file's).
In Parquet, `meta`, `tools` and `chat_template_kwargs` are stored as JSON strings (free-form dicts, such as
function schemas, do not fit one column type); the readers turn them back, so a round trip keeps the fingerprint.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from prefgate.data.records import TEMPLATE_FIELDS, Record
from prefgate.errors import InputError
from prefgate.reportio import atomic_temp

JSON_STRING_COLUMNS = ("meta", *TEMPLATE_FIELDS)


def write_records(records: list[Record], path: str | Path) -> Path:
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        writer = _write_jsonl
    elif name.endswith(".parquet"):
        writer = _write_parquet
    else:
        raise InputError("unsupported output type; expected .jsonl, .jsonl.gz or .parquet", where=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_temp(path)
    try:
        writer(records, tmp, gz=name.endswith(".gz"))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write_jsonl(records: list[Record], path: Path, *, gz: bool) -> None:
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")


def _write_parquet(records: list[Record], path: Path, *, gz: bool) -> None:  # noqa: ARG001 - Parquet compresses itself
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for rec in records:
        row = rec.to_dict()
        for name in JSON_STRING_COLUMNS:
            if name in row:
                row[name] = json.dumps(row[name], ensure_ascii=False, sort_keys=True)
        rows.append(row)
    columns = list(dict.fromkeys(key for row in rows for key in row))  # from_pylist reads only the first row's keys
    try:
        table = pa.Table.from_pydict({c: [row.get(c) for row in rows] for c in columns})
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise InputError(f"cannot write Parquet (fields with mixed types across records?): {err}",
                         where=str(path)) from None
    pq.write_table(table, path)
