"""The judge scorer against a real HTTP server on 127.0.0.1, and grade parsing."""

from __future__ import annotations

import json

import pytest

from prefgate.chat import RetryPolicy
from prefgate.errors import InputError
from prefgate.eval.judge import DEFAULT_RUBRIC, GradeFailed, HttpJudge, judge_messages, parse_grade
from prefgate.eval.suite import parse_item


def judge_item(**fields):
    row = {"id": "j1", "category": "chat", "prompt": "Why is the sky blue?", "scorer": "judge"}
    row.update(fields)
    return parse_item(row, where="suite.jsonl:4")


@pytest.mark.parametrize("reply, letter", [
    ("Grade: A", "A"), ("The answer is decent.\nGrade: B+", "B"), ("**Grade:** C", "C"), ("grade = d", "D"),
    ("Grade: E", "F"), ("B", "B"), ("  **A-**  ", "A"), ("Grade: A at first, but on reflection\nGrade: C", "C"),
    ("I cannot grade this.", None), ("Great answer", None), ("", None),
])
def test_parse_grade(reply, letter):
    assert parse_grade(reply) == letter


def test_messages_carry_question_reference_rubric_and_answer():
    messages = judge_messages("Because of scattering.", judge_item(answer="Rayleigh scattering", rubric="Be strict."))
    text = messages[-1]["content"]
    assert "Why is the sky blue?" in text and "Rayleigh scattering" in text and "Be strict." in text
    assert "Because of scattering." in text and "Grade: X" in text
    assert DEFAULT_RUBRIC in judge_messages("x", judge_item())[-1]["content"]


def test_http_judge_grades_and_sends_the_key_from_the_environment(judge_server, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-secret-123")
    judge = HttpJudge(judge_server.base_url, "grader-1", api_key_env="TEST_JUDGE_KEY")
    good = judge("Light scatters.", judge_item())
    bad = judge("wrong", judge_item())
    assert (good.score, good.grade) == (1.0, "A") and (bad.score, bad.grade) == (0.65, "D")
    request = judge_server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["body"]["model"] == "grader-1"
    assert request["body"]["temperature"] == 0
    assert request["headers"]["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in json.dumps(judge.describe())


NO_WAIT = RetryPolicy(tries=3, sleep=lambda seconds: None)


def test_http_judge_errors_are_input_errors(judge_server, monkeypatch):
    monkeypatch.delenv("MISSING_KEY", raising=False)
    with pytest.raises(InputError, match="MISSING_KEY") as err:  # the set-up: stops the eval, not one item
        HttpJudge(judge_server.base_url, "m", api_key_env="MISSING_KEY")("x", judge_item())
    assert not isinstance(err.value, GradeFailed)
    judge_server.status = 500
    with pytest.raises(GradeFailed) as err:  # this item: retried, then failed
        HttpJudge(judge_server.base_url, "m", retry=NO_WAIT)("x", judge_item())
    assert str(err.value) == (f"suite.jsonl:4: field 'scorer': the judge answered HTTP 500 Internal Server Error "
                              f"(3 tries over 3 s) (at {judge_server.base_url}/chat/completions)")
    assert len(judge_server.requests) == 3
    with pytest.raises(GradeFailed, match="cannot reach the judge"):
        HttpJudge("http://127.0.0.1:9/v1", "m", timeout=2, retry=NO_WAIT)("x", judge_item())


def test_a_rate_limited_judge_grades_after_waiting(judge_server):
    waits = []
    judge_server.failures = [(429, {"Retry-After": "4"}), (429, {})]
    judge = HttpJudge(judge_server.base_url, "m", retry=RetryPolicy(sleep=waits.append))
    assert judge("Light scatters.", judge_item()).grade == "A"
    assert waits == [4.0, 2.0]  # Retry-After first, then the backoff's second step
    assert judge.describe()["retry"] == {"tries": 5, "backoff_s": 1.0, "max_backoff_s": 30.0,
                                         "max_retry_after_s": 60.0}


def test_a_reply_without_a_grade_is_retried_then_the_item_fails(judge_server):
    replies = iter(["Hmm.", "Grade: B"])
    judge_server.reply = lambda messages: next(replies)
    assert HttpJudge(judge_server.base_url, "m")("x", judge_item()).grade == "B"
    judge_server.reply = lambda messages: "no grade here"
    with pytest.raises(GradeFailed, match="no grade A-F after 2 tries"):
        HttpJudge(judge_server.base_url, "m")("x", judge_item())


def test_local_judge_generates_with_a_local_model(tiny_dir, monkeypatch):
    from prefgate.eval import judge as judge_module

    local = judge_module.LocalJudge(str(tiny_dir), max_new_tokens=4)
    assert local.describe() == {"kind": "local", "model": str(tiny_dir)}
    with pytest.raises(InputError, match="no grade A-F"):  # a random tiny model does not write grades
        local("x", judge_item())
    monkeypatch.setattr(local, "complete", lambda messages: "Fine.\nGrade: B")
    assert local("x", judge_item()).grade == "B"
