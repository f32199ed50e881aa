"""The labels file: one JSON object a line, appended and fsynced after every answer.

    {"id": "p017", "preferred": "chosen"|"rejected"|"tie", "rater": "alice", "position": 3,
     "a": "chosen"|"rejected", "time": "2025-01-01T12:00:00+00:00"}

`id`, `preferred` and `rater` are what `prefgate audit --labels` reads; `position` is the pair's place in
the sample (1-based), `a` which side was shown as A, `time` when the key was pressed (UTC).

Durability: each answer is written with one `write`, flushed and `os.fsync`ed before the tool shows the next
pair (and the folder is fsynced when the file is created), so a crash or a kill loses nothing that was
answered. Re-labelling a pair (after "back") appends another line: the last line for an (id, rater) wins.
`compact` rewrites the file with only those last lines (atomically: a temporary file, fsynced, renamed over),
which the tool does when it starts and when it stops, so a finished file has one line per (id, rater).
A line cut short by a crash mid-write (the file's last line, with no newline) is ignored and dropped by
`compact`; any other bad line is an error naming `file:line`.

Several raters may share one file, even at the same time: appends and compaction hold an exclusive
`flock` on the file, and a writer that finds the file replaced under it reopens it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefgate.errors import InputError
from prefgate.jsonio import InvalidJSON, loads
from prefgate.reportio import atomic_temp

PREFERRED = ("chosen", "rejected", "tie")


@dataclass(frozen=True, slots=True)
class Label:
    id: str
    preferred: str  # "chosen" | "rejected" | "tie"
    rater: str
    position: int | None = None
    a: str | None = None  # the side shown as A
    time: str | None = None

    def to_json(self) -> str:
        row = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(row, ensure_ascii=False)


def parse_label(row: Any, where: str) -> Label:
    if not isinstance(row, dict):
        raise InputError("expected a JSON object with id, preferred and rater", where=where)
    rid = row.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid).strip() == "":
        raise InputError("missing or not a non-empty string", where=where, field="id")
    if row.get("preferred") not in PREFERRED:
        raise InputError(f"expected one of {', '.join(PREFERRED)}, got {row.get('preferred')!r}", where=where,
                         field="preferred")
    rater = row.get("rater")
    if not isinstance(rater, str) or not rater.strip():
        raise InputError("missing or not a non-empty string", where=where, field="rater")
    position = row.get("position")
    return Label(str(rid), row["preferred"], rater, position if isinstance(position, int) else None,
                 row.get("a") if row.get("a") in ("chosen", "rejected") else None,
                 row.get("time") if isinstance(row.get("time"), str) else None)


def parse_lines(text: str, path: str | Path) -> tuple[list[Label], bool]:
    """(labels in file order, whether a torn last line was ignored)."""
    lines = text.split("\n")
    labels: list[Label] = []
    torn = False
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = loads(line, where, line=True, what="not valid JSON")
        except InvalidJSON:
            if n == len(lines) and not text.endswith("\n"):
                torn = True  # cut short by a crash mid-write: never acknowledged, so nothing is lost
                continue
            raise
        labels.append(parse_label(row, where))
    return labels, torn


def read_labels_file(path: str | Path) -> list[Label]:
    """Every line of a labels file, in order (duplicates kept; see `latest`). A missing file has none."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return []
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", where=str(path)) from None
    return parse_lines(text, path)[0]


def latest(labels: list[Label]) -> list[Label]:
    """The last label of each (id, rater), in the order of those last lines."""
    last: dict[tuple[str, str], int] = {(lab.id, lab.rater): i for i, lab in enumerate(labels)}
    return [lab for i, lab in enumerate(labels) if last[(lab.id, lab.rater)] == i]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _drop_torn_tail(fh: Any) -> None:
    """Cut a last line that has no newline (a write cut short by a crash, never acknowledged)."""
    size = fh.seek(0, os.SEEK_END)
    if size == 0:
        return
    fh.seek(max(0, size - 65536))
    tail = fh.read()
    if tail.endswith(b"\n"):
        return
    cut = tail.rfind(b"\n")
    if cut == -1 and size > len(tail):
        return  # a torn line longer than 64 KiB: leave it to `compact`
    fh.truncate(size - len(tail) + cut + 1)


class LabelStore:
    """Appends to and compacts one labels file (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextmanager
    def _locked(self) -> Iterator[Any]:
        """The file opened (binary, read and append) under an exclusive lock, known to be the file at `path`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            created = not self.path.exists()
            fh = open(self.path, "ab+")
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                current = os.fstat(fh.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            fh.close()  # compacted (replaced) while we waited: lock the new file
        try:
            if created:
                _fsync_dir(self.path.parent)
            yield fh
        finally:
            fh.close()  # closing releases the lock

    def append(self, label: Label) -> None:
        """Append one label and make it durable (flush and fsync) before returning."""
        with self._locked() as fh:
            _drop_torn_tail(fh)
            fh.write((label.to_json() + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())

    def read(self) -> list[Label]:
        return read_labels_file(self.path)

    def compact(self) -> int:
        """Keep only the last line of each (id, rater), dropping a torn last line; returns lines removed."""
        if not self.path.exists():
            return 0
        with self._locked() as fh:
            fh.seek(0)
            try:
                text = fh.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                raise InputError("not UTF-8 text", where=str(self.path)) from None
            labels, torn = parse_lines(text, self.path)
            keep = latest(labels)
            removed = len(labels) - len(keep) + int(torn)
            if removed:
                self._replace("".join(lab.to_json() + "\n" for lab in keep))
            return removed

    def _replace(self, text: str) -> None:
        tmp = atomic_temp(self.path)  # keeps the store's permissions (tempfile.mkstemp's would be 0o600)
        try:
            with open(tmp, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
