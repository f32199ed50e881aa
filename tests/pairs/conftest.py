"""Pairs fixtures: gold items of every kind, a verifier built from the eval scorers, and a fake
OpenAI-compatible editor server on 127.0.0.1 started in a thread by the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefgate.eval.scorers import score_output
from prefgate.eval.suite import parse_item
from tests.fake_openai import FakeOpenAI

GOLD_ROWS = [
    {"id": "gsm1", "category": "math",
     "prompt": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
               "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48 / 2 = 24 clips in May.\nNatalia sold 48 + 24 = 72 clips altogether in April and "
               "May.\nThe answer is 72"},
    {"id": "gsm2", "category": "math", "prompt": "What is 1,250 plus 3.5?", "answer": "1,253.5"},
    {"id": "arc1", "category": "science", "prompt": "Which of these is a mammal?",
     "choices": ["shark", "whale", "trout", "octopus"], "answer": 1},
    {"id": "hs1", "category": "commonsense", "prompt": "A man is sitting on a roof. He",
     "choices": ["starts pulling up roofing on a roof.", "is using wrap to wrap a pair of skis.",
                 "is ripping level tiles off."], "answer": "starts pulling up roofing on a roof."},
    {"id": "neg1", "category": "qa", "prompt": "Can penguins fly?", "answer": "Penguins cannot fly."},
    {"id": "neg2", "category": "qa", "prompt": "Is the Earth round?", "answer": "Yes, the Earth is round."},
    {"id": "ent1", "category": "qa", "prompt": "What is the capital of France?",
     "answer": "The capital of France is Paris."},
    {"id": "ent2", "category": "qa", "prompt": "What is the capital of Italy?", "answer": "Rome."},
    {"id": "ent3", "category": "qa", "prompt": "Who wrote Hamlet?", "answer": "William Shakespeare wrote Hamlet."},
    {"id": "plain", "prompt": "Say hello.", "answer": "hello"},
]


CHAT_ROWS = [
    {"id": "chat1", "prompt": [{"role": "user", "content": "How many legs does a spider have?"}],
     "answer": "A spider has 8 legs."},
    {"id": "chat2", "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital?"}],
     "answer": "It is Paris."},
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def one_thread():
    """Tiny models run fastest on one CPU thread; on a busy machine torch's thread pool can be 100x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def gold_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "gold.jsonl", GOLD_ROWS)


def verify(output: str, answer, scorer: str, **extra) -> float:
    """The eval scorer's score of `output` against the gold `answer` (1 right, 0 wrong)."""
    item = parse_item({"id": "v", "category": "check", "prompt": "p", "scorer": scorer, "answer": answer, **extra},
                      where="verify")
    return score_output(output, item).score


def one_error_editor(messages: list[dict]) -> str:
    """An 'editor' that plants one factual error: the answer after "Answer:\\n" with Paris -> Lyon and the
    first 8 -> 6; an answer it cannot change comes back unchanged."""
    answer = messages[-1]["content"].split("Answer:\n", 1)[1]
    return answer.replace("Paris", "Lyon").replace("8", "6", 1)


@pytest.fixture()
def editor_server():
    with FakeOpenAI(one_error_editor) as server:
        yield server
