"""Token-level log-prob analysis: where, inside a pair, training moved the chosen answer's log-probabilities.

DPOP (Pal et al. 2024, "Smaug", Sec. 3) shows the failure at token level: on a pair whose answers share a
prefix, DPO can lower the log-probability of the chosen tokens *after* the first token where chosen and
rejected differ, because those tokens are conditioned on a prefix that the loss pushes both ways. This
module measures it:

- per-token log p(completion token | prefix) come from the runtime, `prefgate.lm.logps.token_logps`.
- `first_difference(chosen_ids, rejected_ids)`: index, into the completion tokens, of the first token where
  the two completions differ (the shorter length when one is a prefix of the other; None when identical).
- `pair_diagnosis(...)`: for one pair, the mean per-token change (policy minus reference) of the chosen
  tokens before, at and after that index (None where a segment is empty), and the same for the rejected.
- `diagnose(policy, reference, dataset, tokenizer, max_length)`: the report JSON (see `diagnose()`):
  per pair, the dataset means, and the means bucketed by normalised edit distance between the completion
  TEXTS (rapidfuzz `Levenshtein.normalized_distance`, characters; a message list's contents joined by blank
  lines, as the audit does).
- `ShiftProbe`: the trainer hook; a fixed sample of training pairs whose reference per-token log-probs are
  measured once, so the loop can log the after-difference chosen shift every `diagnose_every` steps.

The page (tables and plots) is drawn from the report alone by `prefgate.report.diagnose`
(`write_diagnose_html(report, path)`); this stage writes no file.

Means over the dataset are means over pairs of each pair's per-token mean (a long answer counts once).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefgate.errors import InputError
from prefgate.lm.load import eval_mode, pad_token_id
from prefgate.lm.prefix import token_logps
from prefgate.reportio import header

__all__ = [
    "DIAGNOSE_VERSION", "EDIT_DISTANCE_EDGES", "PROBE_METRICS", "SEGMENTS", "ShiftProbe", "diagnose",
    "diagnose_paths", "first_difference", "pair_diagnosis", "segment_means",
]

DIAGNOSE_VERSION = 1
SEGMENTS = ("before", "at", "after")
EDIT_DISTANCE_EDGES = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)  # the audit calls a pair low-edit below 0.1
PROBE_METRICS = {s: f"logps/chosen_shift_{s}_diff" for s in SEGMENTS}  # names the trainer logs


# ---------------------------------------------------------------------------------------------------------
# One pair


def first_difference(chosen_ids: Sequence[int], rejected_ids: Sequence[int]) -> int | None:
    """Index of the first completion token where chosen and rejected differ.

    >>> first_difference([5, 6, 7], [5, 6, 8]), first_difference([5, 6], [5, 6, 7]), first_difference([5], [5])
    (2, 2, None)
    """
    for i, (c, r) in enumerate(zip(chosen_ids, rejected_ids, strict=False)):  # the lengths may differ
        if c != r:
            return i
    if len(chosen_ids) == len(rejected_ids):
        return None
    return min(len(chosen_ids), len(rejected_ids))


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def segment_means(shift: Sequence[float], index: int | None) -> dict[str, float | None]:
    """Mean of `shift` over the tokens before, at and after `index` (None: every token is "before")."""
    if index is None:
        return {"before": _mean(shift), "at": None, "after": None}
    return {"before": _mean(shift[:index]), "at": _mean(shift[index: index + 1]), "after": _mean(shift[index + 1:])}


def pair_diagnosis(chosen_ids: Sequence[int], rejected_ids: Sequence[int],
                   policy_chosen_logps: Sequence[float], reference_chosen_logps: Sequence[float],
                   policy_rejected_logps: Sequence[float], reference_rejected_logps: Sequence[float]) -> dict[str, Any]:
    """One pair's per-token change (policy minus reference) split at the first differing token.

    The per-token lists are aligned with `chosen_ids` / `rejected_ids`. Returns `first_difference`, the
    chosen side's `before` / `at` / `after` means (None where the segment is empty) and the same for the
    rejected side under `rejected`.
    """
    if not (len(policy_chosen_logps) == len(reference_chosen_logps) == len(chosen_ids)) or not (
            len(policy_rejected_logps) == len(reference_rejected_logps) == len(rejected_ids)):
        raise ValueError("per-token log-probs must be aligned with the completion tokens")
    index = first_difference(chosen_ids, rejected_ids)
    chosen_shift = [p - r for p, r in zip(policy_chosen_logps, reference_chosen_logps, strict=True)]
    rejected_shift = [p - r for p, r in zip(policy_rejected_logps, reference_rejected_logps, strict=True)]
    return {"first_difference": index, "n_chosen": len(chosen_ids), "n_rejected": len(rejected_ids),
            **segment_means(chosen_shift, index), "rejected": segment_means(rejected_shift, index)}


# ---------------------------------------------------------------------------------------------------------
# The dataset


def completion_text(text: Any) -> str:
    """A completion as text: a string as is, a message list's contents joined by blank lines."""
    return text if isinstance(text, str) else "\n\n".join(str(m.get("content", "")) for m in text)


def _means_over(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over pairs of each segment's per-pair mean (pairs whose segment is empty left out), and counts."""

    def means(side: Sequence[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for seg in SEGMENTS:
            values = [r[seg] for r in side if r[seg] is not None]
            out[seg], out[f"n_{seg}"] = _mean(values), len(values)
        return out

    return {"n": len(rows), **means(rows), "rejected": means([r["rejected"] for r in rows])}


def _buckets(rows: Sequence[dict[str, Any]], edges: Sequence[float]) -> list[dict[str, Any]]:
    out = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        last = k == len(edges) - 2
        inside = [r for r in rows if lo <= r["edit_distance"] < hi or (last and r["edit_distance"] == hi)]
        out.append({"edit_distance": [lo, hi], **_means_over(inside)})
    return out


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(v, 5) for v in values]


def _pair_row(rec, tp, tokenizer, policy_chosen: list[float], reference_chosen: list[float],
              policy_rejected: list[float], reference_rejected: list[float]) -> dict[str, Any]:
    """One pair's entry of the report: identity, edit distance, segments, tokens and per-token log-probs."""
    from rapidfuzz.distance import Levenshtein

    distance = Levenshtein.normalized_distance(completion_text(rec.chosen), completion_text(rec.rejected))
    return {"id": rec.id, "category": rec.category, "edit_distance": float(distance),
            **pair_diagnosis(tp.chosen_ids, tp.rejected_ids, policy_chosen, reference_chosen, policy_rejected,
                             reference_rejected),
            "chosen_tokens": tokenizer.batch_decode([[t] for t in tp.chosen_ids]),
            "rejected_tokens": tokenizer.batch_decode([[t] for t in tp.rejected_ids]),
            "policy_chosen_logps": _rounded(policy_chosen), "reference_chosen_logps": _rounded(reference_chosen),
            "policy_rejected_logps": _rounded(policy_rejected),
            "reference_rejected_logps": _rounded(reference_rejected)}


def diagnose(policy, reference, dataset, tokenizer, max_length: int | None = 1024, *, batch_size: int = 8,
             policy_info: dict[str, Any] | None = None, reference_info: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """The diagnose report of `policy` against `reference` on the paired records of `dataset`.

    `{"kind": "diagnose", "version", "created", "prefgate_version", "model", "reference",
      "dataset": {path, fingerprint, n_records}, "options", "summary": {n, before, at, after, n_before, ...,
      rejected: {...}}, "buckets": [{"edit_distance": [lo, hi], "n", "before", "at", "after", ...}],
      "pairs": [{"id", "category", "edit_distance", "first_difference", "n_chosen", "n_rejected", "before",
      "at", "after", "rejected": {...}, "chosen_tokens", "rejected_tokens", "policy_chosen_logps",
      "reference_chosen_logps", "policy_rejected_logps", "reference_rejected_logps"}]}`.
    Buckets are [lo, hi) at `EDIT_DISTANCE_EDGES` except the last, which includes 1.0.
    """
    from prefgate.data import PairTokenizer
    from prefgate.lm.load import check_same_vocab

    if not dataset.paired:
        raise InputError("expected paired preference records (prompt, chosen, rejected)", where=dataset.source)
    check_same_vocab(policy, reference)
    pair_tok = PairTokenizer(tokenizer, max_length=max_length)
    pairs = [pair_tok.pair(rec) for rec in dataset.records]
    prompts = [p.prompt_ids for p in pairs] * 2  # rows 0..n-1 chosen, n..2n-1 rejected
    completions = [p.chosen_ids for p in pairs] + [p.rejected_ids for p in pairs]
    kwargs = {"pad_id": pad_token_id(tokenizer), "batch_size": batch_size}
    with eval_mode(policy), eval_mode(reference):
        policy_logps = token_logps(policy, prompts, completions, **kwargs)
        reference_logps = token_logps(reference, prompts, completions, **kwargs)
    n = len(pairs)
    rows = [_pair_row(rec, tp, tokenizer, policy_logps[i], reference_logps[i], policy_logps[n + i],
                      reference_logps[n + i]) for i, (rec, tp) in enumerate(zip(dataset.records, pairs, strict=True))]
    return {
        **header("diagnose", DIAGNOSE_VERSION, model=policy_info or {}, reference=reference_info or {},
                 dataset={"path": dataset.source, "fingerprint": dataset.fingerprint, "n_records": len(dataset)}),
        "options": {"max_length": max_length, "edit_distance": "normalised Levenshtein over completion texts "
                    "(characters)", "shift": "policy minus reference log-prob per token; means over pairs"},
        "summary": _means_over(rows), "buckets": _buckets(rows, EDIT_DISTANCE_EDGES), "pairs": rows,
    }


def diagnose_paths(model: str, reference: str, pairs: str, *, max_length: int | None = 1024, batch_size: int = 8,
                   dtype: str = "auto", device: str | None = None) -> dict[str, Any]:
    """`diagnose` on a model (folder, hub id or run directory), a reference and a pairs file."""
    from prefgate.data import read_dataset
    from prefgate.lm.load import load_model

    dataset = read_dataset(pairs)  # before any model: bad data fails fast
    policy = load_model(model, dtype=dtype, device=device)
    ref = load_model(reference, dtype=dtype, device=device)
    return diagnose(policy.model, ref.model, dataset, policy.tokenizer, max_length, batch_size=batch_size,
                    policy_info=policy.info, reference_info=ref.info)


# ---------------------------------------------------------------------------------------------------------
# The trainer hook


@dataclass
class ShiftProbe:
    """A fixed sample of pairs with their reference per-token log-probs of the chosen tokens, measured once.

    `measure(policy)` gives, over the sample, the mean per-token chosen shift (policy minus reference)
    before, at and after the first differing token, under the metric names in `PROBE_METRICS`
    (`logps/chosen_shift_after_diff` is the one that shows DPO's failure while it happens).
    """

    prompt_ids: list[list[int]]
    chosen_ids: list[list[int]]
    first_differences: list[int]
    reference_chosen_logps: list[list[float]]
    pad_id: int = 0
    batch_size: int = 8

    @classmethod
    def from_data(cls, reference, data, *, n_pairs: int = 16, seed: int = 0, pad_id: int = 0,
                  batch_size: int = 8) -> ShiftProbe:
        """Sample up to `n_pairs` pairs of a paired `train.batches.TokenizedData` (preferring pairs with
        chosen tokens after the first difference) and score their chosen tokens under `reference`: a model,
        or a live `train.reference` object (`ModelReference`, `AdapterDisabledReference`)."""
        if data.labels is not None or data.n_roles != 2:
            raise ValueError("the shift probe needs paired rows (chosen, rejected); this loss trains on other rows")
        prompts = [list(rows[0][0]) for rows in data.rows]
        chosen = [list(rows[0][1]) for rows in data.rows]
        firsts = [first_difference(rows[0][1], rows[1][1]) for rows in data.rows]
        differ = [i for i, k in enumerate(firsts) if k is not None]
        with_after = [i for i in differ if firsts[i] < len(chosen[i]) - 1]
        pool = with_after or differ
        if not pool:
            raise ValueError("no pair has chosen and rejected completions that differ")
        sample = sorted(random.Random(seed).sample(pool, min(n_pairs, len(pool))))
        prompts, chosen, firsts = [prompts[i] for i in sample], [chosen[i] for i in sample], [firsts[i] for i in sample]
        model, context = _reference_model(reference)
        with context, eval_mode(model):
            ref_logps = token_logps(model, prompts, chosen, pad_id=pad_id, batch_size=batch_size)
        return cls(prompts, chosen, firsts, ref_logps, pad_id, batch_size)

    def measure(self, policy) -> dict[str, float]:
        """The sample's mean chosen shift per segment, by metric name; a segment no sampled pair has is left
        out. Eval mode and no gradient during the measure; the model's mode is restored."""
        with eval_mode(policy):
            logps = token_logps(policy, self.prompt_ids, self.chosen_ids, pad_id=self.pad_id,
                                batch_size=self.batch_size)
        rows = [segment_means([p - r for p, r in zip(pol, ref, strict=True)], index)
                for pol, ref, index in zip(logps, self.reference_chosen_logps, self.first_differences, strict=True)]
        means = {seg: _mean([r[seg] for r in rows if r[seg] is not None]) for seg in SEGMENTS}
        return {PROBE_METRICS[seg]: value for seg, value in means.items() if value is not None}


def _reference_model(reference) -> tuple[Any, contextlib.AbstractContextManager]:
    """(model, context to run it in) for a model or a live reference object of `train.reference`."""
    kind = getattr(reference, "kind", None)
    if kind == "adapter-disabled":
        return reference.model, reference.model.disable_adapter()
    if kind == "model":
        return reference.model, contextlib.nullcontext()
    if kind is not None:
        raise ValueError(f"a {kind!r} reference has no live model; pass the reference model itself (before step 1, "
                         "the initial policy is the reference unless reference.model is set)")
    return reference, contextlib.nullcontext()
