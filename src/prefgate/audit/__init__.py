"""Audit a preference dataset before training: one small pure function per check, a policy, a report.

>>> from prefgate.audit import run_audit, load_policy
>>> report = run_audit(read_dataset("pairs.jsonl"), policy=load_policy("audit.yaml"))  # doctest: +SKIP
>>> report["verdict"], [c["id"] for c in report["checks"] if c["status"] == "fail"]      # doctest: +SKIP

docs/audit.md describes every check, its default threshold and why it matters.
"""

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
from prefgate.audit.duplicates import PromptSet, check_duplicates, check_leakage, read_prompts
from prefgate.audit.families import model_family
from prefgate.audit.filters import over_length_ratio, split_by_length_ratio
from prefgate.audit.labels import HumanLabel, check_label_agreement, read_labels
from prefgate.audit.policy import AuditPolicy, load_policy, policy_from_dict
from prefgate.audit.report import CHECK_IDS, TEXT_ONLY_CHECKS, run_audit
from prefgate.audit.result import CheckResult
from prefgate.audit.shortcut import check_shortcut
from prefgate.audit.view import RecordView

__all__ = [
    "CHECK_IDS", "TEXT_ONLY_CHECKS", "AuditPolicy", "CheckResult", "HumanLabel", "PromptSet", "RecordView",
    "check_contradictions", "check_duplicates", "check_edit_distance", "check_grader_independence",
    "check_identical", "check_label_agreement", "check_leakage", "check_length_bias", "check_length_ratio",
    "check_rejection_diversity", "check_schema", "check_shortcut", "check_style_only", "check_truncation",
    "load_policy", "model_family", "over_length_ratio", "policy_from_dict", "read_labels", "read_prompts",
    "run_audit", "split_by_length_ratio",
]
