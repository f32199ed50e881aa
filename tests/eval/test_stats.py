"""Paired statistics (prefgate.stats): hand-derived McNemar values, bootstrap behaviour, Holm."""

from __future__ import annotations

import numpy as np
import pytest

from prefgate.stats import bootstrap_ci, holm, mcnemar_exact, paired_bootstrap, paired_test


def test_mcnemar_five_to_zero_discordant():
    """5 items right only in the baseline, none only in the candidate: P(X=5 or X=0 | n=5, 1/2) = 2/32."""
    base = [1] * 5 + [1] * 10 + [0] * 5
    cand = [0] * 5 + [1] * 10 + [0] * 5
    result = mcnemar_exact(base, cand)
    assert result.test == "mcnemar" and result.p_value == pytest.approx(2 / 32, abs=1e-12)
    assert (result.baseline_only, result.candidate_only) == (5, 0)
    assert result.diff == pytest.approx(-0.25)


def test_mcnemar_six_to_one_discordant():
    """n=7 discordant, 6 favour the baseline: two-sided P = 2 * (C(7,6) + C(7,7)) / 2**7 = 16/128."""
    base = [1] * 6 + [0] + [1] * 3
    cand = [0] * 6 + [1] + [1] * 3
    assert mcnemar_exact(base, cand).p_value == pytest.approx(16 / 128, abs=1e-12)


def test_mcnemar_ignores_concordant_pairs_and_no_change_gives_one():
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]).p_value == 1.0
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]).test == "none"
    a = mcnemar_exact([1, 0] + [1] * 100, [0, 1] + [1] * 100)
    b = mcnemar_exact([1, 0], [0, 1])
    assert a.p_value == b.p_value == 1.0


def test_mcnemar_rejects_non_binary_and_bad_shapes():
    with pytest.raises(ValueError, match="0 or 1"):
        mcnemar_exact([0.5], [1])
    with pytest.raises(ValueError, match="same length"):
        mcnemar_exact([1, 0], [1])


def test_paired_bootstrap_no_change_and_constant_shift():
    assert paired_bootstrap([0.5, 0.7], [0.5, 0.7]).p_value == 1.0
    # Every item 0.2 lower: the centred differences are all zero, so no resample is as extreme.
    result = paired_bootstrap([0.9] * 30, [0.7] * 30, n_resamples=999)
    assert result.p_value == pytest.approx(1 / 1000) and result.diff == pytest.approx(-0.2)


def test_paired_bootstrap_is_seeded_and_symmetric_noise_is_not_significant():
    rng = np.random.default_rng(0)
    base = rng.random(200)
    cand = base + rng.normal(0, 0.1, 200).clip(-base, 1 - base)
    first = paired_bootstrap(base, cand, n_resamples=2000, seed=3)
    assert first == paired_bootstrap(base, cand, n_resamples=2000, seed=3)
    assert first.p_value > 0.05


def test_paired_bootstrap_agrees_roughly_with_mcnemar_on_binary_scores():
    base = [1] * 30 + [0] * 10 + [1] * 60
    cand = [0] * 30 + [1] * 10 + [1] * 60
    exact = mcnemar_exact(base, cand).p_value
    boot = paired_bootstrap(base, cand, n_resamples=20000).p_value
    assert exact == pytest.approx(0.0022, abs=2e-4)
    assert boot == pytest.approx(exact, abs=0.004)


def test_paired_test_picks_the_test_from_the_scores():
    assert paired_test([1, 0, 1], [0, 0, 1]).test == "mcnemar"
    assert paired_test([1, 0.5, 1], [0, 0, 1], n_resamples=200).test == "bootstrap"


def test_bootstrap_ci_brackets_the_mean_and_is_seeded():
    scores = [1.0] * 80 + [0.0] * 20
    lo, hi = bootstrap_ci(scores, seed=1)
    assert lo < 0.8 < hi and 0.05 < hi - lo < 0.2  # ~ +-1.96 * sqrt(.8 * .2 / 100) = +-0.078
    assert (lo, hi) == bootstrap_ci(scores, seed=1)
    assert bootstrap_ci([1.0, 1.0]) == (1.0, 1.0)


def test_holm_hand_values():
    """Sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06."""
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []
