"""One micro-batch: policy log-probs, the loss, and the metrics it contributes.

Metric names follow TRL's vocabulary (`rewards/chosen`, `logps/chosen`, ...) plus ours:
`logps/chosen_shift` = (policy - reference) log-prob of the chosen completion **per token**, averaged over
examples (negative: training is lowering the likelihood of the preferred answer, the failure DPOP fixes);
`kl/estimate` = mean per-token (policy - reference) log-ratio over all completion rows of the batch, a cheap
proxy for KL(policy || reference) on the training distribution (not on the policy's own samples).
Metrics are returned as (sum, count) pairs so micro-batches and processes can be summed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from prefgate.lm.logps import sequence_logps
from prefgate.lm.prefix import layout_logps, resolve_forward
from prefgate.losses import LossOutput, LossType, RowLayout, compute_loss, kto_kl_estimate
from prefgate.train.batches import Batch

Sums = dict[str, tuple[float, float]]  # metric -> (sum, count)


@dataclass(frozen=True)
class Forward:
    """How a model turns a batch into per-row log-probs: `concatenated` (2B padded rows, the prompt twice) or
    `prefix_shared` (each prompt once, `prefgate.lm.prefix`); both return the same (R,) contract."""

    mode: str = "concatenated"
    pack_tokens: int | None = None
    reason: str = "concatenated (configured)"

    @classmethod
    def resolve(cls, model, mode: str, pack_tokens: int | None = None) -> Forward:
        """`forward: auto | concatenated | prefix_shared` for this model (see `prefix.resolve_forward`)."""
        chosen, reason = resolve_forward(model, mode)
        return cls(chosen, pack_tokens if chosen == "prefix_shared" else None, reason)

    @property
    def key(self) -> str:
        """What a precomputed reference depends on (the layout changes float rounding, not values)."""
        return self.mode if self.pack_tokens is None else f"{self.mode}:pack={self.pack_tokens}"

    def describe(self) -> dict:
        return {"mode": self.mode, "pack_tokens": self.pack_tokens, "reason": self.reason}

    def logps(self, model, batch: Batch) -> torch.Tensor:
        if self.mode == "prefix_shared":
            return layout_logps(model, batch.layout(self.pack_tokens))
        return forward_logps(model, batch)


CONCATENATED = Forward()


def forward_logps(model, batch: Batch) -> torch.Tensor:
    """The concatenated forward: summed completion log-prob of every row, float32 (R,); differentiable."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    logps, _ = sequence_logps(logits, batch.input_ids, batch.loss_mask)
    return logps


def compute_batch_loss(loss_type: LossType, hyperparameters: dict[str, Any], policy: torch.Tensor,
                       reference: torch.Tensor | None, batch: Batch, *,
                       kl_estimate: torch.Tensor | None = None) -> LossOutput:
    """The loss of one micro-batch from its rows' log-probs (see batches.py for the row layout)."""
    b = batch.size
    if loss_type.row_layout is RowLayout.UNPAIRED_KL:
        if kl_estimate is None:
            kl_estimate = kto_kl_estimate(policy[b:], reference[b:])
        return compute_loss(loss_type, policy[:b], reference[:b], batch.labels, kl_estimate=kl_estimate,
                            **hyperparameters)
    if loss_type.row_layout is RowLayout.CHOSEN_ONLY:
        return compute_loss(loss_type, policy[:b], chosen_lengths=batch.lengths[:b], **hyperparameters)
    ref_chosen, ref_rejected = (None, None) if reference is None else (reference[:b], reference[b:])
    return compute_loss(loss_type, policy[:b], policy[b:], ref_chosen, ref_rejected,
                        chosen_lengths=batch.lengths[:b], rejected_lengths=batch.lengths[b:], **hyperparameters)


def _add(sums: Sums, name: str, values: torch.Tensor) -> None:
    values = values.detach().float()
    total, count = sums.get(name, (0.0, 0.0))
    sums[name] = (total + float(values.sum()), count + values.numel())


def batch_metrics(loss_type: LossType, out: LossOutput, policy: torch.Tensor, reference: torch.Tensor | None,
                  batch: Batch) -> Sums:
    b = batch.size
    sums: Sums = {}
    _add(sums, "loss", out.losses)
    _add(sums, "rewards/chosen", out.chosen_rewards)
    _add(sums, "rewards/rejected", out.rejected_rewards)
    if loss_type.paired:  # rows [b:2b] are the rejected completions
        margins = out.chosen_rewards - out.rejected_rewards
        _add(sums, "rewards/margins", margins)
        _add(sums, "rewards/accuracies", (margins > 0).float())
        _add(sums, "logps/rejected", policy[b:2 * b])
    _add(sums, "logps/chosen", policy[:b])
    if reference is not None:
        lengths = batch.lengths.clamp(min=1)
        _add(sums, "logps/chosen_shift", (policy[:b] - reference[:b]) / lengths[:b])
        _add(sums, "kl/estimate", (policy - reference) / lengths)
    return sums


def merge_sums(into: Sums, sums: Sums) -> None:
    for name, (total, count) in sums.items():
        t, c = into.get(name, (0.0, 0.0))
        into[name] = (t + total, c + count)


def means(sums: Sums) -> dict[str, float]:
    return {name: total / count for name, (total, count) in sums.items() if count}
