"""Re-checking a gate report before it moves an alias: the registry trusts no verdict it cannot recompute.

A gate report is a JSON file anyone can edit. Before a promotion, `recheck` reads the two eval reports the
gate names (found by their sha256: the path the registry recorded when the eval was added, else the path
in the gate report), runs the same `prefgate.gate.decide` on them with the policy the report records, and
compares the result with the report: decision, reasons, the documented fields of the overall and
per-category rows (docs/gate.md), and each side's model and suite fingerprint. (Warnings and any field a
later prefgate adds are not compared: they do not decide.) Policy keys the report lacks take the defaults,
and the recomputation must still agree. A report that does not match (hand-edited, or not computed from
those files) is refused, and so is one whose files cannot be found. A genuine report whose policy is laxer
than the registry's minimum (`$PREFGATE_HOME/gate-minimum.yaml`, else the gate's defaults) is refused too.
Both refusals can be overridden with `--force --reason`, which the history records.

Nothing here holds the registry's write lock: the files are read and the statistics run before the
promotion's transaction, which then checks that the sha256s are this run's and the holder's evals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefgate.errors import InputError
from prefgate.registry.inputs import JsonFile, read_json

if TYPE_CHECKING:  # prefgate.gate imports numpy and pydantic: only a promotion needs them
    from prefgate.gate import GatePolicy

MINIMUM_POLICY_FILE = "gate-minimum.yaml"

# The fields of a gate report that `decide` computes from the two evals and the policy, compared in this order;
# of the overall and category rows, the documented fields (docs/gate.md).
_COMPARED = ("decision", "reasons", "overall", "categories", "baseline.model", "baseline.suite_fingerprint",
             "candidate.model", "candidate.suite_fingerprint")
_ROW_FIELDS = ("name", "n", "baseline", "candidate", "diff", "baseline_grade", "candidate_grade", "grade_drop", "test",
               "p_value", "p_adjusted", "protected", "status")


@dataclass(frozen=True)
class Recheck:
    """The outcome: `refusal` is None when the report may promote; `genuine` says whether it matched its
    inputs (only a genuine report is stored as a verdict)."""

    refusal: str | None
    genuine: bool


def minimum_policy(home: Path) -> GatePolicy:
    """The laxest gate policy this registry accepts: `home/gate-minimum.yaml` (strict, like `--policy` of
    `prefgate gate`), else the gate's defaults."""
    from prefgate.gate import GatePolicy, load_policy

    path = home / MINIMUM_POLICY_FILE
    return load_policy(path) if path.is_file() else GatePolicy()


def recheck(gate_file: JsonFile, known_paths: dict[str, str], minimum: GatePolicy,
            minimum_source: str) -> Recheck:
    """Recompute the gate report in `gate_file` from its inputs (`known_paths`: eval sha256 -> the path the
    registry recorded) and check its policy against `minimum` (named `minimum_source` in messages)."""
    from prefgate.gate import GATE_VERSION, decide

    gate = gate_file.data
    policy, problem = _policy(gate)
    if gate.get("version") != GATE_VERSION:  # the rules differ between versions: recomputing would not match
        problem = (f"it was written by gate version {gate.get('version')!r} and this prefgate's gate is version "
                   f"{GATE_VERSION}, whose rules differ; run `prefgate gate` again")
    reports = {}
    for side in ("baseline", "candidate"):
        if problem is None:
            reports[side], problem = _find_eval(gate, side, gate_file.path, known_paths)
    if problem is None:
        try:
            again = decide(reports["baseline"].data, reports["candidate"].data, policy, created=gate.get("created"))
        except InputError as err:
            problem = f"its two eval reports cannot be gated against each other ({err})"
        else:
            problem = _first_difference(gate, again)
    if problem is not None:
        return Recheck(f"the gate report does not match its inputs: {problem}; a gate report must be the one "
                       "`prefgate gate BASELINE CANDIDATE --json GATE` wrote (hand-edited reports are refused)",
                       genuine=False)
    lax = laxer(policy, minimum)
    if lax:
        return Recheck(f"the gate's policy is laxer than this registry's minimum ({minimum_source}): "
                       f"{'; '.join(lax)}", genuine=True)
    return Recheck(None, genuine=True)


def _policy(gate: dict) -> tuple[GatePolicy | None, str | None]:
    """The report's policy (strict: unknown keys and bad values are refused; absent keys take the defaults)."""
    from pydantic import ValidationError

    from prefgate.gate import GatePolicy

    given = gate.get("policy")
    if not isinstance(given, dict):
        return None, "it records no policy"
    try:
        policy = GatePolicy(**given)
    except (ValidationError, TypeError) as err:
        first = err.errors()[0] if isinstance(err, ValidationError) else {"loc": (), "msg": str(err)}
        where = ".".join(str(p) for p in first["loc"])
        return None, f"its policy is not valid ({'policy.' + where + ': ' if where else ''}{first['msg']})"
    return policy, None


def _find_eval(gate: dict, side: str, gate_path: Path, known_paths: dict[str, str]
               ) -> tuple[JsonFile | None, str | None]:
    """The eval report the gate names on `side`, read from a file whose bytes have the sha256 it records."""
    sha = gate[side].get("sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        return None, f"it names no sha256 for its {side} eval, so it cannot be recomputed"
    looked: list[str] = []
    for path in _candidates(sha, gate[side].get("path"), gate_path, known_paths):
        if str(path) in looked:
            continue
        looked.append(str(path))
        if not path.is_file():
            continue
        try:
            found = read_json(path)
        except InputError:
            continue
        if found.sha256 == sha:
            return found, None
    return None, (f"no file with its {side} eval's sha256 ({sha[:12]}) was found to recompute it from (looked at "
                  f"{', '.join(looked) or 'no path'})")


def _candidates(sha: str, named: Any, gate_path: Path, known_paths: dict[str, str]) -> Iterable[Path]:
    if sha in known_paths:
        yield Path(known_paths[sha])
    if isinstance(named, str) and named:
        path = Path(named)
        if path.is_absolute():
            yield path
        else:  # relative to where `prefgate gate` ran: here, or the gate file's folder or one above it
            yield path.absolute()
            yield from (folder / path for folder in gate_path.parents)


def _first_difference(given: dict, again: dict) -> str | None:
    for dotted in _COMPARED:
        a, b = _rows(_get(given, dotted)), _rows(_get(again, dotted))
        where = _differ(a, b, dotted)
        if where is not None:
            if dotted == "decision":
                return f"recomputed from the two eval files with its own policy, the decision is {b!r}, " \
                       f"the report says {a!r}"
            return f"recomputed from the two eval files with its own policy, {where} differs"
    return None


def _rows(value: Any) -> Any:
    """The documented fields of the overall row or of each category row; anything else as it is."""
    if isinstance(value, dict) and "p_value" in value:
        return {k: value.get(k, _ABSENT) for k in _ROW_FIELDS}
    if isinstance(value, list):
        return [_rows(v) for v in value]
    return value


def _get(obj: dict, dotted: str) -> Any:
    for key in dotted.split("."):
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _differ(a: Any, b: Any, where: str) -> str | None:
    """The first place (dotted, with list indices) where `a` and `b` differ; floats to 1e-9 relative."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = _differ(a.get(key, _ABSENT), b.get(key, _ABSENT), f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where} (length {len(a)}, recomputed {len(b)})"
        return next((f for i, (x, y) in enumerate(zip(a, b, strict=True)) if (f := _differ(x, y, f"{where}[{i}]"))),
                    None)
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return None if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else f"{where} ({a!r}, recomputed {b!r})"
    return None if a == b else f"{where} ({_shown(a)}, recomputed {_shown(b)})"


_ABSENT = object()


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return "absent"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def laxer(policy: GatePolicy, minimum: GatePolicy) -> list[str]:
    """How `policy` would let through what `minimum` blocks (empty when it is at least as strict)."""
    out = []
    if policy.max_grade_drop > minimum.max_grade_drop:
        out.append(f"max_grade_drop {policy.max_grade_drop} > {minimum.max_grade_drop} (it allows a "
                   f"{policy.max_grade_drop}-grade drop)")
    if policy.alpha < minimum.alpha:
        out.append(f"alpha {policy.alpha} < {minimum.alpha} (a drop needs stronger evidence to block)")
    unprotected = [c for c in minimum.protected if c not in policy.protected]
    if unprotected:
        out.append(f"protected lacks {', '.join(unprotected)}")
    if policy.min_items > minimum.min_items:
        out.append(f"min_items {policy.min_items} > {minimum.min_items} (more categories only warn)")
    if policy.bootstrap_samples < minimum.bootstrap_samples:
        out.append(f"bootstrap_samples {policy.bootstrap_samples} < {minimum.bootstrap_samples} (coarser p-values)")
    if policy.bands != minimum.bands:
        out.append("its grade bands differ from the registry's (grade drops are counted on the registry's bands)")
    return out
