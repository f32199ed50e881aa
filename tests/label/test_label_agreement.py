"""Agreement: Cohen's kappa (checked against scikit-learn), Fleiss' kappa (the textbook example), and each
rater against the auto-labels (the audit's own numbers)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from prefgate.audit.labels import check_label_agreement, read_labels
from prefgate.errors import InputError
from prefgate.label import Label, LabelStore, agreement_report, cohen_kappa, fleiss_kappa
from prefgate.label.agreement import inter_rater


def test_cohen_is_scikit_learns_on_random_labels():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = list(rng.choice(["chosen", "rejected", "tie"], size=40, p=[0.6, 0.3, 0.1]))
        b = [x if rng.random() < 0.7 else str(rng.choice(["chosen", "rejected", "tie"])) for x in a]
        assert cohen_kappa(a, b) == cohen_kappa_score(a, b)


def test_cohen_by_hand_and_edge_cases():
    # p_o = 3/4; p_e = (2*1 + 2*3)/16 = 1/2; kappa = (3/4 - 1/2) / (1/2) = 0.5
    assert cohen_kappa(["chosen", "chosen", "rejected", "rejected"], ["chosen", "rejected", "rejected", "rejected"]) \
        == 0.5
    assert cohen_kappa(["chosen", "rejected"], ["rejected", "chosen"]) == -1.0  # p_o 0, p_e 1/2
    assert cohen_kappa(["tie", "chosen", "rejected"], ["tie", "chosen", "rejected"]) == 1.0
    # One rater always "chosen": p_o = p_e = the other's share of "chosen", so kappa 0 (defined)
    assert cohen_kappa(["chosen"] * 4, ["chosen", "chosen", "chosen", "tie"]) == 0.0
    assert cohen_kappa(["chosen"] * 5, ["chosen"] * 5) is None  # chance agreement is 1: scikit-learn says nan
    assert cohen_kappa([], []) is None
    with pytest.raises(ValueError):
        cohen_kappa(["chosen"], [])


def test_fleiss_on_the_textbook_example():
    """Fleiss (1971) as worked on Wikipedia: 10 items, 14 raters, 5 categories; P = 0.378, P_e = 0.213,
    kappa = (0.378 - 0.213) / (1 - 0.213) = 0.210."""
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)
    assert fleiss_kappa(np.array([[3, 0, 0], [3, 0, 0]])) is None
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(np.array([[2, 0, 0], [1, 1, 1]]))


def test_two_raters_cohen_three_fleiss_on_the_overlap():
    two = {"a": {"p1": "chosen", "p2": "rejected", "p3": "chosen"}, "b": {"p1": "chosen", "p2": "chosen"}}
    out = inter_rater(two)
    assert (out["method"], out["n_overlap"], out["observed_agreement"]) == ("cohen", 2, 0.5)
    three = {**two, "c": {"p1": "chosen", "p2": "rejected", "p4": "tie"}}
    out = inter_rater(three)
    assert (out["method"], out["n_overlap"], out["observed_agreement"]) == ("fleiss", 2, 0.5)  # p1, p2
    assert [p["raters"] for p in out["pairwise"]] == [["a", "b"], ["a", "c"], ["b", "c"]]
    assert inter_rater({"a": {"p1": "chosen"}})["method"] is None


def test_report_agrees_with_the_audit_check(tmp_path, pairs):
    store = LabelStore(tmp_path / "labels.jsonl")
    answers = {"alice": ["chosen"] * 8 + ["rejected", "tie"], "bob": ["chosen"] * 9 + ["rejected"]}
    for rater, prefs in answers.items():
        for rec, preferred in zip(pairs[:10], prefs, strict=True):
            store.append(Label(rec.id, preferred, rater))
    store.append(Label(pairs[0].id, "rejected", "alice"))  # a re-label: the last answer wins
    store.compact()
    labels = store.read()
    report = agreement_report(labels, records=pairs, labels_path=str(store.path))
    auto = report["auto"]
    assert auto["raters"]["alice"] == {"n": 10, "chosen": 7, "rejected": 2, "tie": 1, "agreement": 0.7,
                                       "kappa": pytest.approx(auto["raters"]["alice"]["kappa"])}
    assert auto["overall"]["agreement"] == pytest.approx(16 / 20)
    audit = check_label_agreement(pairs, labels=read_labels(store.path))
    assert audit.value == pytest.approx(auto["overall"]["agreement"])
    assert audit.details["kappa"] == pytest.approx(auto["overall"]["kappa"])
    assert report["inter_rater"]["method"] == "cohen" and report["inter_rater"]["n_overlap"] == 10
    assert report["labels"] == {"path": str(store.path), "n_judgements": 20, "n_pairs": 10, "raters": ["alice", "bob"]}
    assert set(auto["categories"]) == {"math", "qa", "safety", "(none)"}


def test_unknown_ids_and_no_labels_are_input_errors(pairs):
    with pytest.raises(InputError, match="unknown record id 'zzz' \\(rater 'a'\\)"):
        agreement_report([Label("zzz", "chosen", "a")], records=pairs, labels_path="labels.jsonl")
    with pytest.raises(InputError, match="no labels"):
        agreement_report([], labels_path="labels.jsonl")
