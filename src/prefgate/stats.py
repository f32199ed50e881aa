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
- `symmetric_kappa`: Cohen's kappa of auto-labels against human labels on the orientation-symmetrised table
  (the audit's `label_agreement` and the labelling tool's agreement report share it).

Every random draw goes through an explicit seed, so the same inputs give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

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


def symmetric_kappa(n_chosen: np.ndarray | float, n_rejected: np.ndarray | float,
                    n_tie: np.ndarray | float) -> np.ndarray | float:
    """Cohen's kappa of auto-labels against humans on the orientation-symmetrised table (`prefgate.audit.labels`)."""
    n = n_chosen + n_rejected + n_tie
    agreement = n_chosen / n
    chance = (n_chosen + n_rejected) / (2 * n)
    return (agreement - chance) / (1 - chance)
