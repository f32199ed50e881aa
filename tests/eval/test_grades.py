"""Grade bands and per-category aggregation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from prefgate.eval.grades import GRADE_SCORES, GradeBands, aggregate, grade, grade_rank, summarize


@pytest.mark.parametrize("score, letter", [(1.0, "A"), (0.9, "A"), (0.8999, "B"), (0.8, "B"), (0.7, "C"),
                                           (0.6, "D"), (0.5999, "F"), (0.0, "F"), (9 / 10, "A"), (0.7 + 1e-15, "C")])
def test_default_bands(score, letter):
    assert grade(score) == letter


def test_custom_bands_and_validation():
    bands = GradeBands(A=0.95, B=0.9, C=0.5, D=0.2)
    assert grade(0.93, bands) == "B" and grade(0.3, bands) == "D"
    with pytest.raises(ValidationError, match="descending"):
        GradeBands(A=0.8, B=0.9)
    with pytest.raises(ValidationError):
        GradeBands(E=0.5)


def test_grade_scores_land_in_their_own_default_band():
    for letter, score in GRADE_SCORES.items():
        assert grade(score) == letter
    assert grade_rank("C") - grade_rank("A") == 2


def test_summarize_binary_and_judge_items():
    items = [{"score": 1.0}, {"score": 1.0}, {"score": 0.0}, {"score": 0.85, "grade": "B"}]
    out = summarize(items)
    assert out["n"] == 4 and out["score"] == pytest.approx(0.7125) and out["grade"] == "C"
    assert out["a_rate"] == pytest.approx(0.5)  # the two correct binary items count as A
    lo, hi = out["ci"]
    assert lo <= out["score"] <= hi


def test_aggregate_overall_is_the_item_mean():
    items = [{"category": "a", "score": 1.0}] * 3 + [{"category": "b", "score": 0.0}]
    overall, cats = aggregate(items)
    assert overall["score"] == pytest.approx(0.75) and overall["n"] == 4
    assert list(cats) == ["a", "b"] and cats["a"]["grade"] == "A" and cats["b"]["grade"] == "F"
