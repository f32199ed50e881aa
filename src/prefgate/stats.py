"""Paired statistics for comparing two evaluations of the same items: pure functions over score arrays.

- `mcnemar_exact`: scores that are all 0 or 1. Only the discordant pairs carry information: under "no
  change" each of the `n_discordant` pairs is equally likely to favour either side, so the count that
  favours the baseline is Binomial(n_discordant, 1/2); the p-value is the exact two-sided binomial test
  (`scipy.stats.binomtest`).
- `paired_bootstrap`: any scores in [0, 1] (judge grades, partial credit). The per-item differences
  `d = candidate - baseline` are resampled with replacement after centring them on zero (the null of no
  change); the two-sided p-value is the share of resampled mean differences at least as far from zero as
  the observed one, with the usual +1 correction so it is never 0.
- `paired_test`: picks one of the two from the scores.
- `bootstrap_ci`: percentile bootstrap interval of a mean.
- `holm`: Holm's step-down adjustment of a family of p-values (controls the family-wise error rate).
- `mcnemar_power`, `detectable_drop`, `items_needed`: the power of the exact McNemar test to see a drop in
  accuracy, the smallest drop it sees with a given power on n items, and the items a given drop needs
  (the power model is in `mcnemar_power`'s docstring).
- `symmetric_kappa`: Cohen's kappa of auto-labels against human labels on the orientation-symmetrised table
  (the audit's `label_agreement` and the labelling tool's agreement report share it); scikit-learn's
  `cohen_kappa_score` of that table in closed form, so its bootstrap is one numpy expression.

Every random draw goes through an explicit seed, so the same inputs give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Resampled means are computed in chunks of this many (rows x items) values, to bound memory.
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True, slots=True)
class PairedTest:
    """The result of one paired comparison. `diff` is candidate mean minus baseline mean."""

    test: str  # "mcnemar", "bootstrap" or "none" (no items, or no item changed)
    p_value: float
    diff: float
    n: int
    baseline_only: int | None = None  # McNemar: items right in the baseline only (discordant, a drop)
    candidate_only: int | None = None  # McNemar: items right in the candidate only


def _pair(baseline, candidate) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(baseline, dtype=np.float64)
    c = np.asarray(candidate, dtype=np.float64)
    if b.ndim != 1 or b.shape != c.shape:
        raise ValueError(f"expected two 1-d arrays of the same length, got {b.shape} and {c.shape}")
    return b, c


def is_binary(*arrays) -> bool:
    """True when every value of every array is exactly 0 or 1."""
    return all(np.all((np.asarray(a) == 0) | (np.asarray(a) == 1)) for a in arrays)


def mcnemar_exact(baseline, candidate) -> PairedTest:
    """Exact two-sided McNemar test for paired 0/1 scores."""
    b, c = _pair(baseline, candidate)
    if not is_binary(b, c):
        raise ValueError("mcnemar_exact needs scores that are all 0 or 1")
    baseline_only = int(np.sum((b == 1) & (c == 0)))
    candidate_only = int(np.sum((b == 0) & (c == 1)))
    discordant = baseline_only + candidate_only
    diff = float(c.mean() - b.mean()) if b.size else 0.0
    if discordant == 0:
        return PairedTest("none", 1.0, diff, int(b.size), baseline_only, candidate_only)
    # Imported here, not at the top: scipy.stats takes about a second to import, and the CLI's start-up
    # (`prefgate --help`, `prefgate registry ...`) must not pay for it (tests/test_startup.py).
    from scipy.stats import binomtest

    p = binomtest(baseline_only, discordant, 0.5, alternative="two-sided").pvalue
    return PairedTest("mcnemar", float(min(1.0, p)), diff, int(b.size), baseline_only, candidate_only)


def _resampled_means(values: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_resamples` resamples (with replacement) of `values`."""
    n = values.size
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    out = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, rows):
        stop = min(n_resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def paired_bootstrap(baseline, candidate, *, n_resamples: int = 10_000, seed: int = 0) -> PairedTest:
    """Two-sided paired bootstrap test of "mean(candidate) == mean(baseline)" on per-item scores."""
    b, c = _pair(baseline, candidate)
    d = c - b
    observed = float(d.mean()) if d.size else 0.0
    if d.size == 0 or np.all(d == 0):
        return PairedTest("none", 1.0, observed, int(d.size))
    means = _resampled_means(d - observed, n_resamples, np.random.default_rng(seed))
    # A tiny slack so that floating-point noise in equal means counts as "as extreme".
    extreme = int(np.sum(np.abs(means) >= abs(observed) - 1e-12))
    return PairedTest("bootstrap", (1 + extreme) / (1 + n_resamples), observed, int(d.size))


def paired_test(baseline, candidate, *, n_resamples: int = 10_000, seed: int = 0) -> PairedTest:
    """Exact McNemar when every score is 0 or 1, else the paired bootstrap."""
    b, c = _pair(baseline, candidate)
    if b.size and is_binary(b, c):
        return mcnemar_exact(b, c)
    return paired_bootstrap(b, c, n_resamples=n_resamples, seed=seed)


def bootstrap_ci(scores, *, confidence: float = 0.95, n_resamples: int = 2_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `scores`; (nan, nan) for no scores."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    means = _resampled_means(x, n_resamples, np.random.default_rng(seed))
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return (float(lo), float(hi))


def holm(p_values) -> list[float]:
    """Holm step-down adjusted p-values, in the input's order.

    The i-th smallest p-value is multiplied by (m - i + 1), made monotone, and capped at 1; a hypothesis
    is rejected at level alpha when its adjusted p-value is below alpha.

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (m - np.arange(m))
    adjusted = np.minimum(1.0, np.maximum.accumulate(scaled))
    out = np.empty(m, dtype=np.float64)
    out[order] = adjusted
    return [round(float(v), 15) for v in out]


# ---------------------------------------------------------------------------------------------------------
# Power of the exact McNemar test (sizing a suite to what the gate promises)


def _critical_counts(n: int, alpha: float) -> np.ndarray:
    """For m = 0..n discordant items: the smallest count b favouring the baseline whose exact two-sided
    McNemar p-value is below `alpha` (with b > m - b); m + 1 where no count is (too few discordant items).

    The null is Binomial(m, 1/2), symmetric, so scipy's two-sided `binomtest` p-value of b > m/2 is
    2 * P(X <= m - b) (checked against `mcnemar_exact` in tests/eval/test_stats.py). The quantile gives
    the answer to within one; the exact p-values of the neighbours settle it. The counts do not depend on
    n, so one table (a power of two long) serves every n up to its size.
    """
    size = 1 << max(10, (n + 1 - 1).bit_length())
    return _critical_table(size, float(alpha))[: n + 1]


@lru_cache(maxsize=64)
def _critical_table(size: int, alpha: float) -> np.ndarray:
    from scipy.special import bdtr
    from scipy.stats import binom

    n = size - 1
    m = np.arange(n + 1)
    guess = binom.ppf(1.0 - alpha / 2.0, m, 0.5).astype(np.int64)  # P(X >= guess + 1) <= alpha / 2
    crit = m + 1
    for b in (guess + 2, guess + 1, guess, guess - 1):  # the smallest that rejects wins
        ok = (2 * b > m) & (b <= m)
        p = np.ones(n + 1)
        p[ok] = np.minimum(1.0, 2.0 * bdtr(m[ok] - b[ok], m[ok], 0.5))
        crit = np.where(ok & (p < alpha), b, crit)
    crit.setflags(write=False)
    return crit


def _check_power_args(n: int, p: float, drop: float, alpha: float) -> None:
    if n < 0 or not 0.0 <= p <= 1.0 or not 0.0 < alpha < 1.0:
        raise ValueError(f"expected n >= 0, p in [0, 1] and alpha in (0, 1), got n={n}, p={p}, alpha={alpha}")
    if not 0.0 <= drop <= p + 1e-12:
        raise ValueError(f"expected a drop in [0, p={p}], got {drop}")


def mcnemar_power(n: int, p: float, drop: float, alpha: float) -> float:
    """Probability that the exact two-sided McNemar test at `alpha` finds a drop on `n` items, with the
    baseline right on each item with probability `p` and the candidate with probability `p - drop`.

    The model: each item's baseline and candidate outcomes are independent, Bernoulli(p) and
    Bernoulli(q = p - drop). Then the items right in the baseline only are b ~ pi_b = p (1 - q), those right
    in the candidate only c ~ pi_c = (1 - p) q; the discordant count m = b + c ~ Binomial(n, pi_b + pi_c),
    and given m, b ~ Binomial(m, pi_b / (pi_b + pi_c)). The test finds the drop when b >= critical_b(m), the
    smallest b > m - b whose two-sided p-value is below alpha, so

        power = sum over m of P(m) * P(b >= critical_b(m) | m),

    exact (no simulation, no normal approximation) and O(n). Independence is a modelling choice: two models
    evaluated on the same items usually agree more than chance (easy items are easy for both), which
    leaves fewer discordant items for the same drop, split more one-sidedly, and makes the test more
    powerful; so on real data the figure is usually a little pessimistic. Each test is at `alpha` alone:
    a family adjustment (the gate's Holm) asks more of each test.

    >>> round(mcnemar_power(100, 0.95, 0.10, 0.05), 3)
    0.585
    """
    _check_power_args(n, p, drop, alpha)
    from scipy.special import bdtrc, gammaln, xlog1py, xlogy

    q = max(0.0, p - drop)
    pi_b, pi_c = p * (1.0 - q), (1.0 - p) * q
    pi = pi_b + pi_c
    if n == 0 or pi_b == 0.0:
        return 0.0
    m = np.arange(n + 1)
    p_m = np.exp(gammaln(n + 1) - gammaln(m + 1) - gammaln(n - m + 1) + xlogy(m, pi) + xlog1py(n - m, -pi))
    crit = _critical_counts(n, float(alpha))
    can = crit <= m
    found = np.zeros(n + 1)
    # P(b >= crit | m) = P(b > crit - 1); crit >= 1 always.
    found[can] = bdtrc(crit[can] - 1, m[can], pi_b / pi)
    return float(min(1.0, np.sum(p_m * found)))


def detectable_drop(n: int, p: float, alpha: float, power: float, *, tol: float = 1e-4) -> float | None:
    """The smallest drop in accuracy (from `p`) that the exact McNemar test at `alpha` finds with
    probability `power` on `n` items (model: `mcnemar_power`); None when even a drop to 0 is not found.

    Power grows with the drop (a larger drop moves discordant items from the candidate's side to the
    baseline's, and the rejection region is closed under that move), so bisection finds it; the result is
    at most `tol` above the exact crossing.

    >>> detectable_drop(100, 0.95, 0.05, 0.8)
    0.1327
    """
    if not 0.0 < power < 1.0:
        raise ValueError(f"expected a power in (0, 1), got {power}")
    if mcnemar_power(n, p, p, alpha) < power:
        return None
    lo, hi = 0.0, float(p)
    while hi - lo > tol:
        mid = (lo + hi) / 2.0
        if mcnemar_power(n, p, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return round(min(float(p), float(np.ceil(hi / tol - 1e-9)) * tol), 10)  # on the tol grid, never below


def items_needed(p: float, drop: float, alpha: float, power: float, *, max_items: int = 1_000_000) -> int | None:
    """The number of items on which the exact McNemar test at `alpha` finds a drop of `drop` from accuracy
    `p` with probability `power` (model: `mcnemar_power`); None for a drop of 0, one larger than `p`, or
    one that needs more than `max_items`.

    Found by doubling then bisection on the power curve: the smallest n found with power(n) >= `power`
    and power(n - 1) < `power`. An exact test's power saw-tooths in n (the critical count moves in whole
    items), so a few items more can dip back below the target by about a point.

    >>> items_needed(0.95, 0.10, 0.05, 0.8)
    156
    """
    if not 0.0 < power < 1.0:
        raise ValueError(f"expected a power in (0, 1), got {power}")
    _check_power_args(0, p, min(drop, p), alpha)
    if drop <= 0.0 or drop > p + 1e-12:
        return None
    hi = 8
    while mcnemar_power(hi, p, drop, alpha) < power:
        if hi >= max_items:
            return None
        hi = min(2 * hi, max_items)
    lo = hi // 2 if hi > 8 else 0  # power(lo) < target (or lo = 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mcnemar_power(mid, p, drop, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def symmetric_kappa(n_chosen: np.ndarray | float, n_rejected: np.ndarray | float,
                    n_tie: np.ndarray | float) -> np.ndarray | float:
    """Cohen's kappa of auto-labels against humans on the orientation-symmetrised table (`prefgate.audit.labels`):
    a float for counts, an array for arrays of counts (the bootstrap's resampled tables).

    Every human judgement counts twice: as shown (the auto-label says "first") and with the two answers
    swapped (it says "second"). On those 2n rows the auto-label is "first" or "second" half the time each,
    and the human says "first" c + r times, "second" c + r times and "tie" 2t times (c, r, t: judgements that
    prefer chosen, rejected, neither). So p_o = c / n, p_e = (c + r) / 2n, kappa = (p_o - p_e) / (1 - p_e):
    scikit-learn's `cohen_kappa_score` of that table, in closed form (tests/eval/test_stats.py checks the two
    agree, edge cases included); nan for no judgements (scikit-learn refuses an empty table). Why not call
    scikit-learn: the label-agreement check bootstraps 2,000 tables, one numpy expression here and about 2.5 ms
    a call there.
    """
    c, r, t = (np.asarray(x, dtype=np.float64) for x in (n_chosen, n_rejected, n_tie))
    n = c + r + t
    with np.errstate(divide="ignore", invalid="ignore"):  # n = 0: nan, not a warning
        agreement = c / n
        chance = (c + r) / (2 * n)  # at most 1/2, so only n = 0 leaves kappa undefined
        kappa = (agreement - chance) / (1 - chance)
    return float(kappa) if kappa.ndim == 0 else kappa
