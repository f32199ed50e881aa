"""Which pairs a rater labels, in which order, and which answer is shown as A.

The sample is seeded and stratified by `category` (records without one form one stratum):
- size: ceil(fraction * n), shared between the strata in proportion to their sizes (largest remainder),
  then every stratum that got none gets one, so each category is checked at least once (the sample can
  then be a little larger than ceil(fraction * n));
- inside a stratum, the records with the smallest sha256(seed, id) are taken, so the sample depends only on
  the seed, the ids and the categories: every rater with the same seed labels the same pairs, and a record
  added later does not reshuffle who else is in;
- the labelling order is a seeded shuffle across the strata (sorted by another seeded hash), the same for
  every rater, so a rater never labels one category in a block.

The A/B order is seeded per (seed, rater, record id): each rater sees a pair's answers in their own random
order, so a rater's habit of pressing A does not look like agreement with the auto-label.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from prefgate.data.records import PreferencePair, Record
from prefgate.errors import InputError

NO_CATEGORY = "(none)"


def _key(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8")).hexdigest()


def stratum(record: Record) -> str:
    return record.category if record.category is not None else NO_CATEGORY


def allocate(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Share `total` between strata in proportion to `sizes` (largest remainder, ties by name), then give
    one to every stratum left with none.

    >>> allocate({"a": 90, "b": 9, "c": 1}, 10)
    {'a': 9, 'b': 1, 'c': 1}
    """
    n = sum(sizes.values())
    exact = {name: total * size / n for name, size in sizes.items()}
    out = {name: min(sizes[name], math.floor(q)) for name, q in exact.items()}
    by_remainder = sorted(sizes, key=lambda name: (-(exact[name] - math.floor(exact[name])), name))
    for name in by_remainder:
        if sum(out.values()) >= total:
            break
        if out[name] < sizes[name]:
            out[name] += 1
    return {name: max(count, 1 if sizes[name] else 0) for name, count in out.items()}


def label_sample(records: Sequence[Record], fraction: float, seed: int = 0) -> list[PreferencePair]:
    """The pairs to label, in labelling order (see the module docstring)."""
    if not 0 < fraction <= 1:
        raise InputError(f"must be in (0, 1], got {fraction:g}", field="fraction")
    if not records:
        raise InputError("no records to sample from")
    if not isinstance(records[0], PreferencePair):
        raise InputError("labelling needs paired records (a prompt with chosen and rejected answers)")
    strata: dict[str, list[PreferencePair]] = {}
    for rec in records:
        strata.setdefault(stratum(rec), []).append(rec)  # type: ignore[arg-type]
    total = min(len(records), max(1, math.ceil(fraction * len(records))))
    counts = allocate({name: len(members) for name, members in strata.items()}, total)
    picked: list[PreferencePair] = []
    for name, members in strata.items():
        picked.extend(sorted(members, key=lambda r: _key(seed, "sample", r.id))[: counts[name]])
    return sorted(picked, key=lambda r: _key(seed, "order", r.id))


def a_side(seed: int, rater: str, record_id: str) -> str:
    """Which side of the pair is shown as A to this rater: "chosen" or "rejected"."""
    return "chosen" if int(_key(seed, "ab", rater, record_id)[:8], 16) % 2 == 0 else "rejected"


def preferred_for(key: str, a: str) -> str:
    """The label a key means: "a" -> the side shown as A, "b" -> the other side, "t" -> "tie"."""
    other = "rejected" if a == "chosen" else "chosen"
    return {"a": a, "b": other, "t": "tie"}[key]


def shown_as(preferred: str, a: str) -> str:
    """The letter the rater pressed for a stored label: "A", "B" or "tie"."""
    if preferred == "tie":
        return "tie"
    return "A" if preferred == a else "B"
