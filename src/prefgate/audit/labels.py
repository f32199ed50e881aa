"""Human labels and the `label_agreement` check.

Labels file: JSONL, one judgement a line, `{"id": record id, "preferred": "chosen"|"rejected"|"tie",
"rater": str}` (the labelling tool, `prefgate.label`, writes it; other fields are ignored). Several raters
may label the same record; when one rater labels a record again, the last line wins (the tool appends a
re-label rather than rewriting the file).

Agreement is the share of judgements that prefer the record's `chosen` side (the auto-label); a tie counts
as a disagreement, because a pair a human cannot separate teaches DPO nothing true. Its interval is Wilson's.

Cohen's kappa over {first, second, tie}: the auto-label is always "chosen", so kappa computed on the
records as stored is 0 by construction (one rater never varies). We compute it on the orientation-
symmetrised table instead: every judgement counted once as stored and once with both answers swapped,
which is what a labelling tool that shows the two answers in random order measures. With a the agreement
and t the tie share, kappa = (a - (1 - t)/2) / (1 - (1 - t)/2); without ties that is 2a - 1. Its interval
is a percentile bootstrap over labelled records (all of a record's judgements resampled together).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prefgate.audit.policy import AuditPolicy
from prefgate.audit.result import CheckResult, pct, pick, share, skip
from prefgate.audit.view import RecordView, as_view
from prefgate.data.records import Record
from prefgate.errors import InputError
from prefgate.jsonio import gzip_errors, loads, open_binary
from prefgate.label.store import PREFERRED, parse_label
from prefgate.stats import symmetric_kappa

DEFAULT_POLICY = AuditPolicy()


@dataclass(frozen=True, slots=True)
class HumanLabel:
    id: str
    preferred: str  # "chosen" | "rejected" | "tie"
    rater: str
    where: str = ""  # "file:line", for error messages


def _parse_label(row: Any, where: str) -> HumanLabel:
    """One line of the labels file, checked by the labelling tool's own parser (one format, one parser)."""
    label = parse_label(row, where)
    return HumanLabel(label.id, label.preferred, label.rater, where)


def read_labels(path: str | Path, *, known_ids: set[str] | None = None) -> list[HumanLabel]:
    """Read a labels file; any bad line is a one-line InputError naming file:line and the field.

    A repeated (id, rater) keeps its last line, in the order of those last lines.
    """
    path = Path(path)
    latest: dict[tuple[str, str], HumanLabel] = {}
    try:
        with gzip_errors(path), open_binary(path) as fh:
            for n, line in enumerate(io.TextIOWrapper(fh, encoding="utf-8-sig"), start=1):
                if not line.strip():
                    continue
                where = f"{path}:{n}"
                label = _parse_label(loads(line, where, line=True, what="not valid JSON"), where)
                _check_known(label, known_ids)
                latest.pop((label.id, label.rater), None)  # re-inserted: dicts keep insertion order
                latest[(label.id, label.rater)] = label
    except FileNotFoundError:
        raise InputError("no such file", where=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", where=str(path)) from None
    if not latest:
        raise InputError("no labels (empty file)", where=str(path))
    return list(latest.values())


def _check_known(label: HumanLabel, known_ids: set[str] | None) -> None:
    if known_ids is not None and label.id not in known_ids:
        raise InputError(f"unknown record id {label.id!r}: no record in the dataset has it",
                         where=label.where or None, field="id")


def kappa_interval(per_record: np.ndarray, confidence: float, resamples: int, seed: int) -> list[float]:
    """Percentile bootstrap over records; `per_record` is (n_records, 3) counts of chosen / rejected / tie."""
    rng = np.random.default_rng(seed)
    m = len(per_record)
    values = []
    for start in range(0, resamples, 250):  # chunks keep memory small for many labelled records
        size = min(250, resamples - start)
        draws = rng.multinomial(m, np.full(m, 1.0 / m), size=size)  # how often each record is drawn
        totals = draws @ per_record
        values.append(symmetric_kappa(totals[:, 0], totals[:, 1], totals[:, 2]))
    lo, hi = np.quantile(np.concatenate(values), [(1 - confidence) / 2, (1 + confidence) / 2])
    return [float(lo), float(hi)]


def wilson_interval(k: int, n: int, confidence: float) -> list[float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def _agreement_status(agreement: float, n_labelled: int, coverage: float, policy: AuditPolicy) -> str:
    p = policy.label_agreement
    if agreement < p.fail_below:
        return "fail"
    if coverage < p.warn_coverage_below or n_labelled < p.warn_labelled_below:
        return "warn"
    return "pass"


def check_label_agreement(data: RecordView | Sequence[Record], policy: AuditPolicy = DEFAULT_POLICY, *,
                          labels: Sequence[HumanLabel] | None = None) -> CheckResult:
    """Agreement and Cohen's kappa (95% CIs) between the records' auto-labels and human labels."""
    p = policy.label_agreement
    threshold = {"fail_below": p.fail_below, "warn_coverage_below": p.warn_coverage_below,
                 "warn_labelled_below": p.warn_labelled_below}
    if not labels:
        return skip("label_agreement", "needs --labels (human labels) to measure agreement.", threshold)
    view = as_view(data)
    if not view.paired:
        return skip("label_agreement",
                    "needs paired records; human labels say which side of a pair is preferred.", threshold)
    known = set(view.ids)
    for label in labels:
        _check_known(label, known)
    order = {rid: i for i, rid in enumerate(dict.fromkeys(lab.id for lab in labels))}
    per_record = np.zeros((len(order), 3), dtype=np.int64)
    for lab in labels:
        per_record[order[lab.id], PREFERRED.index(lab.preferred)] += 1
    n_chosen, n_rejected, n_tie = (int(x) for x in per_record.sum(axis=0))
    n = n_chosen + n_rejected + n_tie
    agreement, coverage = share(n_chosen, n), share(len(order), len(view))
    kappa = float(symmetric_kappa(n_chosen, n_rejected, n_tie))
    details = {"n_judgements": n, "n_labelled": len(order), "coverage": coverage,
               "n_raters": len({lab.rater for lab in labels}),
               "counts": {"chosen": n_chosen, "rejected": n_rejected, "tie": n_tie},
               "agreement_ci": wilson_interval(n_chosen, n, p.confidence), "kappa": kappa,
               "kappa_ci": kappa_interval(per_record, p.confidence, p.bootstrap, policy.seed),
               "confidence": p.confidence}
    status = _agreement_status(agreement, len(order), coverage, policy)
    lo, hi = details["agreement_ci"]
    message = (f"humans prefer the chosen side in {pct(agreement)} of {n} judgements ({pct(lo)}-{pct(hi)}), "
               f"kappa {kappa:.2f} [{details['kappa_ci'][0]:.2f}, {details['kappa_ci'][1]:.2f}]")
    if status == "fail":
        message += f"; below {pct(p.fail_below)}, the auto-labels are too often wrong to train on."
    elif status == "warn":
        message += (f"; only {len(order)} pairs ({pct(coverage)}) are labelled, too few to trust: label at "
                    f"least {p.warn_labelled_below} and {pct(p.warn_coverage_below)} of the pairs.")
    else:
        message += "."
    disagreed = {lab.id for lab in labels if lab.preferred != "chosen"}
    examples = pick(list(order), (rid in disagreed for rid in order))
    if status == "warn" and not examples:  # too few labels: the examples are pairs to label next
        examples = pick(view.ids, (rid not in order for rid in view.ids))
    return CheckResult("label_agreement", status, agreement, threshold, message, examples, details)
