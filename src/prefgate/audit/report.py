"""`run_audit`: every check over one dataset, assembled into the audit report (../shared/DESIGN.md contract).

    {"kind": "audit", "version": 1, "created", "prefgate_version", "verdict": "pass"|"warn"|"fail",
     "dataset": {"path", "fingerprint", "n_records", "n_rejected"}, "eval_dataset", "options", "policy",
     "stats": {"paired", "conversational", "categories", "rejection_types"},
     "checks": [{"id", "status", "value", "threshold", "message", "examples", "details", "seconds"}]}

The verdict is the worst check status (skips count as pass). The report is JSON-serialisable as is, and
holds everything the HTML page needs (`prefgate.report.audit_html`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefgate.audit.checks import (
    check_contradictions,
    check_edit_distance,
    check_grader_independence,
    check_identical,
    check_length_bias,
    check_length_ratio,
    check_rejection_diversity,
    check_schema,
    check_style_only,
    check_truncation,
)
from prefgate.audit.duplicates import check_duplicates, check_leakage, prompt_set, read_prompts
from prefgate.audit.labels import HumanLabel, check_label_agreement, read_labels
from prefgate.audit.policy import AuditPolicy
from prefgate.audit.result import CheckResult, skip, worst
from prefgate.audit.shortcut import check_shortcut
from prefgate.audit.view import RecordView
from prefgate.data.dataset import PreferenceDataset
from prefgate.errors import InputError
from prefgate.reportio import header

REPORT_VERSION = 1

# The check ids, in report order. Other tools read them: keep them stable.
CHECK_IDS = ("schema", "identical", "style_only", "edit_distance", "length_bias", "length_ratio",
             "shortcut", "truncation", "duplicates", "contradictions", "leakage", "label_agreement",
             "rejection_diversity", "grader_independence")

TEXT_ONLY_CHECKS = tuple(c for c in CHECK_IDS if c != "truncation")  # those that need no tokenizer


def _as_dataset(dataset: PreferenceDataset | Sequence[Any]) -> PreferenceDataset:
    if isinstance(dataset, PreferenceDataset):
        return dataset
    if not dataset:
        raise InputError("no records to audit")
    return PreferenceDataset("<records>", list(dataset))


def _resolve(tokenizer: Any, max_length: int | None, labels: Any, eval_dataset: Any, view: RecordView):
    if max_length is not None and tokenizer is None:
        raise InputError("--max-length needs --tokenizer (truncation is measured in tokens)",
                         field="max_length")
    if isinstance(tokenizer, (str, Path)):
        from prefgate.data.tokenize import load_tokenizer

        tokenizer = load_tokenizer(str(tokenizer))
    if isinstance(labels, (str, Path)):
        labels = read_labels(labels, known_ids=set(view.ids))
    if isinstance(eval_dataset, (str, Path)):
        eval_dataset = read_prompts(eval_dataset)
    elif eval_dataset is not None:
        eval_dataset = prompt_set(eval_dataset)
    return tokenizer, labels, eval_dataset


def _stats(ds: PreferenceDataset) -> dict[str, Any]:
    def counts(name: str) -> dict[str, int]:
        values = (getattr(r, name) for r in ds.records)
        return dict(Counter(v for v in values if v is not None).most_common())

    return {"paired": ds.paired, "conversational": ds.conversational, "categories": counts("category"),
            "rejection_types": counts("rejection_type")}


# One keyword-only argument per `prefgate audit` option, passed by name by the CLI, the trainer's audit gate
# and the demo: an options object would only rename them.
def run_audit(dataset: PreferenceDataset | Sequence[Any], *, eval_dataset: Any = None,  # noqa: PLR0913
              labels: str | Path | Sequence[HumanLabel] | None = None, tokenizer: Any = None,
              max_length: int | None = None, policy_model: str | None = None,
              policy: AuditPolicy | None = None, skip_invalid: bool = True,
              checks: Sequence[str] | None = None,
              progress: Callable[[str, float], None] | None = None) -> dict[str, Any]:
    """Audit `dataset` and return the report dict (module docstring).

    dataset: a PreferenceDataset (or a list of records). eval_dataset: a path, a dataset, or a `PromptSet`.
    labels: a labels file path or `HumanLabel`s. tokenizer: a path/name or a loaded tokenizer.
    skip_invalid: invalid rows in `dataset.rejected` were skipped on purpose, so `schema` warns instead of
    failing. The default is True because only `read_dataset(..., skip_invalid=True)` yields such rows; the
    CLI, which always reads leniently, passes the user's --skip-invalid here.
    checks: run only these ids (the others are reported as skipped). progress(check_id, seconds) is called
    after each check.
    """
    ds = _as_dataset(dataset)
    policy = policy or AuditPolicy()
    view = RecordView(ds.records)
    tokenizer, labels, evals = _resolve(tokenizer, max_length, labels, eval_dataset, view)
    runners: dict[str, Callable[[], CheckResult]] = {
        "schema": lambda: check_schema(ds, policy, skip_invalid=skip_invalid),
        "identical": lambda: check_identical(view, policy),
        "style_only": lambda: check_style_only(view, policy),
        "edit_distance": lambda: check_edit_distance(view, policy, tokenizer=tokenizer),
        "length_bias": lambda: check_length_bias(view, policy),
        "length_ratio": lambda: check_length_ratio(view, policy),
        "shortcut": lambda: check_shortcut(view, policy),
        "truncation": lambda: check_truncation(view, policy, tokenizer=tokenizer, max_length=max_length),
        "duplicates": lambda: check_duplicates(view, policy),
        "contradictions": lambda: check_contradictions(view, policy),
        "leakage": lambda: check_leakage(view, policy, eval_prompts=evals),
        "label_agreement": lambda: check_label_agreement(view, policy, labels=labels),
        "rejection_diversity": lambda: check_rejection_diversity(view, policy),
        "grader_independence": lambda: check_grader_independence(view, policy, policy_model=policy_model),
    }
    results = []
    for check_id in CHECK_IDS:
        start = time.perf_counter()
        if not policy.check(check_id).enabled:
            result = skip(check_id, "disabled in the audit policy.")
        elif checks is not None and check_id not in checks:
            result = skip(check_id, "not selected.")
        else:
            result = runners[check_id]()
        entry = {**result.to_dict(), "seconds": round(time.perf_counter() - start, 4)}
        results.append(entry)
        if progress is not None:
            progress(check_id, entry["seconds"])
    return {
        **header("audit", REPORT_VERSION),
        "verdict": worst(r["status"] for r in results), "dataset": ds.describe(),
        "eval_dataset": evals.describe() if evals is not None else None,
        "options": {"tokenizer": getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None,
                    "max_length": max_length, "policy_model": policy_model, "skip_invalid": skip_invalid,
                    "n_labels": len(labels) if labels else 0},
        "policy": policy.to_dict(), "stats": _stats(ds), "checks": results,
    }
