"""The `shortcut` check: can surface features alone tell the chosen answer from the rejected one?

Each answer becomes a few surface features (length, lines, list bullets, headers, question and exclamation
marks, punctuation density, apologies, refusal phrases, code fences). A pair becomes the difference of its
two answers' features, in a random (seeded) order, labelled by which side is the chosen one; a logistic
regression without intercept (the task is symmetric) is scored by stratified k-fold cross-validation.
Accuracy near 0.5 means surface features say nothing; high accuracy means a model can learn that cue
instead of quality. At most `shortcut.max_pairs` pairs (a seeded sample) are used: 20k pairs measure an
accuracy to about +-0.7%, and keep the check fast on any dataset size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from prefgate.audit.policy import AuditPolicy
from prefgate.audit.result import MAX_EXAMPLES, CheckResult, grade, pct, skip
from prefgate.audit.view import RecordView, as_view
from prefgate.data.records import Record

DEFAULT_POLICY = AuditPolicy()

_BULLET = re.compile(r"(?m)^[ \t]*(?:[-*+\u2022]|\d{1,3}[.)])[ \t]+")
_HEADER = re.compile(r"(?m)^[ \t]*#{1,6}[ \t]")
_PUNCT = re.compile(r"[^\w\s]")
_APOLOGY = re.compile(r"\b(?:sorry|apologi[sz]e|apologies|regret to)\b", re.IGNORECASE)
_REFUSAL = re.compile(
    r"\b(?:i (?:can(?:no|')t|cannot|won't|will not|am not able to|am unable to|must decline)"
    r"|i'm (?:not able to|unable to|not comfortable)|as an ai\b|i don't think i (?:can|should)"
    r"|not (?:appropriate|something i can)|against my (?:guidelines|policy))", re.IGNORECASE)

CUE_ABOVE = 0.55  # below this accuracy the "strongest cue" is noise and is not named

FEATURES = ("length", "lines", "bullets", "headers", "question marks", "exclamation marks",
            "punctuation density", "apologies", "refusal phrases", "code fences")


def surface_features(text: str) -> list[float]:
    """The features of one answer, in the order of FEATURES (counts on a log1p scale)."""
    n = len(text)
    counts = (n, text.count("\n") + 1 if text else 0, len(_BULLET.findall(text)), len(_HEADER.findall(text)),
              text.count("?"), text.count("!"))
    punct = len(_PUNCT.findall(text)) / n if n else 0.0
    tail = (len(_APOLOGY.findall(text)), len(_REFUSAL.findall(text)), text.count("```"))
    return [*np.log1p(counts).tolist(), punct, *np.log1p(tail).tolist()]


def pair_features(chosen: Sequence[str], rejected: Sequence[str]) -> np.ndarray:
    """(n_pairs, n_features): chosen features minus rejected features."""
    return np.array([surface_features(c) for c in chosen]) - np.array([surface_features(r) for r in rejected])


def _cross_validated(x: np.ndarray, y: np.ndarray, folds: int, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(with_mean=False),
                          LogisticRegression(fit_intercept=False, max_iter=1000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accuracy = float(cross_val_score(model, x, y, cv=cv, scoring="accuracy").mean())
    model.fit(x, y)
    return accuracy, model


def check_shortcut(data: RecordView | Sequence[Record], policy: AuditPolicy = DEFAULT_POLICY) -> CheckResult:
    """Cross-validated accuracy of a surface-feature classifier at telling chosen from rejected."""
    p = policy.shortcut
    threshold = {"warn_at_or_above": p.warn_at_or_above}
    view = as_view(data)
    if not view.paired:
        return skip("shortcut", "needs paired records (chosen and rejected); this dataset is unpaired (KTO)",
                    threshold)
    rng = np.random.default_rng(policy.seed)
    idx = np.arange(len(view))
    if len(idx) > p.max_pairs:
        idx = np.sort(rng.choice(len(idx), size=p.max_pairs, replace=False))
    diff = pair_features([view.chosen[i] for i in idx], [view.rejected[i] for i in idx])
    y = (rng.random(len(idx)) < 0.5).astype(int)  # 1: the first answer shown is the chosen one
    folds = min(p.folds, int(np.bincount(y, minlength=2).min()))
    if len(idx) < p.min_pairs or folds < 2:
        return skip("shortcut", f"too few pairs ({len(idx)}) to cross-validate a classifier "
                                f"(needs {p.min_pairs}).", threshold)
    accuracy, model = _cross_validated(np.where(y[:, None] == 1, diff, -diff), y, folds, policy.seed)
    weights = model[-1].coef_[0] / model[0].scale_  # per unit of feature; the ranking uses standardised units
    standardised = model[-1].coef_[0]
    top = int(np.argmax(np.abs(standardised)))
    status = grade(accuracy, **threshold)
    side = "more" if standardised[top] > 0 else "less"
    message = (f"a classifier that sees only surface features tells chosen from rejected in {pct(accuracy)} "
               "of held-out pairs (50% is chance)")
    if accuracy >= CUE_ABOVE:
        message += f"; the strongest cue is {FEATURES[top]} ({side} on the chosen side)"
    message += ": a model can learn that cue instead of quality." if status == "warn" else "."
    margin = diff @ weights  # > 0: the surface features point to the chosen side
    best = np.argsort(-margin, kind="stable")[:MAX_EXAMPLES] if status == "warn" else []
    details = {"accuracy": accuracy, "n_pairs": len(idx), "folds": folds, "strongest": FEATURES[top],
               "weights": {name: float(w) for name, w in zip(FEATURES, standardised, strict=True)}}
    return CheckResult("shortcut", status, accuracy, threshold, message, [view.ids[idx[i]] for i in best],
                       details)
