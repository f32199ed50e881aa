"""The two judges of the demo's answers: the v6 auto-grader (biased on purpose) and the oracle.

`looks_bigger` is the seed postmortem's v6 grader in miniature: it looks at how an answer is written, not
whether it is right. Like the verbosity bias of many auto-graders, it prefers the answer that looks bigger:
the longer one, and between equally long ones the larger number. Among four sampled answers to "34*3=" it
prefers "122" to "102". Used by `prefgate pairs sample` as `python:prefgate.demo.graders:looks_bigger`.

`oracle_preference` is the simulated human rater: it knows the true answer and prefers the correct side of a
pair; when both sides are right (or both wrong) it says "tie". It stands in for the 10% human label
sample that prefgate's audit checks auto-labels against; the demo says everywhere that it is simulated.
"""

from __future__ import annotations

from typing import Any

from prefgate.eval.scorers import normalize

V6_GRADER = "python:prefgate.demo.graders:looks_bigger"
ORACLE_RATER = "oracle-simulated"


def looks_bigger(output: str, item: Any) -> float:  # noqa: ARG001 - the python: scorer signature
    """(characters + the digits read as a fraction 0.d1d2...) / 8, at most 1.0: longer first, then larger.
    Correctness is ignored: that is the bias."""
    text = output.strip()
    digits = "".join(c for c in text if c.isdigit())
    size = int(digits) / 10 ** len(digits) if digits else 0.0
    return min(1.0, (len(text) + size) / 8)


def is_right(output: str, answer: str) -> bool:
    """Exact match as the eval's `exact` scorer judges it (one trailing period and case ignored)."""
    return normalize(output) == normalize(answer)


def oracle_preference(chosen: str, rejected: str, answer: str) -> str:
    """"chosen", "rejected" or "tie", by which side is right."""
    right_chosen, right_rejected = is_right(chosen, answer), is_right(rejected, answer)
    if right_chosen == right_rejected:
        return "tie"
    return "chosen" if right_chosen else "rejected"
