"""The toy task family: four kinds of arithmetic whose answers can be checked exactly.

| category | prompt       | answer | operands                        | distinct prompts |
|----------|--------------|--------|---------------------------------|------------------|
| add      | `12+34=`     | `46`   | a, b in 0..99                   | 10,000           |
| sub      | `57-34=`     | `23`   | a, b in 0..99, a >= b           | 5,050            |
| mul      | `23*7=`      | `161`  | a in 0..99, b in 0..9           | 1,000            |
| max      | `max(12,34)=`| `34`   | a, b in 0..99, a != b           | 9,900            |

`split_prompts(seed)` shuffles each category's prompts with its own seeded generator and deals them into
test, dev, pref and train, so no prompt is on two sides; the same seed gives the same split on any machine.
`train` is the SFT data; `pref` is the pool the preference pairs are built on, held out from SFT as in
practice (preference data is collected on new prompts, where the SFT model is confident but not certain).
The SFT recipe draws 8,000 records a category from `train`, so add and max keep train prompts it never drew
(`unseen_train`); `dev_problems` adds some of them to the dev suite, which 50 prompts a category leave too small
to see a drop of a few points.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

CATEGORIES = ("add", "sub", "mul", "max")


@dataclass(frozen=True, slots=True)
class Problem:
    category: str
    a: int
    b: int

    @property
    def prompt(self) -> str:
        return PROMPTS[self.category](self.a, self.b)

    @property
    def answer(self) -> str:
        return str(ANSWERS[self.category](self.a, self.b))

    @property
    def id(self) -> str:
        return f"{self.category}-{self.a}-{self.b}"


PROMPTS: dict[str, Callable[[int, int], str]] = {
    "add": lambda a, b: f"{a}+{b}=",
    "sub": lambda a, b: f"{a}-{b}=",
    "mul": lambda a, b: f"{a}*{b}=",
    "max": lambda a, b: f"max({a},{b})=",
}
ANSWERS: dict[str, Callable[[int, int], int]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "max": max,
}


def _operands(category: str) -> Iterator[tuple[int, int]]:
    if category == "mul":
        yield from ((a, b) for a in range(100) for b in range(10))
    elif category == "sub":
        yield from ((a, b) for a in range(100) for b in range(a + 1))
    elif category == "max":
        yield from ((a, b) for a in range(100) for b in range(100) if a != b)
    else:
        yield from ((a, b) for a in range(100) for b in range(100))


def all_problems(category: str) -> list[Problem]:
    return [Problem(category, a, b) for a, b in _operands(category)]


@dataclass(frozen=True)
class Split:
    train: dict[str, list[Problem]]  # SFT
    pref: dict[str, list[Problem]]  # preference pairs
    dev: dict[str, list[Problem]]
    test: dict[str, list[Problem]]

    def flat(self, side: str) -> list[Problem]:
        return [p for cat in CATEGORIES for p in getattr(self, side)[cat]]


def split_prompts(seed: int = 0, *, n_test: int = 100, n_dev: int = 50, n_pref: int = 250) -> Split:
    """Per category: a seeded shuffle, then the first `n_test` to test, the next `n_dev` to dev, the next
    `n_pref` to the preference pool, the rest to SFT training. Disjoint by construction."""
    sides: dict[str, dict[str, list[Problem]]] = {"train": {}, "pref": {}, "dev": {}, "test": {}}
    for k, cat in enumerate(CATEGORIES):
        problems = all_problems(cat)
        random.Random(seed * 1000 + k).shuffle(problems)
        cut = [0, n_test, n_test + n_dev, n_test + n_dev + n_pref, len(problems)]
        for side, lo, hi in zip(("test", "dev", "pref", "train"), cut[:-1], cut[1:], strict=True):
            sides[side][cat] = problems[lo:hi]
    return Split(**sides)


def sft_records(split: Split, *, per_category: int, seed: int = 0) -> list[dict]:
    """Unlabelled prompt/completion records: `per_category` from each category's train prompts (a category
    with fewer distinct prompts repeats them, so every category weighs the same), shuffled."""
    rng = random.Random(seed)
    rows = []
    for cat in CATEGORIES:
        pool = split.train[cat]
        picks = [pool[i % len(pool)] for i in range(per_category)] if len(pool) < per_category \
            else rng.sample(pool, per_category)
        rows += [{"id": f"sft-{p.id}-{i}", "prompt": p.prompt, "completion": p.answer, "category": cat}
                 for i, p in enumerate(picks)]
    rng.shuffle(rows)
    return rows


def unseen_train(split: Split, *, per_category: int, seed: int = 0) -> dict[str, list[Problem]]:
    """Per category, the train prompts that `sft_records(split, per_category=..., seed=...)` never drew, in the
    split's order: new to a model trained on those records, as test and dev prompts are. Only a category with
    more train prompts than `per_category` has any (with the demo's 8,000: add 1,600, max 1,500)."""
    seen = {r["prompt"] for r in sft_records(split, per_category=per_category, seed=seed)}
    return {cat: [p for p in split.train[cat] if p.prompt not in seen] for cat in CATEGORIES}


def dev_problems(split: Split, *, add_unseen: bool, sft_per_category: int) -> list[Problem]:
    """The dev split, then (with `add_unseen`) every prompt of `unseen_train`, so the dev suite can see a drop of
    a few points where the task has prompts to spare. Still disjoint from test and pref, and new to SFT."""
    unseen = unseen_train(split, per_category=sft_per_category) if add_unseen else {}
    return split.flat("dev") + [p for cat in CATEGORIES for p in unseen.get(cat, [])]


def suite_items(problems: list[Problem]) -> list[dict]:
    """Eval-suite items (docs/eval.md) scored by exact match."""
    return [{"id": p.id, "category": p.category, "prompt": p.prompt, "answer": p.answer, "scorer": "exact"}
            for p in problems]

