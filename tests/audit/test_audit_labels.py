"""Human labels: the reader's one-line errors, kappa on the symmetrised table, and the agreement check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prefgate.audit import HumanLabel, check_label_agreement, read_labels
from prefgate.audit.labels import kappa_interval, wilson_interval
from prefgate.errors import InputError
from prefgate.stats import symmetric_kappa


def labels_for(pairs, preferred: list[str]) -> list[HumanLabel]:
    return [HumanLabel(p.id, pref, "r1") for p, pref in zip(pairs, preferred, strict=False)]


def write_labels(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


# -- reader ------------------------------------------------------------------------------------------------

def test_read_labels(tmp_path):
    path = write_labels(tmp_path / "labels.jsonl", [{"id": "a", "preferred": "chosen", "rater": "ann"}, "",
                                                   {"id": 7, "preferred": "tie", "rater": "bob"}])
    labels = read_labels(path, known_ids={"a", "7"})
    assert [(lb.id, lb.preferred, lb.rater) for lb in labels] == [("a", "chosen", "ann"), ("7", "tie", "bob")]
    assert labels[1].where.endswith("labels.jsonl:3")


@pytest.mark.parametrize("bad_line, expected", [
    ("{not json", r"labels.jsonl:2: not valid JSON"),
    ('{"id": "a", "preferred": "better", "rater": "ann"}', r"jsonl:2: field 'preferred': expected one of"),
    ('{"preferred": "chosen", "rater": "ann"}', r"labels.jsonl:2: field 'id'"),
    ('{"id": "a", "preferred": "chosen"}', r"labels.jsonl:2: field 'rater'"),
    ('{"id": "zzz", "preferred": "chosen", "rater": "bob"}', r"jsonl:2: field 'id': unknown record id 'zzz'"),
    ('["a", "chosen"]', r"labels.jsonl:2: expected a JSON object"),
])
def test_read_labels_bad_line_is_one_line_error(tmp_path, bad_line, expected):
    first = {"id": "a", "preferred": "chosen", "rater": "ann"}
    path = write_labels(tmp_path / "labels.jsonl", [first, bad_line])
    with pytest.raises(InputError, match=expected) as err:
        read_labels(path, known_ids={"a", "b"})
    assert "\n" not in str(err.value)


def test_a_relabel_by_the_same_rater_wins(tmp_path):
    # The labelling tool appends a re-label ("back", then a new answer) instead of rewriting the file.
    path = write_labels(tmp_path / "labels.jsonl", [
        {"id": "a", "preferred": "rejected", "rater": "ann", "position": 0},
        {"id": "b", "preferred": "chosen", "rater": "ann", "position": 1},
        {"id": "a", "preferred": "chosen", "rater": "ann", "position": 0},
        {"id": "a", "preferred": "tie", "rater": "bob"},
    ])
    labels = read_labels(path, known_ids={"a", "b"})
    assert [(lb.id, lb.rater, lb.preferred) for lb in labels] == [
        ("b", "ann", "chosen"), ("a", "ann", "chosen"), ("a", "bob", "tie")]


def test_read_labels_empty_or_missing(tmp_path):
    with pytest.raises(InputError, match="no labels"):
        read_labels(write_labels(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(InputError, match="no such file"):
        read_labels(tmp_path / "missing.jsonl")


# -- statistics --------------------------------------------------------------------------------------------

def test_kappa_without_ties_is_two_agreement_minus_one():
    assert symmetric_kappa(90, 10, 0) == pytest.approx(0.8)
    assert symmetric_kappa(50, 50, 0) == pytest.approx(0.0)
    assert symmetric_kappa(10, 0, 0) == pytest.approx(1.0)


def test_kappa_equals_cohen_on_the_explicitly_symmetrised_table():
    from sklearn.metrics import cohen_kappa_score

    n_chosen, n_rejected, n_tie = 70, 20, 10
    human = ["chosen"] * n_chosen + ["rejected"] * n_rejected + ["tie"] * n_tie
    flip = {"chosen": "rejected", "rejected": "chosen", "tie": "tie"}
    # Each judgement twice: as stored (auto says "chosen" = first) and swapped (auto says the other side).
    auto_side = ["first"] * 100 + ["second"] * 100
    side = {"chosen": "first", "rejected": "second", "tie": "tie"}
    human_side = [side[h] for h in human] + [side[flip[h]] for h in human]
    expected = cohen_kappa_score(auto_side, human_side)
    assert symmetric_kappa(n_chosen, n_rejected, n_tie) == pytest.approx(expected, abs=1e-12)


def test_wilson_and_bootstrap_intervals_contain_the_estimate():
    lo, hi = wilson_interval(80, 100, 0.95)
    assert lo < 0.8 < hi
    assert (round(lo, 3), round(hi, 3)) == (0.711, 0.867)  # the textbook Wilson interval for 80/100
    per_record = np.array([[1, 0, 0]] * 80 + [[0, 1, 0]] * 20)
    klo, khi = kappa_interval(per_record, 0.95, 2000, seed=0)
    assert klo < 0.6 < khi
    assert kappa_interval(per_record, 0.95, 2000, seed=0) == [klo, khi]  # seeded


# -- check -------------------------------------------------------------------------------------------------

def test_label_agreement_skips_without_labels(pairs):
    assert check_label_agreement(pairs).status == "skip"


def test_label_agreement_high_agreement_passes(pairs):
    result = check_label_agreement(pairs, labels=labels_for(pairs, ["chosen"] * 38 + ["rejected", "tie"]))
    assert result.status == "pass"
    assert result.value == pytest.approx(0.95)
    assert result.details["counts"] == {"chosen": 38, "rejected": 1, "tie": 1}
    assert result.examples == ["p038", "p039"]


def test_label_agreement_low_agreement_fails(pairs):
    result = check_label_agreement(pairs, labels=labels_for(pairs, ["chosen"] * 30 + ["rejected"] * 10))
    assert result.status == "fail"
    assert result.value == pytest.approx(0.75)
    assert result.details["kappa"] == pytest.approx(0.5)
    assert "below 80%" in result.message


def test_ties_count_as_disagreement(pairs):
    result = check_label_agreement(pairs, labels=labels_for(pairs, ["chosen"] * 30 + ["tie"] * 10))
    assert (result.status, result.value) == ("fail", pytest.approx(0.75))


def test_label_agreement_too_few_labels_warns(make_pairs):
    pairs = make_pairs(400)
    result = check_label_agreement(pairs, labels=labels_for(pairs, ["chosen"] * 20))  # 20 < 30, 5% < 10%
    assert result.status == "warn"
    assert result.value == 1.0
    assert "too few" in result.message
    assert result.examples == ["p020", "p021", "p022", "p023", "p024"]  # unlabelled: label these next


def test_label_agreement_several_raters(pairs):
    labels = labels_for(pairs, ["chosen"] * 40) + [HumanLabel(p.id, "chosen", "r2") for p in pairs[:40]]
    result = check_label_agreement(pairs, labels=labels)
    details = result.details
    assert (details["n_judgements"], details["n_labelled"], details["n_raters"]) == (80, 40, 2)


def test_label_agreement_unknown_id_is_input_error(pairs):
    with pytest.raises(InputError, match="unknown record id 'nope'"):
        check_label_agreement(pairs, labels=[HumanLabel("nope", "chosen", "r1", "l.jsonl:4")])
