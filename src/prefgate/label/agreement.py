"""Agreement between raters, and between each rater and the auto-labels.

- Inter-rater: Cohen's kappa for two raters, on the pairs both labelled; Fleiss' kappa for three or more,
  on the pairs all of them labelled; plus Cohen's kappa for every two raters (to find the odd one out).
  Categories: chosen, rejected, tie. Kappa is undefined (None) when chance agreement is 1, e.g. both raters
  always answered "chosen".
- With the auto-labels: the auto-label is always "chosen" (the data says chosen is better), so agreement is
  the share of a rater's judgements that prefer the chosen side (a tie is a disagreement), and kappa is the
  audit's orientation-symmetrised kappa (`prefgate.stats.symmetric_kappa`), so the numbers here are
  the ones `prefgate audit --labels` reports.

Labels are read with last-wins for a repeated (id, rater), as the labelling tool writes them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

from prefgate.data.records import Record
from prefgate.errors import InputError
from prefgate.label.sample import stratum
from prefgate.label.store import PREFERRED, Label, latest
from prefgate.reportio import header
from prefgate.stats import symmetric_kappa

AGREEMENT_VERSION = 1


def cohen_kappa(first: Sequence[str], second: Sequence[str], categories: Sequence[str] = PREFERRED) -> float | None:
    """Cohen's kappa of two raters' labels of the same items, (p_o - p_e) / (1 - p_e), from scikit-learn's
    `cohen_kappa_score`; None where it is undefined (no items, or chance agreement 1: both raters gave one
    and the same label throughout), where scikit-learn gives nan.

    >>> cohen_kappa(["chosen", "chosen", "rejected", "rejected"], ["chosen", "rejected", "rejected", "rejected"])
    0.5
    """
    if len(first) != len(second):
        raise ValueError(f"got {len(first)} and {len(second)} labels; expected the same items")
    if not first:
        return None
    import warnings

    from sklearn.metrics import cohen_kappa_score  # scikit-learn takes a second to import: only when asked

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")  # the undefined case warns before it returns nan
        kappa = float(cohen_kappa_score(list(first), list(second), labels=list(categories)))
    return kappa if math.isfinite(kappa) else None


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa from an (items, categories) table of how many raters put each item in each category;
    every row must sum to the same number of raters (at least 2)."""
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None
    raters = counts.sum(axis=1)
    if not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError("every item needs the same number (>= 2) of ratings")
    n = raters[0]
    per_item = ((counts * counts).sum(axis=1) - n) / (n * (n - 1))
    shares = counts.sum(axis=0) / counts.sum()
    observed, chance = per_item.mean(), float((shares * shares).sum())
    if chance >= 1.0:
        return None
    return float((observed - chance) / (1 - chance))


def _by_rater(labels: Sequence[Label]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for lab in latest(list(labels)):
        out.setdefault(lab.rater, {})[lab.id] = lab.preferred
    return dict(sorted(out.items()))


def _pairwise(by_rater: dict[str, dict[str, str]], a: str, b: str) -> dict[str, Any]:
    common = sorted(set(by_rater[a]) & set(by_rater[b]))
    first = [by_rater[a][i] for i in common]
    second = [by_rater[b][i] for i in common]
    observed = sum(x == y for x, y in zip(first, second, strict=True)) / len(common) if common else None
    return {"raters": [a, b], "n_overlap": len(common), "kappa": cohen_kappa(first, second),
            "observed_agreement": observed}


def inter_rater(by_rater: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Cohen's (2 raters) or Fleiss' (3+) kappa on the overlap, and Cohen's for every two raters."""
    raters = list(by_rater)
    if len(raters) < 2:
        return {"method": None, "raters": raters, "n_overlap": 0, "kappa": None, "observed_agreement": None,
                "pairwise": [], "message": "one rater: no inter-rater agreement to measure"}
    pairwise = [_pairwise(by_rater, a, b) for a, b in combinations(raters, 2)]
    if len(raters) == 2:
        return {"method": "cohen", "raters": raters, **{k: v for k, v in pairwise[0].items() if k != "raters"},
                "pairwise": pairwise}
    common = sorted(set.intersection(*(set(v) for v in by_rater.values())))
    table = np.array([[sum(by_rater[r][i] == c for r in raters) for c in PREFERRED] for i in common])
    observed = float(np.mean([max(row) == len(raters) for row in table])) if common else None
    return {"method": "fleiss", "raters": raters, "n_overlap": len(common),
            "kappa": fleiss_kappa(table) if common else None, "observed_agreement": observed,
            "pairwise": pairwise}


def with_auto(preferred: Sequence[str]) -> dict[str, Any]:
    """Agreement of judgements with the auto-label ("chosen"), and the audit's symmetrised kappa."""

    counts = Counter(preferred)
    n = len(preferred)
    return {"n": n, "chosen": counts["chosen"], "rejected": counts["rejected"], "tie": counts["tie"],
            "agreement": counts["chosen"] / n if n else None,
            "kappa": float(symmetric_kappa(counts["chosen"], counts["rejected"], counts["tie"])) if n else None}


def agreement_report(labels: Sequence[Label], *, records: Sequence[Record] | None = None,
                     labels_path: str | None = None, dataset: dict[str, Any] | None = None) -> dict[str, Any]:
    """The agreement report (JSON-serialisable). With `records`, every label's id must name one of them, and
    agreement with the auto-labels is also given per category."""
    if not labels:
        raise InputError("no labels", where=labels_path)
    by_rater = _by_rater(labels)
    if records is not None:
        known = {r.id: stratum(r) for r in records}
        for rater, answers in by_rater.items():
            unknown = sorted(set(answers) - set(known))
            if unknown:
                raise InputError(f"unknown record id {unknown[0]!r} (rater {rater!r}): no record in the dataset "
                                 "has it", where=labels_path, field="id")
    everyone = [p for answers in by_rater.values() for p in answers.values()]
    report: dict[str, Any] = {
        **header("label_agreement", AGREEMENT_VERSION,
                 labels={"path": labels_path, "n_judgements": len(everyone),
                         "n_pairs": len({i for answers in by_rater.values() for i in answers}),
                         "raters": list(by_rater)},
                 dataset=dataset),
        "inter_rater": inter_rater(by_rater),
        "auto": {"overall": with_auto(everyone),
                 "raters": {rater: with_auto(list(answers.values())) for rater, answers in by_rater.items()}},
    }
    if records is not None:
        per_category: dict[str, list[str]] = {}
        for answers in by_rater.values():
            for rid, preferred in answers.items():
                per_category.setdefault(known[rid], []).append(preferred)
        report["auto"]["categories"] = {c: with_auto(v) for c, v in sorted(per_category.items())}
    return report
