"""The judge scorer against a real HTTP server on 127.0.0.1, and grade parsing."""

from __future__ import annotations

import json

import pytest

from prefgate.errors import InputError
from prefgate.eval.judge import DEFAULT_RUBRIC, HttpJudge, judge_messages, parse_grade
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


def test_http_judge_errors_are_input_errors(judge_server, monkeypatch):
    monkeypatch.delenv("MISSING_KEY", raising=False)
    with pytest.raises(InputError, match="MISSING_KEY"):
        HttpJudge(judge_server.base_url, "m", api_key_env="MISSING_KEY")("x", judge_item())
    judge_server.status = 500
    with pytest.raises(InputError, match="HTTP 500"):
        HttpJudge(judge_server.base_url, "m")("x", judge_item())
    with pytest.raises(InputError, match="cannot reach the judge"):
        HttpJudge("http://127.0.0.1:9/v1", "m", timeout=2)("x", judge_item())


def test_a_reply_without_a_grade_is_retried_then_refused(judge_server):
    replies = iter(["Hmm.", "Grade: B"])
    judge_server.reply = lambda messages: next(replies)
    assert HttpJudge(judge_server.base_url, "m")("x", judge_item()).grade == "B"
    judge_server.reply = lambda messages: "no grade here"
    with pytest.raises(InputError, match="no grade A-F after 2 tries"):
        HttpJudge(judge_server.base_url, "m")("x", judge_item())


def test_local_judge_generates_with_a_local_model(tiny_dir, monkeypatch):
    from prefgate.eval import judge as judge_module

    local = judge_module.LocalJudge(str(tiny_dir), max_new_tokens=4)
    assert local.describe() == {"kind": "local", "model": str(tiny_dir)}
    with pytest.raises(InputError, match="no grade A-F"):  # a random tiny model does not write grades
        local("x", judge_item())
    monkeypatch.setattr(local, "complete", lambda messages: "Fine.\nGrade: B")
    assert local("x", judge_item()).grade == "B"
