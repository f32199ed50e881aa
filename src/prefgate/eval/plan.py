"""Sizing a suite to what the gate promises: per category, the smallest drop the gate's test detects.

The gate blocks a category that falls more than `max_grade_drop` grades (or whose score drops by more
than that many grade widths) when its exact McNemar test says the drop is significant. On too few items
the test cannot see a one-grade drop, and the promise is empty. For each category of n items at baseline
accuracy p this module says:

- `detectable_drop`: the smallest drop the exact two-sided McNemar test at `alpha` finds with probability
  `power` (default 0.05 and 0.80, the gate's defaults);
- `one_grade_detectable`: whether a drop of one grade width (`grade_width`, 0.10 with the default bands) is
  found with that power;
- `items_for_one_grade`: how many items at the same accuracy would find a one-grade drop with that power.

The power model (`prefgate.stats.mcnemar_power`): baseline and candidate are right or wrong on each item
independently, Bernoulli(p) and Bernoulli(p - drop), and the figure is exact under it. Two real models
usually agree more than that, which makes the test more powerful, so the figures are a little
pessimistic; and they are per test at `alpha`, while the gate's Holm adjustment asks more of each
category in a suite with several. Categories whose scores are not all 0 or 1 (judge grades: the gate's
paired bootstrap) have no figures (null).

`sizing` is the per-category block (the eval report, the gate report and `plan_suite` share it);
`plan_suite` is the table of `prefgate eval plan --baseline EVAL.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefgate.errors import InputError
from prefgate.eval.grades import DEFAULT_BANDS, GradeBands, by_category
from prefgate.reportio import header, read_json
from prefgate.stats import detectable_drop, is_binary, items_needed, mcnemar_power

PLAN_VERSION = 1

DEFAULT_ALPHA = 0.05  # significance level of the gate's paired tests (GatePolicy.alpha)
DEFAULT_POWER = 0.80  # power a category needs to detect a one-grade drop (GatePolicy.power)

POWER_MODEL = ("exact two-sided McNemar test at alpha on 0/1 item scores; baseline and candidate right or "
               "wrong independently per item, Bernoulli(p) and Bernoulli(p - drop)")


def grade_width(bands: GradeBands = DEFAULT_BANDS) -> float:
    """The width of one grade: the mean gap between adjacent band thresholds, (A - D) / 3 (each gap when
    the bands are evenly spaced, as the defaults are: 0.10)."""
    return round((bands.A - bands.D) / 3.0, 12)


def sizing(n: int, p: float | None, *, width: float, alpha: float = DEFAULT_ALPHA,
           power: float = DEFAULT_POWER) -> dict[str, Any]:
    """{"detectable_drop", "one_grade_detectable", "items_for_one_grade"} of a category of `n` items at
    baseline accuracy `p`; all None when `p` is None (scores not all 0 or 1) or there are no items.

    `items_for_one_grade` is None when the baseline is below one grade width (no such drop is possible).
    """
    if p is None or n <= 0:
        return {"detectable_drop": None, "one_grade_detectable": None, "items_for_one_grade": None}
    p = min(1.0, max(0.0, float(p)))
    possible = width <= p + 1e-12
    return {
        "detectable_drop": detectable_drop(n, p, alpha, power),
        "one_grade_detectable": possible and mcnemar_power(n, p, min(width, p), alpha) >= power,
        "items_for_one_grade": items_needed(p, width, alpha, power) if possible else None,
    }


def sizing_of_scores(scores: list[float], *, width: float, alpha: float = DEFAULT_ALPHA,
                     power: float = DEFAULT_POWER) -> dict[str, Any]:
    """`sizing` of a category from its baseline item scores (figures only when they are all 0 or 1)."""
    binary = bool(scores) and is_binary(scores)
    p = sum(scores) / len(scores) if binary else None
    return sizing(len(scores), p, width=width, alpha=alpha, power=power)


# ---------------------------------------------------------------------------------------------------------
# The plan of a suite, from a baseline eval report


def _categories(report: dict[str, Any], where: str) -> dict[str, tuple[int, float | None, bool | None]]:
    """{category: (n, mean score, all 0/1?)} from the items, or from the category blocks without items
    (lm-eval results imported without samples: sized as 0/1 scores, `binary` None)."""
    items = report.get("items") or []
    if not isinstance(items, list):
        raise InputError("expected a list of items", where=where, field="items")
    out: dict[str, tuple[int, float | None, bool | None]] = {}
    for i, item in enumerate(items):
        score = item.get("score") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(item.get("category"), str) or isinstance(score, bool) \
                or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise InputError("expected an object with a category and a score in [0, 1]", where=where,
                             field=f"items[{i}]")
    for name, group in by_category(items).items():
        scores = [float(it["score"]) for it in group]
        out[name] = (len(scores), sum(scores) / len(scores), is_binary(scores))
    for name, block in (report.get("categories") or {}).items():
        if name not in out and isinstance(block, dict) and isinstance(block.get("n"), int) \
                and isinstance(block.get("score"), (int, float)):
            out[name] = (block["n"], float(block["score"]), None)
    return out


def plan_suite(report: dict[str, Any], *, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER,
               bands: GradeBands = DEFAULT_BANDS, min_items: int | None = None, where: str = "baseline",
               created: str | None = None) -> dict[str, Any]:
    """The sizing table of the suite a baseline eval report was run on (JSON-serialisable).

    One row per category, sorted by name: name, n, baseline accuracy, binary (null: no per-item scores,
    sized as 0/1), the `sizing` figures, and `enforced` (n >= `min_items`, when given: the gate decides
    on the category rather than only warning).
    """
    if not isinstance(report, dict) or report.get("kind") != "eval":
        raise InputError("is not an eval report (expected a JSON object with \"kind\": \"eval\")", where=where)
    if not isinstance(report.get("categories") or {}, dict):
        raise InputError("expected an object of categories", where=where, field="categories")
    for name, value in (("alpha", alpha), ("power", power)):
        if not 0.0 < value < 1.0:
            raise InputError(f"expected a number strictly between 0 and 1, got {value}", field=f"--{name}")
    width = grade_width(bands)
    rows = []
    for name, (n, p, binary) in sorted(_categories(report, where).items()):
        figures = sizing(n, p if binary is not False else None, width=width, alpha=alpha, power=power)
        rows.append({"name": name, "n": n, "baseline": p, "binary": binary, **figures,
                     "enforced": None if min_items is None else n >= min_items})
    if not rows:
        raise InputError("has no categories with items to size", where=where, field="items")
    suite = report.get("suite") if isinstance(report.get("suite"), dict) else {}
    return {
        **header("eval_plan", PLAN_VERSION, created=created),
        "baseline": {"model": report.get("model"), "suite_fingerprint": suite.get("fingerprint")},
        "alpha": alpha, "power": power, "grade_width": width, "min_items": min_items, "model": POWER_MODEL,
        "categories": rows,
    }


def plan_file(path: str | Path, **options: Any) -> dict[str, Any]:
    """`plan_suite` over an eval report file; the report's path is recorded."""
    report = read_json(path, what="an eval report")
    plan = plan_suite(report, where=str(path), **options)
    plan["baseline"] = {"path": str(path), **plan["baseline"]}
    return plan
