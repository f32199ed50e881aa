"""`CheckResult`, the one thing every audit check returns, and the small helpers checks share.

A check's `value` is always a share in [0, 1] (a fraction of pairs, an accuracy, an agreement rate), so
reports can print every value the same way; `threshold` is the dict of rules that decided the status
(for example `{"warn_above": 0.05, "fail_above": 0.2}`); `details` holds what plots and readers need.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("skip", "pass", "warn", "fail")  # in order of severity; the verdict is the worst status
MAX_EXAMPLES = 5


@dataclass
class CheckResult:
    id: str
    status: str  # "pass" | "warn" | "fail" | "skip"
    value: float | None
    threshold: dict[str, Any]
    message: str
    examples: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; expected one of {STATUSES}")
        self.examples = list(self.examples)[:MAX_EXAMPLES]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "value": self.value, "threshold": self.threshold,
                "message": self.message, "examples": self.examples, "details": self.details}


def skip(check_id: str, why: str, threshold: dict[str, Any] | None = None) -> CheckResult:
    return CheckResult(check_id, "skip", None, threshold or {}, why)


def worst(statuses: Iterable[str]) -> str:
    """The verdict: the most severe status; skipped checks count as pass (an all-skip audit passes)."""
    rank = max((STATUSES.index(s) for s in statuses), default=1)
    return STATUSES[max(rank, 1)]


def share(count: int, total: int) -> float:
    return count / total if total else 0.0


def grade(value: float, *, warn_above: float | None = None, fail_above: float | None = None,
          warn_at_or_above: float | None = None, fail_below: float | None = None) -> str:
    """pass / warn / fail for `value` under the rules given (None means the rule is not used)."""
    if fail_above is not None and value > fail_above:
        return "fail"
    if fail_below is not None and value < fail_below:
        return "fail"
    if warn_above is not None and value > warn_above:
        return "warn"
    if warn_at_or_above is not None and value >= warn_at_or_above:
        return "warn"
    return "pass"


def pick(ids: Sequence[str], flags: Iterable[bool]) -> list[str]:
    """The first `MAX_EXAMPLES` ids whose flag is set."""
    out = []
    for rid, flag in zip(ids, flags, strict=True):
        if flag:
            out.append(rid)
            if len(out) == MAX_EXAMPLES:
                break
    return out


def pct(value: float | None) -> str:
    """A share as a short percentage: 0.1234 -> '12.3%', 0.0004 -> '0.04%'."""
    if value is None:
        return "-"
    p = 100 * value
    if p == 0 or p >= 10:
        return f"{p:.0f}%" if p == round(p) else f"{p:.1f}%"
    return f"{p:.2g}%" if p < 1 else f"{p:.1f}%"


_RULE_WORDS = {"warn_above": ("warn", ">"), "fail_above": ("fail", ">"), "warn_at_or_above": ("warn", "≥"),
               "fail_below": ("fail", "<")}


_SETTING_WORDS = {"warn_near_above": "warn near >{}", "warn_coverage_below": "warn coverage <{}",
                  "warn_labelled_below": "or <{} labelled", "max_ratio": "at {:g}x",
                  "low_edit_below": "low-edit <{:g}", "near_jaccard": "Jaccard ≥{:g}"}


def describe_threshold(threshold: dict[str, Any]) -> str:
    """{'warn_above': 0.05, 'fail_above': 0.2} -> 'warn >5%, fail >20%'; settings follow in parentheses."""
    parts = [f"{word} {op}{pct(threshold[key])}" for key, (word, op) in _RULE_WORDS.items()
             if threshold.get(key) is not None]
    settings = []
    for key, fmt in _SETTING_WORDS.items():
        value = threshold.get(key)
        if value is not None:
            shown = pct(value) if key in ("warn_near_above", "warn_coverage_below") else value
            settings.append(fmt.format(shown))
    text = ", ".join(parts) or "-"
    return f"{text} ({', '.join(settings)})" if settings else text
