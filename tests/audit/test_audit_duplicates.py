"""`duplicates` and `leakage`: prompts compared across records (MinHash LSH, confirmed by exact Jaccard)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from prefgate.audit import PromptSet, check_duplicates, check_leakage, read_prompts
from prefgate.audit.duplicates import jaccard, shingles
from prefgate.data.records import UnpairedExample
from prefgate.errors import InputError

LONG_PROMPT = ("Explain how a bicycle stays upright while moving, covering the role of the front wheel, the "
               "trail of the fork, gyroscopic effects of both wheels, and what a rider does with small "
               "steering corrections at low and at high speed, in plain words for a curious teenager")


def test_shingles_ignore_case_and_punctuation():
    assert shingles("What is the capital of France?", 2) == shingles("what is the CAPITAL of france", 2)
    assert shingles("Hi", 2) == frozenset([b"hi"])


def test_one_word_changed_in_a_long_prompt_is_near():
    changed = LONG_PROMPT.replace("teenager", "child")
    assert jaccard(shingles(LONG_PROMPT, 2), shingles(changed, 2)) >= 0.8


# -- duplicates --------------------------------------------------------------------------------------------

def test_duplicates_clean_passes(pairs):
    result = check_duplicates(pairs)
    assert (result.status, result.value) == ("pass", 0.0)


def test_exact_duplicate_pairs_warn(pairs):
    copies = [replace(p, id=f"copy{i}", chosen=p.chosen + "  ") for i, p in enumerate(pairs[:4])]
    result = check_duplicates([*pairs, *copies])  # 4 of 64 = 6.25% > 5%
    assert result.status == "warn"
    assert result.details["n_exact"] == 4
    assert result.details["n_near_prompt"] == 0
    assert result.examples == ["copy0", "copy1", "copy2", "copy3"]


def test_near_duplicate_prompts_warn(pairs):
    variants = [LONG_PROMPT, LONG_PROMPT.upper(), LONG_PROMPT + "!", LONG_PROMPT.replace("teenager", "child")]
    planted = [replace(p, prompt=variants[i]) if i < 4 else p for i, p in enumerate(pairs)]
    result = check_duplicates(planted)  # 4 of 60 = 6.7%
    assert result.status == "warn"
    assert result.details["n_near_prompt"] == 4
    assert result.details["n_exact"] == 0
    assert result.examples == ["p000", "p001", "p002", "p003"]


def test_several_pairs_for_one_prompt_are_not_duplicates(pairs):
    shared = [replace(p, prompt=pairs[0].prompt) for p in pairs[:10]]  # as UltraFeedback has
    result = check_duplicates([*shared, *pairs[10:]])
    assert result.status == "pass"
    assert result.details["n_near_prompt"] == 0
    assert result.details["shared_prompt_share"] == pytest.approx(10 / 60)


def test_duplicates_on_unpaired_data():
    rows = [UnpairedExample(id=f"u{i}", prompt=f"Question number {i} about topic {i * 7}?",
                            completion=f"Answer {i}.", label=True) for i in range(30)]
    rows += [replace(rows[i], id=f"dup{i}") for i in range(3)]
    result = check_duplicates(rows)
    assert result.details["n_exact"] == 3
    assert result.status == "warn"


# -- leakage -----------------------------------------------------------------------------------------------

def _evals(prompts):
    return PromptSet("eval.jsonl", [f"e{i}" for i in range(len(prompts))], prompts)


FRESH = ["Held-out question 0: how many apples fit in a box?",
         "Held-out question 1: how many bricks fit in a truck?",
         "Held-out question 2: how many clouds fit in the sky?",
         "Held-out question 3: how many ducks fit in a pond?"]


def test_leakage_skips_without_eval(pairs):
    assert check_leakage(pairs).status == "skip"


def test_leakage_disjoint_passes(pairs):
    result = check_leakage(pairs, eval_prompts=_evals(FRESH))
    assert (result.status, result.value) == ("pass", 0.0)


def test_leakage_exact_overlap_fails(pairs):
    result = check_leakage(pairs, eval_prompts=_evals([*FRESH, pairs[3].prompt]))
    assert result.status == "fail"
    assert result.examples == ["p003"]
    assert result.details["eval_examples"] == ["e4"]
    assert result.details["eval_leaked_share"] == pytest.approx(1 / 5)


def test_leakage_near_overlap_warns(pairs):
    near = pairs[5].prompt.lower().rstrip(".") + "?"
    result = check_leakage(pairs, eval_prompts=_evals([*FRESH, near]))
    assert result.status == "warn"
    assert (result.details["n_exact"], result.details["n_near"]) == (0, 1)
    assert result.examples == ["p005"]


def test_leakage_accepts_a_dataset_of_records(pairs):
    result = check_leakage(pairs[:30], eval_prompts=pairs[25:])
    assert result.status == "fail"
    assert result.details["n_exact"] == 5


def test_read_prompts_from_an_eval_suite(tmp_path):
    path = tmp_path / "suite.jsonl"
    rows = [{"id": "q1", "prompt": "What is 2+2?", "category": "math"},
            {"prompt": [{"role": "user", "content": "Hello"}], "reference": "Hi"},
            {"prompt": "p", "chosen": "a", "rejected": "b"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = read_prompts(path)
    assert prompts.ids[0] == "q1"
    assert prompts.prompts[1] == [{"role": "user", "content": "Hello"}]
    assert len(prompts.keys) == 3


def test_read_prompts_bad_row_names_the_line(tmp_path):
    path = tmp_path / "suite.jsonl"
    path.write_text('{"prompt": "ok"}\n{"question": "no prompt"}\n')
    with pytest.raises(InputError, match=r"suite.jsonl:2"):
        read_prompts(path)
