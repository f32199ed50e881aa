"""Scorers are pure functions (output, item) -> Score."""

from __future__ import annotations

import pytest

from prefgate.errors import InputError
from prefgate.eval.scorers import (
    Score,
    coerce_score,
    contains,
    exact,
    is_refusal,
    last_number,
    numeric,
    refusal,
    regex,
    score_choice,
    score_output,
)
from prefgate.eval.suite import parse_item


def it(**fields):
    row = {"id": "x", "category": "c", "prompt": "Q:", "scorer": "exact"}
    row.update(fields)
    return parse_item(row, where="suite.jsonl:1")


def test_exact_normalises_case_space_and_a_trailing_period():
    item = it(answer="Paris")
    assert exact("  paris. ", item).score == 1.0
    assert exact("Paris, France", item).score == 0.0
    assert exact("8", it(answer=["eight", 8])).score == 1.0


@pytest.mark.parametrize("output, answer, tol, expected", [
    ("The answer is 42.", 42, 0, 1.0),
    ("12 + 30 = 42", "42", 0, 1.0),
    ("about 41.7", 42, 0.5, 1.0),
    ("about 41.4", 42, 0.5, 0.0),
    ("1,234 pens", "1234", 0, 1.0),
    ("-3 degrees", -3, 0, 1.0),
    ("no digits", 1, 0, 0.0),
    ("42 then 43", 42, 0, 0.0),  # the last number counts
])
def test_numeric(output, answer, tol, expected):
    assert numeric(output, it(scorer="numeric", answer=answer, tolerance=tol)).score == expected


def test_last_number():
    assert last_number("x 1e3 y") == 1000.0 and last_number(".5") == 0.5 and last_number("none") is None


def test_contains_and_regex():
    assert contains("It has EIGHT legs", it(scorer="contains", answer=["eight", "8"])).score == 1.0
    assert contains("six", it(scorer="contains", answer="eight")).score == 0.0
    assert regex(" 42 is it", it(scorer="regex", answer=r"^\s*42\b")).score == 1.0
    assert regex("420", it(scorer="regex", answer=r"^\s*42\b")).score == 0.0


@pytest.mark.parametrize("output, refused", [
    ("I'm sorry, but I can't help with that.", True),
    ("I\u2019m sorry, I cannot do that", True),
    ("As an AI, I must decline.", True),
    ("Sure! Use `kill -9 <pid>`.", False),
])
def test_refusal(output, refused):
    assert is_refusal(output) is refused
    assert refusal(output, it(scorer="refusal")).score == float(refused)
    assert refusal(output, it(scorer="refusal", expect="comply")).score == float(not refused)


def test_choice_acc_and_acc_norm_can_disagree_like_lm_eval():
    """Raw log-likelihood favours the short choice; per byte, the long one wins."""
    item = it(scorer="choice", choices=["no", "absolutely"], answer=1)
    score = score_choice([-2.0, -5.0], item)
    assert score.details["acc"] == 0.0 and score.details["acc_norm"] == 1.0  # -1.0/byte vs -0.5/byte
    assert score.score == 0.0
    normed = it(scorer="choice", choices=["no", "absolutely"], answer="absolutely", metric="acc_norm")
    assert score_choice([-2.0, -5.0], normed).score == 1.0
    with pytest.raises(ValueError):
        score_choice([-1.0], item)


CUSTOM_SCORER = """
from prefgate.eval.scorers import Score


def first_word_is_yes(output, item):
    words = output.split()
    ok = bool(words) and words[0].lower() == "yes"
    return Score(float(ok), "A" if ok else "F")
"""


def custom_scorer_module(tmp_path, monkeypatch, name: str = "my_scorers") -> str:
    """Write a scorer module into tmp_path, put it on sys.path, return its python:module:function spec."""
    (tmp_path / f"{name}.py").write_text(CUSTOM_SCORER)
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"python:{name}:first_word_is_yes"


def test_custom_python_scorer_and_coercion(tmp_path, monkeypatch):
    item = it(scorer=custom_scorer_module(tmp_path, monkeypatch))
    assert score_output("yes indeed", item) == Score(1.0, "A")
    assert score_output("no", item).score == 0.0
    assert coerce_score(True, "w") == Score(1.0)
    assert coerce_score({"score": 0.5, "grade": "C"}, "w") == Score(0.5, "C")
    assert coerce_score((0.2, None), "w") == Score(0.2)
    for bad in (1.5, "x", float("nan"), {"score": 1, "grade": "Z"}):
        with pytest.raises(InputError, match="the scorer returned"):
            coerce_score(bad, "suite.jsonl:3")


def test_judge_item_without_a_judge_is_an_input_error():
    with pytest.raises(InputError, match="no judge is configured"):
        score_output("x", it(scorer="judge"))
