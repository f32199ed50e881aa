"""Report files: the header every JSON report starts with, reading and writing JSON, a file's sha256.

A bottom module (it imports only `prefgate.errors` and `prefgate.jsonio`, the parser of every user file), so
every stage, the report pages and the CLI share one copy of each:

- `header(kind, version, **inputs)`: `{"kind", "version", "created", "prefgate_version", **inputs}`, the
  fields ../shared/DESIGN.md asks of every report, followed by the report's inputs (dataset, model, suite,
  ...) in the order given.
- `now()`: the current UTC time as ISO 8601 to the second, the form of every `created`.
- `read_json(path)`: a JSON object from a file; `read_json_with_sha256(path)`: any JSON value with the
  sha256 of the bytes read. Every problem is one `InputError` naming the file and what was expected.
- `write_json(obj, path)`: indented UTF-8 JSON written atomically; `write_text` for any text (the HTML pages).
- `atomic_temp(path)`: the temporary file of an atomic write of `path`, with the permissions a plain
  `open(path, "w")` would give (the dataset and label writers use it too). Nothing prefgate writes holds a
  secret (API keys stay in environment variables), so no output is made private to its owner.
- `sha256_file(path)`: hex sha256 of a file's bytes, read in chunks.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefgate import __version__, jsonio
from prefgate.errors import InputError

__all__ = ["JsonFile", "atomic_temp", "header", "now", "read_json", "read_json_with_sha256", "sha256_file",
           "write_json", "write_text"]


def now() -> str:
    """The current UTC time, ISO 8601 to the second: `2025-01-31T12:00:00+00:00`."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def header(kind: str, version: int, *, created: str | None = None, **inputs: Any) -> dict[str, Any]:
    """The start of a report: kind, version, created (default: now), prefgate_version, then `inputs`."""
    return {"kind": kind, "version": version, "created": created or now(), "prefgate_version": __version__,
            **inputs}


# ---------------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class JsonFile:
    path: Path  # as given
    data: Any
    sha256: str  # of the file's bytes


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def read_json_with_sha256(path: str | Path) -> JsonFile:
    """The parsed file (any JSON value) and the sha256 of the bytes it was parsed from.

    InputError, `where` the file (and line): a missing file, a folder, bytes that are not UTF-8 JSON, and
    what `prefgate.jsonio.loads` refuses in any user file (a key repeated in one object, ...).
    """
    data, raw = jsonio.read_json_file(path, what="not a valid JSON file")
    return JsonFile(Path(path), data, hashlib.sha256(raw).hexdigest())


def read_json(path: str | Path, *, what: str | None = None, missing_ok: bool = False) -> Any:
    """The JSON object in `path` (None when the file is missing and `missing_ok`).

    InputError as `read_json_with_sha256`, and for a file whose top-level value is not an object:
    `expected a JSON object (<what>), got list`.
    """
    if missing_ok and not Path(path).exists():
        return None
    data, _ = jsonio.read_json_file(path, what="not a valid JSON file")
    if not isinstance(data, dict):
        kind = f" ({what})" if what else ""
        raise InputError(f"expected a JSON object{kind}, got {_type_name(data)}", where=str(path))
    return data


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of the file's bytes, read `chunk` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Writing


def atomic_temp(path: str | Path) -> Path:
    """A new, empty temporary file beside `path`, for writing and then `os.replace`-ing onto `path`.

    It gets the permissions a plain `open(path, "w")` would give: those of `path` when it exists, else 0o666
    less the umask (the kernel applies it at creation). `tempfile.mkstemp` would make it 0o600, and the
    rename would hand every dataset or pairs file to its owner alone."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode) & 0o777)
    except FileNotFoundError:
        pass  # a new file: the umask's mode stands
    return tmp


def write_text(text: str, path: str | Path) -> Path:
    """Write `text` (UTF-8) to `path` atomically: a temporary file in the same folder, renamed into place
    (`atomic_temp`: the permissions follow the umask). A path that exists and is not a regular file
    (`/dev/stdout`, a pipe) is written to directly."""
    path = Path(path)
    if path.exists() and not path.is_file():
        path.write_text(text, encoding="utf-8")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_temp(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    """`obj` as indented JSON (non-ASCII kept as is, a final newline), written atomically; returns the path."""
    return write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", path)
