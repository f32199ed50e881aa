"""Paired statistics (prefgate.stats): hand-derived McNemar values, bootstrap behaviour, Holm, McNemar power, and
the symmetrised kappa against scikit-learn's Cohen's kappa."""

from __future__ import annotations

import numpy as np
import pytest

from prefgate.stats import (
    bootstrap_ci,
    detectable_drop,
    holm,
    items_needed,
    mcnemar_exact,
    mcnemar_power,
    paired_bootstrap,
    paired_test,
    symmetric_kappa,
)


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


# ---------------------------------------------------------------------------------------------------------
# Power of the exact McNemar test (mcnemar_power, detectable_drop, items_needed)


def test_critical_counts_match_the_real_test_for_every_discordant_count():
    """The smallest baseline-side count that rejects, for m = 0..300 discordant items, at three alphas,
    equals what `mcnemar_exact` itself says (no count at all below 6 discordant items at alpha 0.05)."""
    from prefgate.stats import _critical_counts

    def rejects(b: int, m: int, alpha: float) -> bool:
        return b > m - b and mcnemar_exact([1] * b + [0] * (m - b), [0] * b + [1] * (m - b)).p_value < alpha

    for alpha in (0.01, 0.05, 0.1):
        crit = _critical_counts(300, alpha)
        for m in range(301):  # the p-value falls as b grows past m/2: the count rejects, the one below not
            b = int(crit[m])
            assert (b == m + 1 or rejects(b, m, alpha)) and not rejects(b - 1, m, alpha), (alpha, m, b)
    assert _critical_counts(10, 0.05)[5] == 6 and _critical_counts(10, 0.05)[6] == 6  # 2/64 < 0.05 <= 2/32


@pytest.mark.parametrize("n, p, drop, seed", [
    (100, 0.95, 0.10, 1),  # exact 0.585, simulated 0.594
    (50, 0.80, 0.15, 2),  # exact 0.303, simulated 0.299
    (200, 0.70, 0.08, 3),  # exact 0.352, simulated 0.361
])
def test_mcnemar_power_matches_a_simulation_of_the_real_test(n, p, drop, seed):
    """4,000 simulated suites: each item's baseline and candidate outcomes drawn independently (the
    model), the real `mcnemar_exact` run, a drop found when more items favour the baseline and p < 0.05.
    The simulated rate is within 2 points of the exact figure (its standard error is under 0.8 points)."""
    rng = np.random.default_rng(seed)
    found = 0
    for _ in range(4000):
        result = mcnemar_exact((rng.random(n) < p).astype(float), (rng.random(n) < p - drop).astype(float))
        found += result.baseline_only > result.candidate_only and result.p_value < 0.05
    assert mcnemar_power(n, p, drop, 0.05) == pytest.approx(found / 4000, abs=0.02)


def test_one_hundred_items_at_095_cannot_detect_a_one_grade_drop():
    """The issue's example: 100 items at 95% find a 10-point drop only ~58% of the time at alpha 0.05; the
    smallest drop found 80% of the time is ~13 points, and a one-grade drop needs ~156 items."""
    assert mcnemar_power(100, 0.95, 0.10, 0.05) == pytest.approx(0.585, abs=0.001)
    drop = detectable_drop(100, 0.95, 0.05, 0.8)
    assert drop > 0.10 and mcnemar_power(100, 0.95, drop, 0.05) >= 0.8
    assert mcnemar_power(100, 0.95, drop - 1e-4, 0.05) < 0.8  # the smallest, to the grid
    need = items_needed(0.95, 0.10, 0.05, 0.8)
    assert need > 100 and mcnemar_power(need, 0.95, 0.10, 0.05) >= 0.8 > mcnemar_power(need - 1, 0.95, 0.10, 0.05)


def test_power_edges():
    assert mcnemar_power(0, 0.9, 0.1, 0.05) == 0.0
    assert mcnemar_power(100, 0.9, 0.0, 0.05) < 0.025  # no drop: at most alpha / 2 on the drop side
    assert mcnemar_power(100, 0.9, 0.9, 0.05) == pytest.approx(1.0)  # the candidate gets everything wrong
    assert mcnemar_power(5, 1.0, 1.0, 0.05) == 0.0  # 5 discordant items can never reach p < 0.05
    assert detectable_drop(5, 0.9, 0.05, 0.8) is None
    assert items_needed(0.05, 0.10, 0.05, 0.8) is None and items_needed(0.9, 0.0, 0.05, 0.8) is None
    powers = [mcnemar_power(60, 0.85, d, 0.05) for d in np.linspace(0, 0.85, 30)]
    assert powers == sorted(powers)  # monotone in the drop, which the bisection relies on
    with pytest.raises(ValueError, match="drop"):
        mcnemar_power(100, 0.5, 0.6, 0.05)
    with pytest.raises(ValueError, match="power"):
        detectable_drop(100, 0.5, 0.05, 1.0)


def sklearn_symmetric_kappa(n_chosen: int, n_rejected: int, n_tie: int) -> float:
    """scikit-learn's Cohen's kappa of the explicitly symmetrised table: each judgement as shown (auto-label
    "first") and swapped (auto-label "second"), weighted by its count."""
    import warnings

    from sklearn.metrics import cohen_kappa_score

    auto = ["first"] * 3 + ["second"] * 3
    human = ["first", "second", "tie", "second", "first", "tie"]  # chosen, rejected, tie; then swapped
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(auto, human, labels=["first", "second", "tie"],
                                       sample_weight=[n_chosen, n_rejected, n_tie] * 2))


@pytest.mark.parametrize("counts, by_hand", [
    ((90, 10, 0), 0.8),  # no ties: kappa = 2 * agreement - 1
    ((70, 20, 10), 0.4545454545454546),  # p_o 0.7, p_e 0.45: 0.25 / 0.55
    ((10, 0, 0), 1.0),  # every human agrees: one label throughout, still defined (p_e = 1/2)
    ((0, 10, 0), -1.0),  # every human disagrees
    ((0, 0, 10), 0.0),  # all ties: agreement 0 and chance 0
    ((1, 0, 0), 1.0),
])
def test_symmetric_kappa_is_scikit_learns_cohen_kappa_of_the_symmetrised_table(counts, by_hand):
    ours, theirs = symmetric_kappa(*counts), sklearn_symmetric_kappa(*counts)
    assert isinstance(ours, float)
    assert ours == pytest.approx(by_hand, abs=1e-12) and theirs == pytest.approx(by_hand, abs=1e-12)


def test_symmetric_kappa_of_no_judgements_is_nan_where_scikit_learn_refuses():
    assert np.isnan(symmetric_kappa(0, 0, 0))
    with pytest.raises(ValueError, match="at least one non-zero"):  # an all-zero table has no rows to score
        sklearn_symmetric_kappa(0, 0, 0)


def test_symmetric_kappa_on_arrays_equals_scikit_learn_table_by_table():
    tables = np.random.default_rng(0).integers(0, 30, size=(200, 3))
    tables[:3] = [[0, 0, 0], [5, 0, 0], [0, 0, 4]]  # the edges among them
    ours = symmetric_kappa(tables[:, 0], tables[:, 1], tables[:, 2])
    theirs = np.array([sklearn_symmetric_kappa(*row) if sum(row) else np.nan for row in tables.tolist()])
    assert ours.shape == (200,)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)  # nan where both are nan
