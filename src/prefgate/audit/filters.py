"""Filters that remove what an audit check flags; `prefgate data filter` is the shell over them.

The predicate here is the one the check uses, so `prefgate data filter --max-length-ratio 2` removes
exactly the pairs the `length_ratio` check counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prefgate.audit.view import RecordView
from prefgate.data.records import PreferencePair, Record
from prefgate.errors import InputError


def over_length_ratio(chosen_len: np.ndarray, rejected_len: np.ndarray, max_ratio: float) -> np.ndarray:
    """True where the chosen side is more than `max_ratio` times as long as the rejected side.

    Lengths are characters of the whitespace-normalised text; an empty rejected answer makes any non-empty
    chosen answer count as over the ratio.
    """
    return chosen_len > max_ratio * rejected_len


def split_by_length_ratio(records: Sequence[Record], max_ratio: float) -> tuple[list[Record], list[Record]]:
    """(kept, removed): removed are the pairs whose chosen side is over `max_ratio` times the rejected."""
    if max_ratio < 1:
        raise InputError(f"must be at least 1, got {max_ratio:g}", field="max_length_ratio")
    if records and not isinstance(records[0], PreferencePair):
        raise InputError("the length-ratio filter needs paired records (chosen and rejected); this dataset "
                         "is unpaired", field="max_length_ratio")
    view = RecordView(records)
    over = over_length_ratio(view.chosen_len, view.rejected_len, max_ratio)
    kept = [rec for rec, cut in zip(records, over, strict=True) if not cut]
    removed = [rec for rec, cut in zip(records, over, strict=True) if cut]
    return kept, removed


def removed_path(output: str | Path) -> Path:
    """The sidecar for removed records, next to the output: `out.jsonl` -> `out.removed.jsonl`."""
    output = Path(output)
    name = output.name
    for ext in (".gz", ".jsonl", ".parquet"):
        name = name.removesuffix(ext)
    return output.with_name(f"{name or 'data'}.removed.jsonl")
