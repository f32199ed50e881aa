"""`pairs sample`: graders, best-vs-worst selection, the sibling-grader warning, and the command end to end
on a tiny model with a verifier grader."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from prefgate.data import read_dataset
from prefgate.errors import InputError
from prefgate.eval.suite import parse_item
from prefgate.pairs.sample import (
    Grader,
    PromptItem,
    SampleOptions,
    best_and_worst,
    family_warning,
    make_grader,
    pick_pair,
    read_prompts,
    scorer_for,
)
from tests.pairs.conftest import verify, write_jsonl
from tests.pairs.test_construct import cli

# Answers a random tiny model hits in some samples and misses in others: single letters (contains).
PROMPTS = [
    {"id": f"q{i}", "category": "letters" if i % 2 else "vowels", "prompt": f"Question {i}: write something.",
     "answer": letter, "scorer": "contains"}
    for i, letter in enumerate("aeiostrn")
]


def prompt(answer="42", scorer="numeric", text="What is 6 * 7?") -> PromptItem:
    return PromptItem(parse_item({"id": "p", "category": "math", "prompt": text, "scorer": scorer,
                                  "answer": answer}, where="prompts.jsonl:1"), "math")


@pytest.mark.parametrize("spec, scorer", [("verifier", None), ("verifier:numeric", "numeric"),
                                          ("judge", "judge"), ("python:json:loads", "python:json:loads")])
def test_grader_specs(spec, scorer):
    assert scorer_for(spec) == scorer


@pytest.mark.parametrize("spec, message", [("verifier:choice", "unknown verifier"), ("oracle", "unknown grader"),
                                           ("python:no_such_module_xyz:f", "cannot import")])
def test_bad_grader_specs(spec, message):
    with pytest.raises(InputError, match=message):
        scorer_for(spec)
    with pytest.raises(InputError, match="needs --judge-url"):
        make_grader("judge")


def test_best_is_first_best_and_worst_is_last_worst():
    assert best_and_worst([0.0, 1.0, 1.0, 0.0]) == (1, 3)
    assert best_and_worst([0.5, 0.5]) == (0, 1)


def test_pick_pair_keeps_a_large_gap_records_grader_and_scores():
    options = SampleOptions(k=3, min_gap=0.5)
    pair = pick_pair(prompt(), ["It is 41.", "It is 42.", "It is 40."], [0.0, 1.0, 0.0], Grader("verifier"),
                     options, "policy-x")
    assert (pair.chosen, pair.rejected, pair.grader) == ("It is 42.", "It is 40.", "verifier:numeric")
    assert pair.meta["scores"] == [0.0, 1.0, 0.0] and pair.meta["chosen_index"] == 1
    assert pair.meta["rejected_index"] == 2 and pair.meta["policy"] == "policy-x" and pair.rejection_type == "sampled"
    assert verify(pair.chosen, "42", "numeric") == 1.0 and verify(pair.rejected, "42", "numeric") == 0.0
    small = pick_pair(prompt(), ["a", "b", "c"], [0.75, 1.0, 0.75], Grader("judge"), options, "p")
    assert "below --min-gap 0.5" in small.reason and small.scores == [0.75, 1.0, 0.75]
    last_worst = pick_pair(prompt(), ["x", "x", "y"], [1.0, 0.0, 0.0], Grader("v"), options, "p")
    assert (last_worst.chosen, last_worst.rejected) == ("x", "y")
    tie = pick_pair(prompt(), ["x", "x"], [1.0, 0.0], Grader("v"), options, "p")
    assert tie.reason == "the best and worst candidates are the same text"


def test_options_are_validated():
    for kwargs, field in [({"k": 1}, "k"), ({"temperature": 0}, "temperature"), ({"top_p": 0}, "top_p"),
                          ({"min_gap": 2}, "min_gap")]:
        with pytest.raises(InputError, match=f"field '{field}'"):
            SampleOptions(**kwargs)


def test_read_prompts_checks_what_the_verifier_needs_before_any_model(tmp_path):
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "2+2?", "answer": 4}, {"prompt": "Name one."}])
    with pytest.raises(InputError, match=r"prompts.jsonl:2: field 'answer': missing \(scorer 'numeric'"):
        read_prompts(path, "numeric")
    with pytest.raises(InputError, match=r"prompts.jsonl:1: field 'scorer': missing"):
        read_prompts(path, None)
    items = read_prompts(write_jsonl(tmp_path / "ok.jsonl", [{"prompt": "2+2?", "answer": 4}]), "numeric")
    assert items[0].category is None and items[0].item.scorer == "numeric"


def test_sibling_grader_warning():
    judge = type("J", (), {"model": "meta-llama/Llama-3.1-70B-Instruct"})()
    grader = make_grader("judge", judge=judge)
    assert "same model family (llama)" in family_warning(["runs/dpo-1", "llama"], grader)
    assert family_warning(["runs/dpo-1", "qwen2"], grader) is None
    assert family_warning(["/models/model"], make_grader("judge", judge=type("J", (), {"path": "/judges/model"})())) \
        is None  # unknown names are no family
    assert family_warning(["llama"], make_grader("verifier")) is None


def test_sample_command_end_to_end_on_a_tiny_model(tiny_dir, tmp_path, one_thread):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    out = tmp_path / "pairs.jsonl"

    def args(out):
        return ["pairs", "sample", str(prompts), "--model", str(tiny_dir), "--k", "4", "--grader", "verifier",
                "--out", str(out), "--max-new-tokens", "12", "--temperature", "1.0", "--seed", "0", "--device",
                "cpu", "--batch-size", "3"]

    result = CliRunner().invoke(cli(), args(out))
    assert result.exit_code == 0, result.output
    ds = read_dataset(out)
    assert len(ds) >= 2, result.output
    skipped = [json.loads(line) for line in (tmp_path / "pairs.skipped.jsonl").read_text().splitlines()]
    assert len(ds) + len(skipped) == len(PROMPTS)
    answers = {row["id"]: row["answer"] for row in PROMPTS}
    for pair in ds.records:
        answer = answers[pair.meta["source_id"]]
        assert pair.grader == "verifier:contains" and pair.rejection_type == "sampled"
        assert len(pair.meta["scores"]) == 4 and pair.meta["chosen_score"] - pair.meta["rejected_score"] >= 0.5
        assert verify(pair.chosen, answer, "contains") == 1.0 and verify(pair.rejected, answer, "contains") == 0.0
        assert pair.category in ("letters", "vowels")
    assert all(len(row["scores"]) == 4 and "min-gap" in row["reason"] for row in skipped)
    assert f"{len(ds)} of {len(PROMPTS)} prompts gave a pair" in result.stdout
    again = tmp_path / "again.jsonl"
    assert CliRunner().invoke(cli(), args(again)).exit_code == 0
    assert again.read_text() == out.read_text()  # seeded: the same candidates on CPU


def test_sample_command_warns_about_a_sibling_judge(tiny_dir, tmp_path, editor_server, one_thread):
    def judge(messages):
        graded = messages[-1]["content"].split("Answer to grade:\n", 1)[1].split("\n\nGive at most", 1)[0]
        return "Grade: A" if len(graded) % 2 == 0 else "Grade: F"

    editor_server.reply = judge
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS[:2])
    result = CliRunner().invoke(cli(), [
        "pairs", "sample", str(prompts), "--model", str(tiny_dir), "--grader", "judge", "--judge-url",
        editor_server.base_url, "--judge-model", "llama-3-70b", "--out", str(tmp_path / "p.jsonl"),
        "--max-new-tokens", "4", "--device", "cpu", "--min-gap", "0"])
    assert "warning: the judge (llama-3-70b) and the policy come from the same model family (llama)" in result.stderr
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert rows and all(r["grader"] == "llama-3-70b" and r["meta"]["chosen_score"] == 1.0 for r in rows)
    assert len(editor_server.requests) == 2 * 4  # every candidate graded once
