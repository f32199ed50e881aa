"""Load a preference dataset: read, validate, give every record a stable id, fingerprint it.

`read_dataset(source)` is strict: the first bad row raises `InputError` ("path:line: field 'x': ...").
With `skip_invalid=True` every bad row is written, verbatim and with its reason, to a sidecar JSONL
(`<name>.rejected.jsonl`) and counted in `PreferenceDataset.rejected`; nothing is dropped silently.
Rules across rows: one record kind (paired or unpaired) and one text shape (standard or conversational)
per dataset; a given `id` must be unique; derived ids (content hashes) of exact duplicate records get
a `-2`, `-3` suffix in file order, so they stay unique and stable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from prefgate.data.readers import iter_rows
from prefgate.data.records import PreferencePair, Record, canonical_json, parse_row
from prefgate.errors import InputError


@dataclass(slots=True)
class RejectedRow:
    where: str
    reason: str
    raw: str | None

    def to_dict(self) -> dict:
        return {"where": self.where, "reason": self.reason, "line": self.raw}


@dataclass
class PreferenceDataset:
    source: str
    records: list[Record]
    rejected: list[RejectedRow] = field(default_factory=list)
    rejected_path: Path | None = None
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def paired(self) -> bool:
        return isinstance(self.records[0], PreferencePair)

    @property
    def conversational(self) -> bool:
        return self.records[0].conversational

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.records)
        return self._fingerprint

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def describe(self) -> dict:
        """The `dataset` block every report carries."""
        return {"path": self.source, "fingerprint": self.fingerprint, "n_records": len(self.records),
                "n_rejected": len(self.rejected)}


def fingerprint(records: list[Record]) -> str:
    """sha256 over the canonical explicit-prompt form of the records, in order (hex digest).

    The same records give the same fingerprint whatever file format or prompt style they came in.
    """
    h = hashlib.sha256()
    for rec in records:
        h.update(canonical_json(rec.to_dict()).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def default_rejected_path(source: str | Path) -> Path:
    """`<name>.rejected.jsonl` in the current directory (the input's folder may be read-only)."""
    name = Path(str(source)).name
    for ext in (".gz", ".jsonl", ".ndjson", ".json", ".parquet", ".csv"):
        name = name.removesuffix(ext)
    return Path(f"{name or 'data'}.rejected.jsonl")


class _Consistency:
    """Checks across rows: one kind, one text shape, unique given ids, uniquely suffixed derived ids."""

    def __init__(self) -> None:
        self.first: tuple[str, str, str] | None = None  # (kind, shape, where)
        self.given_ids: dict[str, str] = {}
        self.derived_counts: dict[str, int] = {}

    def admit(self, rec: Record, raw_row: dict, where: str) -> None:
        kind = "paired" if isinstance(rec, PreferencePair) else "unpaired"
        shape = "conversational" if rec.conversational else "standard"
        if self.first is None:
            self.first = (kind, shape, where)
        elif (kind, shape) != self.first[:2]:
            raise InputError(f"is a {shape} {kind} record, but the first record ({self.first[2]}) is "
                             f"{self.first[1]} {self.first[0]}; one dataset holds one format", where=where)
        if raw_row.get("id") is not None:
            if rec.id in self.given_ids:
                raise InputError(f"duplicate id {rec.id!r} (first at {self.given_ids[rec.id]})",
                                 where=where, field="id")
            self.given_ids[rec.id] = where
            return
        n = self.derived_counts.get(rec.id, 0) + 1
        self.derived_counts[rec.id] = n
        if n > 1:
            rec.id = f"{rec.id}-{n}"


def read_dataset(source: str | Path, *, skip_invalid: bool = False, rejected_path: str | Path | None = None,
                 split: str | None = None, sidecar: bool = True) -> PreferenceDataset:
    """Read and validate every record of `source` (see the module docstring for the rules).

    `sidecar=False` keeps skipped rows in `.rejected` only, writing no file: for a caller that reports them
    itself (`prefgate audit` without --skip-invalid, which fails on them rather than skipping them)."""
    records: list[Record] = []
    rejected: list[RejectedRow] = []
    consistency = _Consistency()
    for raw in iter_rows(source, split=split):
        try:
            if raw.error is not None:
                raise raw.error
            rec = parse_row(raw.row, where=raw.where)
            consistency.admit(rec, raw.row, raw.where)
        except InputError as err:
            if not skip_invalid:
                raise
            rejected.append(RejectedRow(raw.where, str(err), raw.raw))
            continue
        records.append(rec)

    out_path = None
    if rejected and sidecar:
        out_path = Path(rejected_path) if rejected_path else default_rejected_path(source)
        write_rejected(rejected, out_path)
    if not records:
        see = f"see {out_path}" if out_path else f"the first: {rejected[0].reason}" if rejected else ""
        why = f"no valid records ({len(rejected)} rejected, {see})" if rejected else "no records (empty)"
        raise InputError(why, where=str(source))
    return PreferenceDataset(str(source), records, rejected, out_path)


def write_rejected(rows: list[RejectedRow], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
