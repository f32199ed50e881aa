"""One planted-defect dataset and one clean dataset per check: the check flips on exactly its defect."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from prefgate.audit import (
    AuditPolicy,
    check_contradictions,
    check_edit_distance,
    check_grader_independence,
    check_identical,
    check_length_bias,
    check_length_ratio,
    check_rejection_diversity,
    check_schema,
    check_shortcut,
    check_style_only,
    check_truncation,
    model_family,
    split_by_length_ratio,
)
from prefgate.audit.view import style_norm
from prefgate.data.dataset import PreferenceDataset, RejectedRow
from prefgate.data.records import UnpairedExample


def plant(pairs, indices, **changes_by_pair):
    """A copy of `pairs` where each index gets `fn(pair) -> dict of new fields` applied."""
    (fn,) = changes_by_pair.values()
    out = list(pairs)
    for i in indices:
        out[i] = replace(out[i], **fn(out[i]))
    return out


# -- schema ------------------------------------------------------------------------------------------------

def test_schema_clean_passes(pairs):
    result = check_schema(PreferenceDataset("d.jsonl", pairs))
    assert (result.status, result.value) == ("pass", 0.0)


def test_schema_invalid_rows_fail_unless_skipped_on_purpose(pairs):
    bad_row = RejectedRow("d.jsonl:7", "field 'chosen': missing", "{}")
    ds = PreferenceDataset("d.jsonl", pairs, rejected=[bad_row])
    failed = check_schema(ds, skip_invalid=False)
    assert failed.status == "fail"
    assert failed.examples == ["d.jsonl:7"]
    assert failed.value == pytest.approx(1 / 61)
    assert "--skip-invalid" in failed.message
    assert check_schema(ds).status == "warn"  # rows in .rejected were skipped on purpose (read_dataset)


# -- identical ---------------------------------------------------------------------------------------------

def test_identical_clean_passes(pairs):
    result = check_identical(pairs)
    assert (result.status, result.value, result.examples) == ("pass", 0.0, [])


def test_identical_planted_fails(pairs):
    planted = plant(pairs, [3, 10, 20], fn=lambda p: {"rejected": "  " + p.chosen.replace(" ", "\n  ") + " "})
    result = check_identical(planted)
    assert result.status == "fail"  # 3 / 60 = 5% > 1%
    assert result.value == pytest.approx(0.05)
    assert result.examples == ["p003", "p010", "p020"]


def test_identical_under_threshold_passes(make_pairs):
    pairs = make_pairs(200)
    planted = plant(pairs, [5], fn=lambda p: {"rejected": p.chosen})
    assert check_identical(planted).status == "pass"  # 0.5% <= 1%


# -- style_only --------------------------------------------------------------------------------------------

STYLE_VARIANTS = [
    lambda t: t.upper(),
    lambda t: "**" + t + "**",
    lambda t: t.replace(".", "!"),
    lambda t: "- " + t,
    lambda t: "# " + t.lower(),
    lambda t: "1. " + t.replace(" ", "  ", 3),
    lambda t: "`" + t.rstrip(".") + "`",
]


@pytest.mark.parametrize("a, b", [
    ("**Paris** is the capital.", "paris is the capital"),
    ("1. Paris\n2. Rome", "Paris Rome"),
    ("See [the docs](https://example.com) now!", "see the docs now"),
    ("# Title\n\n- item _one_", "title item one"),
])
def test_style_norm_equal(a, b):
    assert style_norm(a) == style_norm(b)


def test_style_norm_keeps_words_and_numbers():
    assert style_norm("Paris") != style_norm("Rome")
    assert style_norm("It costs 12 dollars") != style_norm("It costs 13 dollars")


def test_style_only_clean_passes(pairs):
    assert check_style_only(pairs).status == "pass"


def test_style_only_planted_warns_then_fails(pairs):
    def restyle(p):
        return {"rejected": STYLE_VARIANTS[int(p.id[1:]) % len(STYLE_VARIANTS)](p.chosen)}

    warned = check_style_only(plant(pairs, range(6), fn=restyle))  # 10%
    assert warned.status == "warn"
    assert warned.examples == ["p000", "p001", "p002", "p003", "p004"]
    failed = check_style_only(plant(pairs, range(15), fn=restyle))  # 25%
    assert (failed.status, failed.value) == ("fail", pytest.approx(0.25))


def test_style_only_does_not_count_identical_pairs(pairs):
    planted = plant(pairs, range(10), fn=lambda p: {"rejected": p.chosen + "  "})
    assert check_style_only(planted).value == 0.0
    assert check_identical(planted).status == "fail"


# -- edit_distance -----------------------------------------------------------------------------------------

def _one_word_changed(p):
    words = p.chosen.split()
    words[len(words) // 2] = "CHANGED"
    return {"rejected": " ".join(words)}


def test_edit_distance_clean_passes(pairs):
    result = check_edit_distance(pairs)
    assert result.status == "pass"
    assert result.value == 0.0
    assert sum(result.details["histogram"]["counts"]) == 60
    assert result.details["unit"] == "characters"


def test_edit_distance_low_edit_pairs_warn_and_recommend_dpop(pairs):
    result = check_edit_distance(plant(pairs, range(0, 50, 2), fn=_one_word_changed))  # 25 of 60 = 42%
    assert result.status == "warn"
    assert result.value == pytest.approx(25 / 60)
    assert "loss: dpop" in result.message and "DPOP" in result.message
    assert len(result.examples) == 5


def test_edit_distance_in_tokens_with_a_tokenizer(pairs, tokenizer):
    result = check_edit_distance(plant(pairs, range(0, 50, 2), fn=_one_word_changed), tokenizer=tokenizer)
    assert result.details["unit"] == "tokens"
    assert result.status == "warn"
    assert check_edit_distance(pairs, tokenizer=tokenizer).status == "pass"


# -- length_bias -------------------------------------------------------------------------------------------

def test_length_bias_clean_passes(pairs):
    result = check_length_bias(pairs)
    assert result.status == "pass"
    assert 0.4 <= result.value <= 0.6
    assert len(result.details["scatter"]["chosen"]) == 60


def test_length_bias_planted_warns(pairs):
    # Swap the sides of most pairs whose chosen side is the shorter: the chosen side is now longer in ~90%.
    shorter = [i for i, p in enumerate(pairs) if len(p.chosen) < len(p.rejected)][:24]
    planted = plant(pairs, shorter, fn=lambda p: {"chosen": p.rejected, "rejected": p.chosen})
    result = check_length_bias(planted)
    assert result.status == "warn"
    assert result.value >= 0.85
    assert "longer is better" in result.message
    assert check_length_ratio(planted).status == "pass"  # no pair got more than 2x longer


# -- length_ratio ------------------------------------------------------------------------------------------

def _short_rejected(p):
    return {"rejected": " ".join(p.rejected.split()[:4]) + "."}


def test_length_ratio_clean_passes(pairs):
    assert check_length_ratio(pairs).status == "pass"


def test_length_ratio_planted_warns_and_filter_removes_exactly_those(pairs):
    planted = plant(pairs, range(10), fn=_short_rejected)  # 10 of 60 = 16.7% > 10%
    result = check_length_ratio(planted)
    assert result.status == "warn"
    assert result.details["n_over"] == 10
    assert "prefgate data filter IN OUT --max-length-ratio 2" in result.message
    kept, removed = split_by_length_ratio(planted, 2.0)
    assert [p.id for p in removed] == [f"p{i:03d}" for i in range(10)]
    assert len(kept) == 50
    assert check_length_ratio(kept).value == 0.0


def test_length_ratio_empty_rejected_counts_as_over(pairs):
    planted = plant(pairs, range(8), fn=lambda p: {"rejected": ""})
    assert check_length_ratio(planted).details["n_over"] == 8


# -- shortcut ----------------------------------------------------------------------------------------------

REFUSAL = "I'm sorry, but I can't help with that. "
NEUTRAL = "Yes, and I'll be glad to go over it. "  # same punctuation, no apology or refusal


def test_shortcut_clean_passes(pairs):
    result = check_shortcut(pairs)
    assert result.status == "pass"
    assert result.value < 0.7


def test_shortcut_planted_apologies_warn(pairs):
    pad = NEUTRAL + "x" * (len(REFUSAL) - len(NEUTRAL))  # equal length: the cue is the words, not the length
    planted = [replace(p, chosen=pad + p.chosen, rejected=REFUSAL + p.rejected) for p in pairs]
    result = check_shortcut(planted)
    assert result.status == "warn"
    assert result.value >= 0.9
    assert result.details["strongest"] in ("apologies", "refusal phrases")
    assert "less on the chosen side" in result.message
    assert len(result.examples) == 5


def test_shortcut_skips_when_too_few_pairs(make_pairs):
    assert check_shortcut(make_pairs(10)).status == "skip"


# -- truncation --------------------------------------------------------------------------------------------

def test_truncation_clean_passes(make_pairs, tokenizer):
    result = check_truncation(make_pairs(40), tokenizer=tokenizer, max_length=512)
    assert (result.status, result.details["any_share"]) == ("pass", 0.0)


def test_truncation_one_side_cut_fails(make_pairs, tokenizer):
    planted = plant(make_pairs(40), [1, 7, 30], fn=lambda p: {"chosen": " ".join([p.chosen] * 8)})
    result = check_truncation(planted, tokenizer=tokenizer, max_length=512)
    assert result.status == "fail"
    assert result.value == pytest.approx(3 / 40)
    assert (result.details["chosen_only"], result.details["rejected_only"]) == (3, 0)
    assert result.examples == ["p001", "p007", "p030"]


def test_truncation_on_both_sides_is_not_asymmetric(make_pairs, tokenizer):
    planted = plant(make_pairs(40), range(10), fn=lambda p: {"chosen": " ".join([p.chosen] * 8),
                                                             "rejected": " ".join([p.rejected] * 8)})
    result = check_truncation(planted, tokenizer=tokenizer, max_length=512)
    assert result.status == "pass"
    assert result.details["any_share"] == pytest.approx(0.25)


def test_truncation_skips_without_tokenizer_or_max_length(pairs, tokenizer):
    assert check_truncation(pairs).status == "skip"
    assert check_truncation(pairs, tokenizer=tokenizer).status == "skip"


# -- contradictions ----------------------------------------------------------------------------------------

def test_contradictions_clean_passes(pairs):
    assert check_contradictions(pairs).status == "pass"


def test_contradictions_planted_fail(pairs):
    flipped = replace(pairs[4], id="flip", chosen=pairs[4].rejected, rejected=" " + pairs[4].chosen)
    result = check_contradictions([*pairs, flipped])
    assert result.status == "fail"  # 2 of 61 records
    assert sorted(result.examples) == ["flip", "p004"]


def test_same_answers_for_different_prompts_do_not_contradict(pairs):
    other = replace(pairs[4], id="other", prompt="A different question?", chosen=pairs[4].rejected,
                    rejected=pairs[4].chosen)
    assert check_contradictions([*pairs, other]).status == "pass"


# -- rejection_diversity -----------------------------------------------------------------------------------

def test_rejection_diversity_skips_without_types(pairs):
    assert check_rejection_diversity(pairs).status == "skip"


def test_rejection_diversity_mixed_passes(pairs):
    types = ["wrong_fact", "unsafe", "off_topic", "truncated"]
    typed = [replace(p, rejection_type=types[i % 4]) for i, p in enumerate(pairs)]
    result = check_rejection_diversity(typed)
    assert (result.status, result.value) == ("pass", 0.25)


def test_rejection_diversity_one_type_warns(pairs):
    typed = [replace(p, rejection_type="wrong_fact" if i < 55 else "unsafe") for i, p in enumerate(pairs)]
    result = check_rejection_diversity(typed)
    assert result.status == "warn"
    assert result.details["counts"] == {"wrong_fact": 55, "unsafe": 5}
    assert "'wrong_fact'" in result.message


# -- grader_independence -----------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b", [
    ("gpt-4o-mini", "gpt-4o"), ("openai/gpt-4.1", "o3-mini"), ("llama-3.1-8b", "meta-llama/Llama-3-70B"),
    ("qwen2.5-7b", "Qwen/QwQ-32B"), ("mistral-7b-instruct", "mixtral-8x7b"),
    ("claude-3-5-sonnet", "claude-opus-4"), ("gemini-1.5-pro", "gemini-2.0-flash"),
    ("microsoft/phi-3-mini", "phi-4"), ("google/gemma-2-9b", "gemma-7b"),
    ("deepseek-v3", "deepseek-ai/DeepSeek-R1"),
])
def test_same_family(a, b):
    assert model_family(a) == model_family(b)


@pytest.mark.parametrize("a, b", [
    ("gpt-4o", "claude-3-haiku"), ("gemma-2-9b", "gemini-1.5-pro"), ("llama-3-8b", "qwen2.5-7b"),
    ("mistral-large", "phi-3"), ("acme-7b", "zeta-7b"),
])
def test_different_family(a, b):
    assert model_family(a) != model_family(b)


def test_grader_independence_sibling_grader_warns(pairs):
    graded = [replace(p, grader="gpt-4o-mini" if i % 3 else "claude-3-haiku") for i, p in enumerate(pairs)]
    result = check_grader_independence(graded, policy_model="gpt-4o")
    assert result.status == "warn"
    assert result.value == pytest.approx(40 / 60)
    assert result.details["policy_family"] == "gpt"
    assert "gpt-4o-mini" in result.message


def test_grader_independence_other_family_passes(pairs):
    graded = [replace(p, grader="claude-3-haiku") for p in pairs]
    result = check_grader_independence(graded, policy_model="meta-llama/Llama-3.1-8B-Instruct")
    assert (result.status, result.value) == ("pass", 0.0)


def test_grader_independence_skips_without_graders_or_policy_model(pairs):
    assert check_grader_independence(pairs, policy_model="gpt-4o").status == "skip"
    graded = [replace(p, grader="gpt-4o") for p in pairs]
    assert check_grader_independence(graded).status == "skip"


# -- unpaired data -----------------------------------------------------------------------------------------

PAIR_CHECKS = [check_identical, check_style_only, check_edit_distance, check_length_bias, check_length_ratio,
               check_shortcut, check_contradictions, check_truncation]


@pytest.mark.parametrize("check", PAIR_CHECKS, ids=lambda c: c.__name__)
def test_pair_checks_skip_unpaired_data(check):
    rng = random.Random(0)
    examples = [UnpairedExample(id=f"u{i}", prompt=f"q{i}", completion=f"a{rng.random()}", label=i % 2 == 0)
                for i in range(40)]
    result = check(examples, AuditPolicy())
    assert result.status == "skip"
    assert "unpaired" in result.message
