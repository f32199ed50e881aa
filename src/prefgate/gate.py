"""The regression gate: two eval reports and a policy in, a promote-or-block decision out.

`decide(baseline, candidate, policy)` is a pure function over the two eval JSONs (see docs/gate.md).
It re-grades both reports from their per-item scores with the policy's bands, pairs the items by id and
runs one paired test per category and one over all items (`prefgate.stats.paired_test`: exact McNemar
for 0/1 scores, paired bootstrap otherwise; two-sided p-values, a rule fires only on a drop).

Rules, in the order the reasons are written:
1. overall: block when the overall mean drops with p < alpha.
2. grade drop: block when a category's grade falls by more than `max_grade_drop` grades AND the drop is
   significant (Holm-adjusted p < alpha over the decided categories). A drop of that size that is not
   significant is a warning: on a few dozen items, noise alone can move a score near a band edge by two
   grades, and the gate must not block on noise.
   Score drop, the same rule measured on the score: block also when the drop is significant (as above)
   and the score fell by MORE than `max_grade_drop` grade widths (`prefgate.eval.plan.grade_width`, 0.10
   with the default bands), even though the realised letters differ by less. A true two-grade fall
   (0.92 -> 0.72 on 100 items) can land one letter apart (0.91 A -> 0.80 B is 11 points); the letters
   alone let about one such fall in eight through (tests/test_gate.py). A drop of exactly one width
   (0.90 -> 0.80) is the one grade `max_grade_drop: 1` allows and does not fire. Not significant, it is
   silent: a one-letter fall is allowed, and the gate cannot tell such a drop from noise.
3. protected: block when a protected category drops with Holm-adjusted p < alpha, whatever its grade.
4. small categories: a category with fewer than `min_items` items never blocks; what rules 2 and 3
   would have said becomes a warning, saying the suite is too small to enforce the rule. Such categories
   are left out of the Holm family.
Suite sizing (`prefgate.eval.plan`): each category row carries the smallest drop its test detects with
`power` (0.80) at `alpha`, whether a one-grade drop is detectable, and the items that would need; a category
that cannot detect one, or is below `min_items`, adds a line to `suite_warnings` (never blocks: it is a
property of the suite and the baseline, the same on every gate of them).
Reports on different suites (fingerprints) or whose items do not match are refused with `InputError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from prefgate.errors import InputError
from prefgate.eval.grades import GradeBands, grade, grade_rank
from prefgate.eval.plan import DEFAULT_ALPHA, DEFAULT_POWER, grade_width, sizing
from prefgate.reportio import header, read_json_with_sha256
from prefgate.stats import PairedTest, holm, is_binary, paired_test
from prefgate.yamlio import load_settings

GATE_VERSION = 2  # 2: the grade-width rule and the power figures (issue 16); the registry re-checks by version


class GatePolicy(BaseModel):
    """Every gate default, in one place. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bands: GradeBands = Field(default_factory=GradeBands)
    max_grade_drop: int = Field(1, ge=0, le=4)  # the seed's rule: more than one grade down blocks
    alpha: float = Field(DEFAULT_ALPHA, gt=0.0, lt=1.0)  # significance level of every paired test
    power: float = Field(DEFAULT_POWER, gt=0.0, lt=1.0)  # a category should detect a one-grade drop this often
    protected: list[str] = Field(default_factory=list)  # categories where any significant drop blocks
    min_items: int = Field(20, ge=1)  # smaller categories warn instead of deciding
    bootstrap_samples: int = Field(10_000, ge=100)  # resamples of the paired bootstrap
    seed: int = 0  # seed of the paired bootstrap

    @field_validator("protected")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists a category twice")
        return value


def load_policy(path: str | Path | None) -> GatePolicy:
    """The policy from a YAML file (missing keys take the defaults); the defaults when `path` is None."""
    return load_settings(GatePolicy, path)


# ---------------------------------------------------------------------------------------------------------
# Reading the two eval reports


def _check_eval_report(report: Any, name: str) -> None:
    if not isinstance(report, dict) or report.get("kind") != "eval":
        got = (f"a JSON {_json_type(report)}" if not isinstance(report, dict) else
               f"kind {report['kind']!r}" if "kind" in report else "no kind")
        raise InputError(f"is not an eval report (expected a JSON object with \"kind\": \"eval\", got {got})",
                         where=name)
    if not isinstance(report.get("categories", {}), dict):
        raise InputError(f"expected an object of categories, got {_json_type(report['categories'])}", where=name,
                         field="categories")


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _items_by_id(report: Any, name: str) -> dict[str, tuple[str, float]]:
    """{item id: (category, score)} of an eval report; InputError naming `name` when malformed."""
    _check_eval_report(report, name)
    items = report.get("items")
    if not isinstance(items, list) or not items:
        raise InputError("has no per-item scores; the gate pairs items by id (for lm-eval results, import "
                         "them with their samples files)", where=name, field="items")
    out: dict[str, tuple[str, float]] = {}
    for i, item in enumerate(items):
        field = f"items[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("category"), str) or "id" not in item:
            raise InputError("expected an object with id, category and score", where=name, field=field)
        score = item.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise InputError(f"expected a score in [0, 1], got {score!r}", where=name, field=f"{field}.score")
        key = str(item["id"])
        if key in out:
            raise InputError(f"duplicate item id {key!r}", where=name, field=f"{field}.id")
        out[key] = (item["category"], float(score))
    return out


def _fingerprint(report: dict[str, Any], name: str) -> str:
    suite = report.get("suite")
    fp = suite.get("fingerprint") if isinstance(suite, dict) else None
    if not isinstance(fp, str) or not fp:
        raise InputError("has no suite fingerprint", where=name, field="suite.fingerprint")
    return fp


def _pair_items(baseline: dict[str, Any], candidate: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """{category: [(baseline score, candidate score), ...]}, refusing reports that cannot be compared."""
    _check_eval_report(baseline, "baseline")
    _check_eval_report(candidate, "candidate")
    base_fp, cand_fp = _fingerprint(baseline, "baseline"), _fingerprint(candidate, "candidate")
    if base_fp != cand_fp:
        raise InputError(f"the reports are on different suites (fingerprints {base_fp[:16]} and {cand_fp[:16]}); "
                         "a gate compares two evaluations of the same suite", where="candidate",
                         field="suite.fingerprint")
    base, cand = _items_by_id(baseline, "baseline"), _items_by_id(candidate, "candidate")
    missing, extra = sorted(base.keys() - cand.keys()), sorted(cand.keys() - base.keys())
    if missing or extra:
        what = f"lacks {len(missing)} baseline items (first {missing[0]!r})" if missing else \
            f"has {len(extra)} items the baseline lacks (first {extra[0]!r})"
        raise InputError(f"items do not match: the candidate {what}", where="candidate", field="items")
    pairs: dict[str, list[tuple[float, float]]] = {}
    for key, (category, score) in base.items():
        if cand[key][0] != category:
            raise InputError(f"item {key!r} is in category {cand[key][0]!r} but in {category!r} in the baseline",
                             where="candidate", field="items")
        pairs.setdefault(category, []).append((score, cand[key][1]))
    return pairs


# ---------------------------------------------------------------------------------------------------------
# The decision


def _compare(pairs: list[tuple[float, float]], policy: GatePolicy) -> tuple[dict[str, Any], PairedTest]:
    base = [b for b, _ in pairs]
    cand = [c for _, c in pairs]
    test = paired_test(base, cand, n_resamples=policy.bootstrap_samples, seed=policy.seed)
    b_mean, c_mean = sum(base) / len(base), sum(cand) / len(cand)
    b_grade, c_grade = grade(b_mean, policy.bands), grade(c_mean, policy.bands)
    row = {"n": len(pairs), "baseline": b_mean, "candidate": c_mean, "diff": c_mean - b_mean,
           "baseline_grade": b_grade, "candidate_grade": c_grade,
           "grade_drop": grade_rank(c_grade) - grade_rank(b_grade), "test": test.test, "p_value": test.p_value}
    return row, test


def _sizing(pairs: list[tuple[float, float]], policy: GatePolicy) -> dict[str, Any]:
    """The category's power figures at the baseline's accuracy (`prefgate.eval.plan.sizing`); null unless
    both sides are 0/1 scores (the McNemar test)."""
    base = [b for b, _ in pairs]
    binary = is_binary(base, [c for _, c in pairs])
    return sizing(len(base), sum(base) / len(base) if binary else None, width=grade_width(policy.bands),
                  alpha=policy.alpha, power=policy.power)


def _exceeds_grade_widths(row: dict[str, Any], policy: GatePolicy) -> bool:
    """The score fell by more than `max_grade_drop` grade widths (rounded like `grade`, so that 0.92 -> 0.82
    on 100 items is exactly one width, not a hair more)."""
    limit = policy.max_grade_drop * grade_width(policy.bands)
    return round(row["baseline"] - row["candidate"], 12) > round(limit, 12)


def _fmt(row: dict[str, Any], p_key: str = "p_value") -> str:
    return (f"{row['baseline']:.3f} ({row['baseline_grade']}) -> {row['candidate']:.3f} "
            f"({row['candidate_grade']}), n={row['n']}, p={row[p_key]:.3g}")


def _judge_category(row: dict[str, Any], policy: GatePolicy) -> tuple[str, list[str], list[str]]:
    """(status, reasons, warnings) of one category row that already holds its adjusted p-value."""
    name, small = row["name"], row["n"] < policy.min_items
    p = row["p_value"] if small else row["p_adjusted"]  # small categories are not in the Holm family
    significant = row["candidate"] < row["baseline"] and p < policy.alpha
    findings: list[str] = []
    if row["grade_drop"] > policy.max_grade_drop:
        findings.append(f"category {name!r} fell {row['grade_drop']} grades: {_fmt(row)}")
    elif significant and _exceeds_grade_widths(row, policy):
        width = policy.max_grade_drop * grade_width(policy.bands)
        findings.append(f"category {name!r} dropped {row['baseline'] - row['candidate']:.3f}, more than "
                        f"max_grade_drop={policy.max_grade_drop} grade width(s) ({width:.2f}): {_fmt(row)}")
    if row["protected"] and significant:
        findings.append(f"protected category {name!r} dropped significantly: {_fmt(row)}")
    if not findings:
        return "pass", [], []
    if small:
        note = (f" (only {row['n']} items, fewer than min_items={policy.min_items}: the suite is too small to "
                "enforce the rule, so this is a warning, not a decision)")
        return "warn", [], [f + note for f in findings]
    if significant:
        return "block", [f + f" (Holm-adjusted p={p:.3g} < alpha={policy.alpha})" for f in findings], []
    return "warn", [], [f + f" (not significant: Holm-adjusted p={p:.3g} >= alpha={policy.alpha})"
                        for f in findings]


def _overall(pairs: dict[str, list[tuple[float, float]]], policy: GatePolicy) -> tuple[dict[str, Any], list[str]]:
    row, _ = _compare([p for group in pairs.values() for p in group], policy)
    blocked = row["candidate"] < row["baseline"] and row["p_value"] < policy.alpha
    row["status"] = "block" if blocked else "pass"
    reasons = [f"overall score dropped: {_fmt(row)} < alpha={policy.alpha}"] if blocked else []
    return row, reasons


def decide(baseline: dict[str, Any], candidate: dict[str, Any], policy: GatePolicy | None = None, *,
           created: str | None = None) -> dict[str, Any]:
    """The gate report comparing two eval reports (see the module docstring for the rules)."""
    policy = policy or GatePolicy()
    pairs = _pair_items(baseline, candidate)
    overall, reasons = _overall(pairs, policy)
    rows = []
    for name in sorted(pairs):
        row, _ = _compare(pairs[name], policy)
        rows.append({"name": name, **row, "p_adjusted": None, "protected": name in policy.protected,
                     "enforced": row["n"] >= policy.min_items, **_sizing(pairs[name], policy)})
    decided = [r for r in rows if r["n"] >= policy.min_items]
    for row, p_adj in zip(decided, holm([r["p_value"] for r in decided]), strict=True):
        row["p_adjusted"] = p_adj
    warnings = [f"protected category {name!r} is not in the suite" for name in policy.protected
                if name not in pairs]
    warnings += [f"category {name!r} has no per-item scores, so it is not compared" for name in
                 sorted(set(baseline.get("categories") or {}) | set(candidate.get("categories") or {}))
                 if name not in pairs]
    for row in rows:
        row["status"], row_reasons, row_warnings = _judge_category(row, policy)
        reasons += row_reasons
        warnings += row_warnings
    return {
        **header("gate", GATE_VERSION, created=created),
        "decision": "block" if reasons else "promote", "reasons": reasons, "warnings": warnings,
        "suite_warnings": [w for row in rows if (w := _suite_warning(row, policy))],
        "policy": policy.model_dump(mode="json"),
        "baseline": _identity(baseline), "candidate": _identity(candidate),
        "overall": overall, "categories": rows,
    }


def _suite_warning(row: dict[str, Any], policy: GatePolicy) -> str | None:
    """Why the suite cannot hold this category to the rules: below `min_items`, or a one-grade drop it
    would detect less often than `power`; None when it can (or has no power figures: graded scores)."""
    width = grade_width(policy.bands)
    need = row["items_for_one_grade"]
    needs = (f"about {need} items at its baseline accuracy {row['baseline']:.3f} would detect a one-grade drop "
             f"({width:.2f}) with {policy.power:.0%} power at alpha={policy.alpha}") if need else \
        f"no number of items at its baseline accuracy {row['baseline']:.3f} can show a one-grade drop ({width:.2f})"
    name = row["name"]
    if not row["enforced"]:
        tail = f"; {needs}" if row["one_grade_detectable"] is not None else ""
        return (f"category {name!r} has {row['n']} items, fewer than min_items={policy.min_items}: the suite is "
                f"too small to enforce the rules on it (it can only warn){tail}")
    if row["one_grade_detectable"] is False:
        return (f"category {name!r} ({row['n']} items) cannot detect a one-grade drop with {policy.power:.0%} "
                f"power at alpha={policy.alpha} (smallest detectable drop: "
                f"{_drop(row['detectable_drop'])}); {needs}")
    return None


def _drop(value: float | None) -> str:
    return "none, even to 0" if value is None else f"{value:.3f}"


def _identity(report: dict[str, Any]) -> dict[str, Any]:
    return {"path": None, "sha256": None, "model": report.get("model"),
            "suite_fingerprint": report["suite"]["fingerprint"]}


# ---------------------------------------------------------------------------------------------------------
# Files


def read_report(path: str | Path) -> tuple[dict[str, Any], str]:
    """(report, sha256 of the file bytes); InputError for a missing file or malformed JSON."""
    read = read_json_with_sha256(path)
    return read.data, read.sha256


def gate_files(baseline_path: str | Path, candidate_path: str | Path, policy: GatePolicy | None = None) -> dict:
    """`decide` over two eval report files, recording each file's path and sha256."""
    baseline, base_sha = read_report(baseline_path)
    candidate, cand_sha = read_report(candidate_path)
    try:
        result = decide(baseline, candidate, policy)
    except InputError as err:  # name the file, not "baseline" / "candidate"
        where = {"baseline": str(baseline_path), "candidate": str(candidate_path)}.get(err.where or "", err.where)
        raise InputError(err.message, where=where, field=err.field) from None
    result["baseline"].update(path=str(baseline_path), sha256=base_sha)
    result["candidate"].update(path=str(candidate_path), sha256=cand_sha)
    return result

