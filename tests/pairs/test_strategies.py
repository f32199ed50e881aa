"""One test per construction strategy: the rejected answer differs from the chosen one in the intended way,
and the eval package's verifier (its scorers, against the gold answer) scores it wrong and the chosen right."""

from __future__ import annotations

import random

import pytest

from prefgate.pairs import EntityPool, GoldItem, Skip, choice, drop_step, entity_swap, negation, numeric, read_gold
from prefgate.pairs.strategies import negation_sites, number_spans, perturb_number, split_steps
from tests.pairs.conftest import verify


@pytest.fixture()
def gold(gold_file) -> dict[str, GoldItem]:
    return {it.id: it for it in read_gold(gold_file)}


def numbers(text: str) -> list[str]:
    return [m.group(0) for m in number_spans(text)]


# ---------------------------------------------------------------------------------------------------------
# numeric


def test_numeric_final_changes_the_final_answer_only_and_the_numeric_verifier_says_wrong(gold):
    item = gold["gsm1"]
    for seed in range(20):
        [(rejected, detail)] = numeric(item, random.Random(seed), target="final")
        before, after = numbers(item.answer), numbers(rejected)
        assert after[:-1] == before[:-1] and after[-1] != before[-1] == "72"
        assert detail == {"original": "72", "replacement": after[-1], "number_index": 6, "n_numbers": 7,
                          "final": True, "offset": item.answer.rindex("72")}
        assert rejected.replace(after[-1], "72") == item.answer  # nothing else moved
        assert verify(item.answer, "72", "numeric") == 1.0
        assert verify(rejected, "72", "numeric") == 0.0


def test_numeric_intermediate_corrupts_one_step_metamath_style(gold):
    """An intermediate result is wrong but the final answer stands: the exact-match verifier against the gold
    solution says wrong; a final-answer verifier cannot tell (docs/pairs.md says so)."""
    item = gold["gsm1"]
    [(rejected, detail)] = numeric(item, random.Random(0), target="intermediate")
    before, after = numbers(item.answer), numbers(rejected)
    changed = [i for i, (x, y) in enumerate(zip(before, after, strict=True)) if x != y]
    assert changed == [detail["number_index"]] and not detail["final"] and after[-1] == "72"
    assert verify(rejected, item.answer, "exact") == 0.0 and verify(item.answer, item.answer, "exact") == 1.0
    assert verify(rejected, "72", "numeric") == 1.0


def test_numeric_any_changes_exactly_one_number_and_keeps_its_format(gold):
    item = gold["gsm2"]  # "1,253.5"
    [(rejected, detail)] = numeric(item, random.Random(3))
    assert rejected != "1,253.5" and "," in rejected and len(rejected.split(".")[1]) == 1
    assert verify(rejected, "1253.5", "numeric") == 0.0 and verify(item.answer, "1253.5", "numeric") == 1.0
    for seed in range(30):
        [(rejected, _)] = numeric(gold["gsm1"], random.Random(seed))
        diffs = sum(x != y for x, y in zip(numbers(gold["gsm1"].answer), numbers(rejected), strict=True))
        assert diffs == 1


@pytest.mark.parametrize("token", ["0", "7", "-3", "1,200", "3.14", "1969", "0.05"])
def test_perturb_number_keeps_sign_commas_and_decimals(token):
    for seed in range(25):
        new = perturb_number(token, random.Random(seed))
        assert new != token
        assert ("," in new) == ("," in token) or abs(float(new.replace(",", ""))) < 1000
        assert len(new.partition(".")[2]) == len(token.partition(".")[2])
        if not token.startswith("-"):
            assert not new.startswith("-")


def test_list_markers_and_step_numbers_are_not_quantities():
    assert numbers("1. Add 2 and 3.\n2) Step 4 gives 5") == ["2", "3", "5"]
    assert numbers("72.") == ["72"] and numbers("So:\n72.\n") == ["72"]  # an answer alone on its line


def test_numeric_skips_an_answer_without_numbers(gold):
    with pytest.raises(Skip, match="no number"):
        numeric(gold["ent1"], random.Random(0))
    with pytest.raises(Skip, match="intermediate"):
        numeric(gold["gsm2"], random.Random(0), target="intermediate")


# ---------------------------------------------------------------------------------------------------------
# choice


def test_choice_pairs_the_right_option_with_each_wrong_one(gold):
    item = gold["arc1"]
    out = choice(item, random.Random(0))
    assert [r for r, _ in out] == ["shark", "trout", "octopus"]
    assert [d["choice_index"] for _, d in out] == [0, 2, 3]
    assert verify("whale", "whale", "exact") == 1.0
    assert all(verify(rejected, "whale", "exact") == 0.0 for rejected, _ in out)
    hs = choice(gold["hs1"], random.Random(0))
    assert len(hs) == 2 and all(verify(r, gold["hs1"].answer, "exact") == 0.0 for r, _ in hs)
    with pytest.raises(Skip, match="no choices"):
        choice(gold["gsm1"], random.Random(0))


# ---------------------------------------------------------------------------------------------------------
# negation


@pytest.mark.parametrize("answer, flipped", [
    ("Penguins cannot fly.", "Penguins can fly."),
    ("Penguins can't fly.", "Penguins can fly."),
    ("It is red.", "It is not red."),
    ("Cats are mammals.", "Cats are not mammals."),
    ("He isn't here.", "He is here."),
    ("It won't rain.", "It will rain."),
    ("Fish do not breathe air.", "Fish do breathe air."),
    ("Water never boils at 50 C here.", "Water always boils at 50 C here."),
    ("You should stop.", "You should not stop."),
    ("Is red.", "Is not red."),
    ("Yes.", "No."),
])
def test_negation_rules_flip_exactly_one_clause(answer, flipped):
    item = GoldItem("x", "q?", answer)
    [(rejected, detail)] = negation(item, random.Random(0))
    assert rejected == flipped
    assert detail["original"] in answer and detail["replacement"] in rejected
    assert verify(rejected, answer, "exact") == 0.0 and verify(answer, answer, "exact") == 1.0


def test_negation_picks_one_site_by_seed_and_skips_what_it_cannot_flip(gold):
    item = gold["neg2"]  # "Yes, the Earth is round." has two sites
    assert [s[3] for s in negation_sites(item.answer)] == ["Yes -> No", "is -> is not (and are, was, were)"]
    outs = {negation(item, random.Random(seed))[0][0] for seed in range(20)}
    assert outs == {"No, the Earth is round.", "Yes, the Earth is not round."}
    with pytest.raises(Skip, match="no clause"):
        negation(gold["gsm2"], random.Random(0))


# ---------------------------------------------------------------------------------------------------------
# entity_swap


def test_entity_swap_uses_an_entity_of_the_same_kind_from_the_dataset(gold):
    texts = [t for it in gold.values() for t in (it.prompt_text, it.answer)]
    pool = EntityPool.from_texts(texts)
    item = gold["ent1"]  # "The capital of France is Paris.": France is in the prompt, so Paris is swapped
    [(rejected, detail)] = entity_swap(item, random.Random(0), pool)
    assert detail == {"original": "Paris", "replacement": "Rome", "kind": "city", "source": "dataset"}
    assert rejected == "The capital of France is Rome."
    assert verify(rejected, "Paris", "contains") == 0.0 and verify(item.answer, "Paris", "contains") == 1.0


def test_entity_swap_falls_back_to_the_builtin_list_and_never_swaps_a_name_for_itself(gold):
    item = gold["ent3"]  # "William Shakespeare wrote Hamlet.": no other person in the dataset
    for seed in range(20):
        [(rejected, detail)] = entity_swap(item, random.Random(seed))
        assert detail["kind"] == "person" and detail["source"] == "builtin"
        assert "Shakespeare" not in rejected and rejected.endswith(" wrote Hamlet.")
        assert verify(rejected, "Shakespeare", "contains") == 0.0


def test_entity_swap_changes_the_answer_entity_not_a_distractor():
    item = GoldItem("au", "What is the capital of Australia?", "The capital of Australia is Canberra, not Sydney.")
    for seed in range(10):
        [(rejected, detail)] = entity_swap(item, random.Random(seed))
        assert detail["original"] == "Canberra" and rejected.endswith(", not Sydney.")
        assert verify(rejected, "Canberra", "contains") == 0.0


def test_entity_swap_replaces_every_occurrence_and_takes_extra_kinds():
    item = GoldItem("x", "Which solvent?", "Use Toluene; Toluene dissolves it.")
    pool = EntityPool(extra={"solvent": ["Toluene", "Benzene"]})
    [(rejected, detail)] = entity_swap(item, random.Random(0), pool)
    assert rejected == "Use Benzene; Benzene dissolves it." and detail["kind"] == "solvent"
    with pytest.raises(Skip, match="no named entity"):
        entity_swap(GoldItem("y", "q", "nothing named here"), random.Random(0))


# ---------------------------------------------------------------------------------------------------------
# drop_step


def test_drop_step_drops_one_intermediate_line(gold):
    item = gold["gsm1"]
    lines = item.answer.split("\n")
    for seed in range(10):
        [(rejected, detail)] = drop_step(item, random.Random(seed))
        kept = rejected.split("\n")
        assert len(kept) == 2 and kept[-1] == lines[-1]  # the result line always stays
        assert detail["dropped"] == lines[detail["step_index"]] and detail["unit"] == "line"
        assert [ln for ln in lines if ln != detail["dropped"]] == kept
        assert verify(rejected, item.answer, "exact") == 0.0


def test_drop_step_works_on_sentences_and_needs_two_steps():
    item = GoldItem("s", "q", "First add 2 and 3. Then double it. So the answer is 10.")
    assert split_steps(item.answer)[0] == "sentence"
    outs = {drop_step(item, random.Random(seed))[0][0] for seed in range(20)}
    assert outs == {"Then double it. So the answer is 10.", "First add 2 and 3. So the answer is 10."}
    with pytest.raises(Skip, match="fewer than two steps"):
        drop_step(GoldItem("o", "q", "Just 3.5 apples."), random.Random(0))
