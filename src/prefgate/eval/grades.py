"""Letter grades: the bands that turn a mean score into a grade, and per-category aggregation.

A category's grade comes from its mean score and the bands (default A >= 0.90, B >= 0.80, C >= 0.70,
D >= 0.60, else F). Its A-rate is the share of its items graded A, where an item's grade is the one its
scorer gave (the judge) or, for scorers without grades, the band of its own score (so a correct
exact-match item counts as an A and a wrong one as an F). All functions here are pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prefgate.stats import bootstrap_ci

GRADES = ("A", "B", "C", "D", "F")

# Score of an item graded by a judge: each letter lands inside its own default band, so a category whose
# items are all graded B is graded B; F is a failed answer and scores 0.
GRADE_SCORES = {"A": 1.0, "B": 0.85, "C": 0.75, "D": 0.65, "F": 0.0}


class GradeBands(BaseModel):
    """Lowest mean score for each grade; anything below `D` is F."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    A: float = Field(0.90, ge=0.0, le=1.0)
    B: float = Field(0.80, ge=0.0, le=1.0)
    C: float = Field(0.70, ge=0.0, le=1.0)
    D: float = Field(0.60, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _descending(self) -> GradeBands:
        if not self.A > self.B > self.C > self.D:
            raise ValueError(f"bands must be strictly descending (A > B > C > D), got A={self.A} B={self.B} "
                             f"C={self.C} D={self.D}")
        return self


DEFAULT_BANDS = GradeBands()


def grade(score: float, bands: GradeBands = DEFAULT_BANDS) -> str:
    """The letter grade of a score in [0, 1].

    >>> grade(0.9), grade(0.8999), grade(0.1)
    ('A', 'B', 'F')
    """
    # Round away binary floating-point noise so that 0.9 (e.g. 9 of 10 items) is an A.
    s = round(float(score), 12)
    for letter in GRADES[:-1]:
        if s >= getattr(bands, letter):
            return letter
    return "F"


def grade_rank(letter: str) -> int:
    """0 for A ... 4 for F; a grade drop is `grade_rank(new) - grade_rank(old)`."""
    return GRADES.index(letter)


def item_grade(item: dict[str, Any], bands: GradeBands = DEFAULT_BANDS) -> str:
    """The scorer's grade if it gave one, else the band of the item's score."""
    given = item.get("grade")
    return given if given in GRADES else grade(item["score"], bands)


def summarize(items: Sequence[dict[str, Any]], bands: GradeBands = DEFAULT_BANDS, *, seed: int = 0,
              n_resamples: int = 2_000) -> dict[str, Any]:
    """{"n", "score", "grade", "a_rate", "ci": [lo, hi]} of a group of scored items."""
    scores = [float(it["score"]) for it in items]
    n = len(scores)
    if n == 0:
        return {"n": 0, "score": None, "grade": None, "a_rate": None, "ci": [None, None]}
    mean = sum(scores) / n
    a_rate = sum(item_grade(it, bands) == "A" for it in items) / n
    lo, hi = bootstrap_ci(scores, n_resamples=n_resamples, seed=seed)
    return {"n": n, "score": mean, "grade": grade(mean, bands), "a_rate": a_rate, "ci": [lo, hi]}


def by_category(items: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Items grouped by their "category", in first-seen order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for it in items:
        groups.setdefault(it["category"], []).append(it)
    return groups


def aggregate(items: Sequence[dict[str, Any]], bands: GradeBands = DEFAULT_BANDS, *,
              seed: int = 0) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(overall, categories) blocks of an eval report; the overall score is the mean over all items."""
    categories = {name: summarize(group, bands, seed=seed) for name, group in sorted(by_category(items).items())}
    return summarize(items, bands, seed=seed), categories
