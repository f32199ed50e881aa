"""Synthetic preference pairs for the audit tests: a clean dataset that passes every check, to plant into.

`clean_pairs(n)`: distinct random prompts; chosen and rejected are independent random sentences of
similar length (the chosen side is the longer one in exactly every other pair, never by 2x), one line,
no lists, apologies or refusals; so no check has anything to find. Tests copy it and plant one defect.
"""

from __future__ import annotations

import random

import pytest

from prefgate.data.records import PreferencePair

SYLLABLES = ["ka", "lo", "mi", "ren", "to", "vas", "pel", "dru", "sin", "ob", "ta", "gu", "ne", "fir", "zo"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))


def sentence(rng: random.Random, n_words: int) -> str:
    words = [_word(rng) for _ in range(n_words)]
    return " ".join(words).capitalize() + "."


def clean_pairs(n: int = 60, seed: int = 0) -> list[PreferencePair]:
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        prompt = f"Question {i}: " + sentence(rng, rng.randint(8, 14))
        a, b = sentence(rng, rng.randint(18, 24)), sentence(rng, rng.randint(18, 24))
        if (len(a) > len(b)) != (i % 2 == 0):
            a, b = b, a
        pairs.append(PreferencePair(id=f"p{i:03d}", prompt=prompt, chosen=a, rejected=b))
    return pairs


@pytest.fixture
def make_pairs():
    """The builder, so a test can ask for a size or seed: `make_pairs(40)`."""
    return clean_pairs


@pytest.fixture
def pairs() -> list[PreferencePair]:
    return clean_pairs()


@pytest.fixture(scope="session")
def tokenizer():
    from prefgate.tiny import tiny_tokenizer

    return tiny_tokenizer()
