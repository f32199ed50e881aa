"""Eval fixtures: an OpenAI-compatible judge server on 127.0.0.1, started in a thread by the test."""

from __future__ import annotations

import pytest

from tests.fake_openai import FakeOpenAI


def grade_by_content(messages: list[dict]) -> str:
    """A 'judge' that gives A when the graded answer is non-empty and mentions no 'wrong', else D."""
    answer = messages[-1]["content"].split("Answer to grade:\n", 1)[1].split("\n\nGive at most", 1)[0]
    return "Looks fine.\nGrade: A" if answer.strip() and "wrong" not in answer else "Weak answer.\n**Grade: D-**"


@pytest.fixture()
def judge_server():
    with FakeOpenAI(grade_by_content) as server:
        yield server
