"""Reading JSON (and gzip) from user files: one loader for every reader, so every bad file fails the same way.

`loads(data, where)` is `json.loads` plus the checks the standard library leaves out, each an `InputError`
(one line, exit 2 in the CLI) instead of a silently kept value or a traceback:
- a key repeated in one object (`json` keeps the last value and drops the first without a word);
- a string holding a lone surrogate escape such as `"\\ud800"` (not Unicode: it cannot be written back as
  UTF-8, so it would fail later, far from the file);
- nesting deeper than the parser can follow (Python's RecursionError);
- an integer longer than Python's int-string-conversion limit (4300 digits: a ValueError).
Syntax errors are `InvalidJSON` (an `InputError`), so a caller can treat them apart (a torn last line).

`open_binary(path)` opens a file, decompressing `.gz`, and `gzip_errors(path)` turns a corrupt or truncated
gzip stream into one `InputError` naming the file (gzip raises EOFError, zlib.error or BadGzipFile).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from prefgate.errors import InputError

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]", re.ASCII)
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidJSON(InputError):
    """The text is not JSON at all (a syntax error), as opposed to JSON prefgate refuses to read."""


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_object)  # built once: json.loads(..., hook) builds one a call


def loads(data: str | bytes, where: str, *, line: bool = False, what: str = "invalid JSON") -> Any:
    """Parse one JSON document from a user file (see the module docstring for what is refused).

    `where` names the place (`path`, or `path:line` with `line=True` for one line of a JSONL file; for a
    whole file the line of a syntax error is added). `what` starts the message of a syntax error.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise InputError(f"not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})",
                             where=where) from None
    try:
        if data.startswith("\ufeff"):  # as json.loads does
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
        value = _DECODER.decode(data)
    except json.JSONDecodeError as err:
        place = where if line else f"{where}:{err.lineno}"
        raise InvalidJSON(f"{what}: {err.msg} (column {err.colno})", where=place) from None
    except _DuplicateKey as err:
        raise InputError("duplicate key in one JSON object (its first value would be silently replaced)",
                         where=where, field=_printable(err.key)) from None
    except RecursionError:
        raise InputError("JSON nested too deeply to read", where=where) from None
    except ValueError as err:  # the int-string-conversion limit: "Exceeds the limit (4300 digits) ..."
        raise InputError(f"a number too long to read ({str(err).split(';')[0]})", where=where) from None
    if _SURROGATE_ESCAPE.search(data):
        _check_surrogates(value, where)
    return value


def _printable(text: str) -> str:
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _check_surrogates(value: Any, where: str) -> None:
    """Refuse a lone surrogate anywhere in `value` (walked without recursion: nesting may be deep)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                sub = f"{path}.{_printable(key)}" if path else _printable(key)
                if _SURROGATE.search(key):
                    raise InputError("a key holds a lone surrogate escape (not valid Unicode)", where=where,
                                     field=sub)
                stack.append((sub, child))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(node))
        elif isinstance(node, str) and (found := _SURROGATE.search(node)):
            raise InputError(f"holds a lone surrogate escape \\u{ord(found.group()):04x} (not valid Unicode)",
                             where=where, field=path or None)


def read_json_file(path: str | Path, *, what: str = "invalid JSON") -> tuple[Any, bytes]:
    """(parsed document, the file's bytes) of a JSON file; every problem is an `InputError`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", where=str(path)) from None
    except IsADirectoryError:
        raise InputError("expected a JSON file, got a folder", where=str(path)) from None
    return loads(raw, str(path), what=what), raw


def open_binary(path: Path) -> IO[bytes]:
    """The file for reading bytes, decompressed when its name ends in `.gz`."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


@contextlib.contextmanager
def gzip_errors(path: Path) -> Iterator[None]:
    """A corrupt or truncated gzip stream read inside the block becomes one InputError naming `path`."""
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        reason = str(err) or type(err).__name__
        raise InputError(f"corrupt or truncated gzip file ({reason})", where=str(path)) from None
