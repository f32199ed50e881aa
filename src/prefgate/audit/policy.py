"""The audit policy: every threshold of every check, with its default, in this one place.

Override any of them from YAML (`prefgate audit DATA --config audit.yaml`); `examples/audit.yaml` lists
them all with their defaults. Unknown keys are errors. A share is a fraction in [0, 1]: `0.05` is 5%.
Every check also has `enabled` (default true); a disabled check is reported as `skip`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prefgate.errors import InputError
from prefgate.yamlio import load_settings, validated

Share = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Check(_Strict):
    enabled: bool = True


class _WarnFail(_Check):
    @model_validator(mode="after")
    def _warn_before_fail(self):
        warn, fail = getattr(self, "warn_above", None), getattr(self, "fail_above", None)
        if warn is not None and fail is not None and warn > fail:
            raise ValueError(f"warn_above ({warn}) is above fail_above ({fail})")
        return self


class SchemaPolicy(_Check):
    fail_above: Share = 0.0  # share of invalid rows, when --skip-invalid was not given
    warn_above: Share = 0.0  # the same, when the user chose to skip them


class IdenticalPolicy(_Check):
    fail_above: Share = 0.01


class StyleOnlyPolicy(_WarnFail):
    warn_above: Share = 0.05
    fail_above: Share = 0.20


class EditDistancePolicy(_Check):
    low_edit_below: Share = 0.1  # a pair is low-edit when its normalised Levenshtein distance is below this
    warn_above: Share = 0.30  # share of low-edit pairs
    bins: int = Field(20, ge=2, le=200)  # histogram bins over [0, 1]


class LengthBiasPolicy(_Check):
    warn_at_or_above: Share = 0.65  # share of (unequal-length) pairs whose chosen side is longer
    scatter_points: int = Field(2000, ge=0)  # (chosen, rejected) lengths sampled for the report's plot


class LengthRatioPolicy(_Check):
    max_ratio: float = Field(2.0, ge=1.0)  # chosen longer than this many times the rejected length
    warn_above: Share = 0.10


class ShortcutPolicy(_Check):
    warn_at_or_above: Share = 0.70  # cross-validated accuracy of the surface-feature classifier
    folds: int = Field(5, ge=2, le=20)
    max_pairs: int = Field(20000, ge=10)  # a seeded sample of this many pairs is enough for a stable accuracy
    min_pairs: int = Field(20, ge=4)  # fewer pairs: skip (cross-validation would be noise)


class TruncationPolicy(_Check):
    fail_above: Share = 0.01  # share of pairs where exactly one side is truncated


class MinHashPolicy(_Strict):
    num_perm: int = Field(64, ge=16, le=512)  # permutations per MinHash signature
    shingle_words: int = Field(2, ge=1, le=5)  # prompts are compared as sets of lower-cased word n-grams


class DuplicatesPolicy(_Check):
    warn_above: Share = 0.05  # share of exact duplicate pairs, or of records with a near-duplicate prompt
    near_jaccard: Share = 0.8


class ContradictionsPolicy(_Check):
    fail_above: Share = 0.01


class LeakagePolicy(_Check):
    fail_above: Share = 0.0  # share of training records whose prompt is in the eval data exactly
    warn_near_above: Share = 0.0  # share of training records with a near-duplicate eval prompt
    near_jaccard: Share = 0.8


class LabelAgreementPolicy(_Check):
    fail_below: Share = 0.80  # the seed's rule: humans must agree with the auto-labels on 80% of judgements
    warn_coverage_below: Share = 0.10  # fewer labelled pairs than this share of the dataset: warn
    warn_labelled_below: int = Field(30, ge=0)  # or fewer labelled pairs than this: warn
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    bootstrap: int = Field(2000, ge=100, le=100000)  # resamples for the kappa interval


class RejectionDiversityPolicy(_Check):
    warn_above: Share = 0.80  # share of the most common rejection_type


class GraderIndependencePolicy(_Check):
    warn_above: Share = 0.0  # share of graded records whose grader is in the policy model's family


class AuditPolicy(_Strict):
    """Every audit threshold. `AuditPolicy()` is the default policy."""

    seed: int = 0  # every sample, fold and bootstrap in the audit derives from it
    minhash: MinHashPolicy = MinHashPolicy()
    schema_: SchemaPolicy = Field(SchemaPolicy(), alias="schema")  # `schema` is a BaseModel attribute
    identical: IdenticalPolicy = IdenticalPolicy()
    style_only: StyleOnlyPolicy = StyleOnlyPolicy()
    edit_distance: EditDistancePolicy = EditDistancePolicy()
    length_bias: LengthBiasPolicy = LengthBiasPolicy()
    length_ratio: LengthRatioPolicy = LengthRatioPolicy()
    shortcut: ShortcutPolicy = ShortcutPolicy()
    truncation: TruncationPolicy = TruncationPolicy()
    duplicates: DuplicatesPolicy = DuplicatesPolicy()
    contradictions: ContradictionsPolicy = ContradictionsPolicy()
    leakage: LeakagePolicy = LeakagePolicy()
    label_agreement: LabelAgreementPolicy = LabelAgreementPolicy()
    rejection_diversity: RejectionDiversityPolicy = RejectionDiversityPolicy()
    grader_independence: GraderIndependencePolicy = GraderIndependencePolicy()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def check(self, check_id: str) -> Any:
        """The sub-policy of a check by its id ('schema', 'style_only', ...)."""
        return getattr(self, "schema_" if check_id == "schema" else check_id)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


def policy_from_dict(data: dict[str, Any] | None, *, where: str = "policy") -> AuditPolicy:
    """Validate a dict (parsed YAML) into an `AuditPolicy`; the first problem is a one-line InputError."""
    if data is None:
        return AuditPolicy()
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of check ids to settings, got {type(data).__name__}",
                         where=where)
    return validated(AuditPolicy, data, where)


def load_policy(path: str | Path | None) -> AuditPolicy:
    """The default policy, or the one in a YAML file (any key left out keeps its default)."""
    return load_settings(AuditPolicy, path)
