"""The labelling sample: seeded, stratified by category, the same for every rater; A/B per rater."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from prefgate.data.records import PreferencePair, UnpairedExample
from prefgate.errors import InputError
from prefgate.label import a_side, allocate, label_sample, preferred_for
from prefgate.label.sample import NO_CATEGORY, shown_as, stratum
from tests.label.conftest import make_pairs


def test_allocation_is_proportional_with_one_per_stratum():
    assert allocate({"math": 30, "qa": 30, "safety": 30, NO_CATEGORY: 10}, 10) == \
        {"math": 3, "qa": 3, "safety": 3, NO_CATEGORY: 1}
    assert allocate({"big": 95, "small": 5}, 10) == {"big": 10, "small": 1}  # "where possible": one more
    assert allocate({"a": 2, "b": 1}, 3) == {"a": 2, "b": 1}
    for sizes in ({"a": 7, "b": 13, "c": 1, "d": 40}, {"x": 1}, {"a": 3, "b": 3, "c": 3}):
        n = sum(sizes.values())
        for total in range(1, n + 1):
            out = allocate(sizes, total)
            assert all(1 <= out[k] <= sizes[k] for k in sizes)
            assert total <= sum(out.values()) <= total + len(sizes)


def test_sample_size_strata_and_determinism(pairs):
    sample = label_sample(pairs, 0.1, seed=0)
    assert len(sample) == 10 == math.ceil(0.1 * len(pairs))
    assert Counter(stratum(r) for r in sample) == {"math": 3, "qa": 3, "safety": 3, NO_CATEGORY: 1}
    assert [r.id for r in sample] == [r.id for r in label_sample(list(reversed(pairs)), 0.1, seed=0)]
    assert {r.id for r in sample} != {r.id for r in label_sample(pairs, 0.1, seed=1)}
    assert len(label_sample(pairs[:3], 0.01, seed=0)) == 3  # three strata of one: one from each


def test_the_order_mixes_categories(pairs):
    order = [stratum(r) for r in label_sample(pairs, 0.3, seed=0)]
    changes = sum(a != b for a, b in zip(order, order[1:], strict=False))
    assert changes >= len(order) // 2  # shuffled, not one category after another (that would be 3 changes)


def test_adding_a_record_to_one_stratum_keeps_the_other_strata():
    pairs = make_pairs(100)
    before = label_sample(pairs, 0.1, seed=0)
    extra = PreferencePair(id="new", prompt="p", chosen="c", rejected="r", category="math")
    after = label_sample([*pairs, extra], 0.1, seed=0)
    keep = {r.id for r in before if r.category != "math"}
    assert keep <= {r.id for r in after}


def test_a_b_order_is_seeded_per_rater_and_balanced(pairs):
    sides = [a_side(0, "alice", r.id) for r in pairs]
    assert sides == [a_side(0, "alice", r.id) for r in pairs]
    assert sides != [a_side(0, "bob", r.id) for r in pairs]
    assert 30 <= sides.count("chosen") <= 70
    assert preferred_for("a", "rejected") == "rejected" and preferred_for("b", "rejected") == "chosen"
    assert preferred_for("t", "chosen") == "tie"
    assert shown_as("chosen", "rejected") == "B" and shown_as("tie", "chosen") == "tie"


def test_bad_fraction_and_unpaired_data():
    with pytest.raises(InputError, match="field 'fraction': must be in"):
        label_sample(make_pairs(5), 0.0)
    with pytest.raises(InputError, match="paired records"):
        label_sample([UnpairedExample(id="u", prompt="p", completion="c", label=True)], 0.5)
