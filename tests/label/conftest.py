"""Label fixtures: a paired dataset with categories (and some without) and given ids, so the sample is known."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefgate.data import write_records
from prefgate.data.records import PreferencePair

CATEGORIES = ("math", "qa", "safety")


def make_pairs(n: int = 100) -> list[PreferencePair]:
    """`n` pairs p000...: every tenth has no category, the rest cycle through CATEGORIES. Chosen and rejected
    texts are distinct per pair ("Answer: kiwi 17" / "Answer: plum 17"), so a test can find each on a screen,
    and neither says which it is."""
    pairs = []
    for i in range(n):
        category = None if i % 10 == 0 else CATEGORIES[i % 3]
        pairs.append(PreferencePair(id=f"p{i:03d}", prompt=f"Prompt number {i}: which answer is better?",
                                    chosen=f"Answer: kiwi {i}", rejected=f"Answer: plum {i}", category=category))
    return pairs


@pytest.fixture()
def pairs() -> list[PreferencePair]:
    return make_pairs()


@pytest.fixture()
def data_file(tmp_path, pairs) -> Path:
    return write_records(pairs, tmp_path / "pairs.jsonl")
