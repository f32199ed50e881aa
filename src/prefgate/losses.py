"""The DPO family as pure functions over per-example log-probabilities.

Every loss here maps per-example log-probabilities to a `LossOutput` of per-example losses and detached
rewards. Nothing here sees a model, a tokenizer or a batch dict, so each formula is tested with
hand-derived numbers and against TRL (tests/test_losses.py); the loop reduces over the batch.

Vocabulary (the same in every docstring below):

- ``policy_chosen_logps`` = log pi_theta(y_w | x) summed over the completion tokens of y_w, shape
  ``(batch,)``; likewise ``policy_rejected_logps`` (y_l) and ``reference_*_logps`` under pi_ref.
- ``chosen_logratios = policy_chosen_logps - reference_chosen_logps``; likewise ``rejected_logratios``.
- ``h = chosen_logratios - rejected_logratios``, the DPO margin.
- ``chosen_lengths`` = |y_w|, the number of completion tokens the chosen log-prob is summed over
  (padding and prompt excluded), shape ``(batch,)``, any numeric dtype; likewise ``rejected_lengths``.
  Losses that need them say so and raise ``ValueError`` when they are missing. Where a length divides,
  it is clamped at 1, so a fully masked row (log-prob 0, length 0) gives 0, never NaN.
- Mean per-token log-prob: ``policy_chosen_logps / chosen_lengths``. The per-token NLL of the chosen
  completion is its negative, ``-policy_chosen_logps / chosen_lengths``: ORPO, RPO and SFT use exactly
  this, so they need per-example sums and lengths only, never per-token log-probs.

Precision: inputs are upcast to float32 before any arithmetic (float64 stays float64), so bfloat16 or
float16 log-probs give float32 losses and rewards.

Which loss runs is a `LossType`: a closed enum whose properties (`row_layout`, `paired`, `needs_reference`,
`length_normalized`, `needs_lengths`, `needs_chosen_nll`, `defaults`, `fn`) tell the loop what to
compute, so it never branches on names; `compute_loss` calls the right function. `row_layout` is a
`RowLayout`, the rows of each example the loss consumes: `PAIR` (chosen and rejected), `CHOSEN_ONLY`
(SFT) or `UNPAIRED_KL` (KTO: the completion and a mismatched one for the KL estimate); `paired` is
`row_layout is RowLayout.PAIR`.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from enum import Enum
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LossOutput",
    "LossType",
    "RowLayout",
    "cdpo",
    "compute_loss",
    "dpo",
    "dpop",
    "hinge",
    "ipo",
    "kto",
    "kto_kl_estimate",
    "orpo",
    "rdpo",
    "robust",
    "rpo",
    "sft",
    "simpo",
]


class LossOutput(NamedTuple):
    """What every loss returns; unpacks like the peers' `(losses, chosen_rewards, rejected_rewards)`."""

    losses: Tensor  # (batch,) per example, differentiable; the loop reduces
    chosen_rewards: Tensor  # (batch,) detached implicit reward of y_w (KTO: of the desirable examples)
    rejected_rewards: Tensor  # (batch,) detached implicit reward of y_l (KTO: of the undesirable examples)


# --------------------------------------------------------------------------------------------------
# Shared helpers: validation, upcasting, the quantities every loss is written in.
# --------------------------------------------------------------------------------------------------

_POLICY = ("policy_chosen_logps", "policy_rejected_logps")
_REFERENCE = ("reference_chosen_logps", "reference_rejected_logps")
_LENGTHS = ("chosen_lengths", "rejected_lengths")
_WHY = {
    "reference_chosen_logps": "this loss needs a reference model",
    "reference_rejected_logps": "this loss needs a reference model",
    "chosen_lengths": "the number of completion tokens per example, shape (batch,)",
    "rejected_lengths": "the number of completion tokens per example, shape (batch,)",
}


def _check_shapes(loss: str, tensors: dict[str, Tensor]) -> None:
    """Every input is a tensor of shape (batch,) with the same batch; raise a ValueError naming it."""
    first_name, first = next(iter(tensors.items()))
    for name, tensor in tensors.items():
        if not isinstance(tensor, Tensor):
            raise ValueError(f"{loss}: `{name}` must be a torch.Tensor of shape (batch,), got {type(tensor)}")
        if tensor.dim() != 1:
            raise ValueError(f"{loss}: `{name}` must have shape (batch,), got {tuple(tensor.shape)}")
        if tensor.shape != first.shape:
            raise ValueError(
                f"{loss}: `{name}` has shape {tuple(tensor.shape)} but `{first_name}` has "
                f"{tuple(first.shape)}; every input holds one value per example"
            )


def _compute_dtype(tensors: list[Tensor]) -> torch.dtype:
    """float64 if any log-prob is float64, else float32 (bfloat16 and float16 are upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


@dataclass(frozen=True)
class _Pair:
    """A validated, upcast paired batch; fields a loss did not ask for may be None."""

    policy_chosen_logps: Tensor
    policy_rejected_logps: Tensor | None
    reference_chosen_logps: Tensor | None
    reference_rejected_logps: Tensor | None
    chosen_lengths: Tensor | None
    rejected_lengths: Tensor | None

    @property
    def chosen_logratios(self) -> Tensor:
        return self.policy_chosen_logps - self.reference_chosen_logps

    @property
    def rejected_logratios(self) -> Tensor:
        return self.policy_rejected_logps - self.reference_rejected_logps

    @property
    def margin(self) -> Tensor:
        """h = chosen_logratios - rejected_logratios."""
        return self.chosen_logratios - self.rejected_logratios

    @property
    def chosen_mean_logps(self) -> Tensor:
        """Mean per-token log-prob of y_w; its negative is the per-token NLL."""
        return self.policy_chosen_logps / self.chosen_lengths.clamp(min=1)

    @property
    def rejected_mean_logps(self) -> Tensor:
        return self.policy_rejected_logps / self.rejected_lengths.clamp(min=1)


def _pair(loss: str, needs: tuple[str, ...], *values: Tensor | None) -> _Pair:
    """Check that `needs` are present and every given input has shape (batch,); upcast all of them."""
    tensors = dict(zip(_POLICY + _REFERENCE + _LENGTHS, values, strict=True))
    for name in needs:
        if tensors[name] is None:
            raise ValueError(f"{loss}: `{name}` is required ({_WHY.get(name, 'shape (batch,)')}), got None")
    given = {name: t for name, t in tensors.items() if t is not None}
    _check_shapes(loss, given)
    dtype = _compute_dtype([t for name, t in given.items() if name.endswith("_logps")])
    device = tensors["policy_chosen_logps"].device
    upcast = {name: None if t is None else t.to(device=device, dtype=dtype) for name, t in tensors.items()}
    return _Pair(**upcast)


def _check_range(loss: str, name: str, value: float, low: float, high: float = math.inf, *, open_high=False):
    inside = low <= value < high if open_high else low <= value <= high
    if not inside:
        bracket = ")" if open_high else "]"
        raise ValueError(f"{loss}: `{name}` must be in [{low}, {high}{bracket}, got {value}")


def _check_beta(loss: str, beta: float) -> None:
    if not beta > 0:
        raise ValueError(f"{loss}: `beta` must be > 0, got {beta}")


def _output(losses: Tensor, chosen_rewards: Tensor, rejected_rewards: Tensor) -> LossOutput:
    return LossOutput(losses, chosen_rewards.detach(), rejected_rewards.detach())


def _reference_rewards(pair: _Pair, beta: float) -> tuple[Tensor, Tensor]:
    """The DPO implicit rewards beta * logratios (Rafailov et al. 2023, Eq. 5), as TRL logs them."""
    return beta * pair.chosen_logratios, beta * pair.rejected_logratios


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, without cancellation on either side of -log 2 (Maechler 2012)."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


# A mean per-token log-prob of exactly 0 (probability 1, or a fully masked row) has infinite odds;
# clamp just below it so the ORPO log-odds stay finite (about 13.8 in float32).
_MAX_MEAN_LOGP = -1e-6


def _log_odds(mean_logps: Tensor) -> Tensor:
    """log(p / (1 - p)) for p = exp(mean per-token log-prob) (Hong et al. 2024, Eq. 4)."""
    mean_logps = mean_logps.clamp(max=_MAX_MEAN_LOGP)
    return mean_logps - _log1mexp(mean_logps)


# --------------------------------------------------------------------------------------------------
# Paired losses: (policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
# reference_rejected_logps, *, beta, <own hyperparameters>, chosen_lengths=None, rejected_lengths=None)
# --------------------------------------------------------------------------------------------------


def dpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> LossOutput:
    """DPO: ``-log sigmoid(beta * h)``.

    Rafailov et al. 2023, "Direct Preference Optimization", Eq. 7.
    Shapes: every input ``(batch,)``; ``losses``, ``chosen_rewards = beta * chosen_logratios`` and
    ``rejected_rewards = beta * rejected_logratios`` are ``(batch,)``. Lengths are accepted and unused.
    Default: ``beta=0.1``.
    """
    _check_beta("dpo", beta)
    pair = _pair("dpo", _POLICY + _REFERENCE, policy_chosen_logps, policy_rejected_logps,
                 reference_chosen_logps, reference_rejected_logps, chosen_lengths, rejected_lengths)
    return _output(-F.logsigmoid(beta * pair.margin), *_reference_rewards(pair, beta))


def dpop(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    lam: float = 50.0,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> LossOutput:
    """DPO-Positive: ``-log sigmoid(beta * (h - lam * max(0, reference_chosen - policy_chosen)))``.

    ``reference_chosen`` and ``policy_chosen`` are ``reference_chosen_logps`` and ``policy_chosen_logps``.

    Pal et al. 2024, "Smaug: Fixing Failure Modes of Preference Optimisation with DPO-Positive", Eq. 3.
    The penalty sits inside the sigmoid and is scaled by beta, as in Eq. 3; adding
    ``lam * max(0, ...)`` outside the log-sigmoid, as some public code does, is a different objective.
    While the policy keeps y_w at least as likely as the reference does, the loss is exactly DPO; once
    it falls below, the gradient pushing y_w up grows by a factor (1 + lam) and the sigmoid saturates less.
    Shapes: every input ``(batch,)``; outputs ``(batch,)``; rewards as in `dpo`.
    Defaults: ``beta=0.1``, ``lam=50`` (the paper's lambda).
    """
    _check_beta("dpop", beta)
    _check_range("dpop", "lam", lam, 0.0)
    pair = _pair("dpop", _POLICY + _REFERENCE, policy_chosen_logps, policy_rejected_logps,
                 reference_chosen_logps, reference_rejected_logps, chosen_lengths, rejected_lengths)
    penalty = F.relu(pair.reference_chosen_logps - pair.policy_chosen_logps)
    return _output(-F.logsigmoid(beta * (pair.margin - lam * penalty)), *_reference_rewards(pair, beta))


def ipo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    length_normalize: bool = True,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> LossOutput:
    """IPO: ``(h' - 1 / (2 * beta)) ** 2``.

    Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences",
    Eq. 17 (beta is the paper's tau). With ``length_normalize=True`` (the default, as TRL does and
    documents, confirmed with the IPO authors) ``h' = chosen_logratios / chosen_lengths -
    rejected_logratios / rejected_lengths``, and both lengths are required; with ``False``, ``h' = h``
    (the unnormalised form, as OpenRLHF and TRL's CPO trainer compute it).
    Shapes: every input ``(batch,)``; outputs ``(batch,)``; rewards as in `dpo` (unnormalised).
    Defaults: ``beta=0.1``, ``length_normalize=True``.
    """
    _check_beta("ipo", beta)
    needs = _POLICY + _REFERENCE + (_LENGTHS if length_normalize else ())
    pair = _pair("ipo", needs, policy_chosen_logps, policy_rejected_logps,
                 reference_chosen_logps, reference_rejected_logps, chosen_lengths, rejected_lengths)
    if length_normalize:
        margin = (pair.chosen_logratios / pair.chosen_lengths.clamp(min=1)
                  - pair.rejected_logratios / pair.rejected_lengths.clamp(min=1))
    else:
        margin = pair.margin
    return _output((margin - 1 / (2 * beta)) ** 2, *_reference_rewards(pair, beta))


def cdpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    eps: float = 0.1,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> LossOutput:
    """Conservative DPO: ``-(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)``.

    Mitchell 2023, "A note on DPO with noisy preferences & relationship to IPO", Eq. 3: DPO with labels
    flipped with probability eps (label smoothing). ``eps=0`` is exactly `dpo`. ``eps`` in [0, 0.5].
    Shapes: every input ``(batch,)``; outputs ``(batch,)``; rewards as in `dpo`.
    Defaults: ``beta=0.1``, ``eps=0.1``.
    """
    _check_beta("cdpo", beta)
    _check_range("cdpo", "eps", eps, 0.0, 0.5)
    pair = _pair("cdpo", _POLICY + _REFERENCE, policy_chosen_logps, policy_rejected_logps,
                 reference_chosen_logps, reference_rejected_logps, chosen_lengths, rejected_lengths)
    logits = beta * pair.margin
    losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    return _output(losses, *_reference_rewards(pair, beta))


def robust(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    eps: float = 0.1,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> LossOutput:
    """Robust DPO: ``(-(1 - eps) * log sigmoid(beta * h) + eps * log sigmoid(-beta * h)) / (1 - 2 * eps)``.

    Chowdhury, Kini & Natarajan 2024, "Provably Robust DPO: Aligning Language Models with Noisy
    Feedback", the de-biased rDPO loss (an unbiased estimate of the clean-label DPO loss when labels
    flip with probability eps). Unlike cDPO the eps-term enters with a plus sign, so a single example's
    loss can be negative. ``eps`` in [0, 0.5); ``eps=0`` is exactly `dpo`.
    Shapes: every input ``(batch,)``; outputs ``(batch,)``; rewards as in `dpo`.
    Defaults: ``beta=0.1``, ``eps=0.1`` (the typical value TRL's docs quote from the paper).
    """
    _check_beta("robust", beta)
    _check_range("robust", "eps", eps, 0.0, 0.5, open_high=True)
    pair = _pair("robust", _POLICY + _REFERENCE, policy_chosen_logps, policy_rejected_logps,
                 reference_chosen_logps, reference_rejected_logps, chosen_lengths, rejected_lengths)
    logits = beta * pair.margin
    losses = (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)
    return _output(losses, *_reference_rewards(pair, beta))


def hinge(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> LossOutput:
    """Hinge (SLiC / RSO): ``relu(1 - beta * h)``.

    Zhao et al. 2023, "SLiC-HF", the calibration loss ``max(0, delta - log pi(y_w) + log pi(y_l))`` (here
    delta = 1/beta, up to the scale beta), in the reference-normalised "hinge" form of Liu et al. 2023,
    "Statistical Rejection Sampling Improves Preference Optimization" (RSO), as TRL and torchtune
    implement it. (No equation number: checked against TRL and torchtune, not against the paper's text.)
    Shapes: every input ``(batch,)``; outputs ``(batch,)``; rewards as in `dpo`.
    Default: ``beta=0.1``.
    """
    _check_beta("hinge", beta)
    pair = _pair("hinge", _POLICY + _REFERENCE, policy_chosen_logps, policy_rejected_logps,
                 reference_chosen_logps, reference_rejected_logps, chosen_lengths, rejected_lengths)
    return _output(F.relu(1 - beta * pair.margin), *_reference_rewards(pair, beta))


def simpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None = None,  # noqa: ARG001 - the paired signature
    reference_rejected_logps: Tensor | None = None,  # noqa: ARG001 - the paired signature
    *,
    beta: float = 2.0,
    gamma: float = 1.0,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> LossOutput:
    """SimPO: ``-log sigmoid(beta / |y_w| * log pi(y_w) - beta / |y_l| * log pi(y_l) - gamma)``.

    Meng, Xia & Chen 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward", Eq. 6.
    Reference-free (reference arguments may be None and are ignored); needs both lengths.
    Shapes: every input ``(batch,)``; outputs ``(batch,)``; ``chosen_rewards = beta * policy_chosen_logps
    / chosen_lengths`` (the paper's reward, Eq. 4), likewise ``rejected_rewards``.
    Defaults: ``beta=2.0``, ``gamma=1.0`` (the paper's Llama-3-Base setting, gamma/beta = 0.5).
    """
    _check_beta("simpo", beta)
    pair = _pair("simpo", _POLICY + _LENGTHS, policy_chosen_logps, policy_rejected_logps,
                 None, None, chosen_lengths, rejected_lengths)
    chosen_rewards, rejected_rewards = beta * pair.chosen_mean_logps, beta * pair.rejected_mean_logps
    return _output(-F.logsigmoid(chosen_rewards - rejected_rewards - gamma), chosen_rewards, rejected_rewards)


def orpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None = None,  # noqa: ARG001 - the paired signature
    reference_rejected_logps: Tensor | None = None,  # noqa: ARG001 - the paired signature
    *,
    beta: float = 0.1,
    lam: float = 0.1,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> LossOutput:
    """ORPO: ``NLL(y_w) - lam * log sigmoid(log odds(y_w) - log odds(y_l))``.

    Hong, Lee & Thorne 2024, "ORPO: Monolithic Preference Optimization without Reference Model",
    Eq. 6 (objective) with Eq. 7 (the odds-ratio term) and Eq. 4 (odds). Here ``NLL(y_w) =
    -policy_chosen_logps / chosen_lengths`` (per-token, completion tokens only) and ``odds(y) = p / (1 - p)``
    with ``p = exp(policy_logps / lengths)``, the mean per-token probability. Reference-free (reference
    arguments may be None and are ignored); needs both lengths. A mean log-prob of 0 (a fully masked
    row) is clamped to -1e-6 so the odds stay finite.
    Shapes: every input ``(batch,)``; outputs ``(batch,)``; ``chosen_rewards = beta * policy_chosen_logps /
    chosen_lengths``, likewise ``rejected_rewards`` (beta only scales these logged rewards, as in TRL).
    Defaults: ``beta=0.1``, ``lam=0.1`` (the paper's lambda; TRL's ORPOConfig calls it ``beta``).
    """
    _check_beta("orpo", beta)
    _check_range("orpo", "lam", lam, 0.0)
    pair = _pair("orpo", _POLICY + _LENGTHS, policy_chosen_logps, policy_rejected_logps,
                 None, None, chosen_lengths, rejected_lengths)
    log_odds_ratio = _log_odds(pair.chosen_mean_logps) - _log_odds(pair.rejected_mean_logps)
    losses = -pair.chosen_mean_logps - lam * F.logsigmoid(log_odds_ratio)
    return _output(losses, beta * pair.chosen_mean_logps, beta * pair.rejected_mean_logps)


def rdpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    alpha: float = 0.01,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> LossOutput:
    """Length-regularised DPO: ``-log sigmoid(beta * h + alpha * (|y_w| - |y_l|))``, alpha >= 0.

    Park, Rafailov, Ermon & Finn 2024, "Disentangling Length from Quality in Direct Preference
    Optimization", the R-DPO objective (equation number not checked here).
    Sign, derived: R-DPO maximises ``E[r(x, y) - alpha * |y|] - beta * KL(pi || pi_ref)``, whose optimum
    gives ``r(x, y) = beta * log(pi / pi_ref) + alpha * |y| + beta * log Z(x)``; the Bradley-Terry
    likelihood ``sigmoid(r(y_w) - r(y_l))`` is then ``sigmoid(beta * h + alpha * (|y_w| - |y_l|))``: a
    plus sign, with alpha > 0 penalising length. A longer chosen answer thus has part of its margin
    "explained" by length, its loss is smaller and the policy is pushed less toward length. SimPO's
    table of objectives (Meng et al. 2024) writes R-DPO with the same sign.
    ``alpha=0`` is `dpo`.
    Needs both lengths (raw token counts; nothing is divided).
    Shapes: every input ``(batch,)``; outputs ``(batch,)``; rewards as in `dpo`.
    Defaults: ``beta=0.1``, ``alpha=0.01`` (the paper tunes alpha per dataset; no canonical value).
    """
    _check_beta("rdpo", beta)
    _check_range("rdpo", "alpha", alpha, 0.0)
    pair = _pair("rdpo", _POLICY + _REFERENCE + _LENGTHS, policy_chosen_logps, policy_rejected_logps,
                 reference_chosen_logps, reference_rejected_logps, chosen_lengths, rejected_lengths)
    logits = beta * pair.margin + alpha * (pair.chosen_lengths - pair.rejected_lengths)
    return _output(-F.logsigmoid(logits), *_reference_rewards(pair, beta))


def rpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    alpha: float = 1.0,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> LossOutput:
    """RPO (DPO + NLL): ``-log sigmoid(beta * h) + alpha * (-policy_chosen_logps / chosen_lengths)``.

    Pang et al. 2024, "Iterative Reasoning Preference Optimization", the DPO+NLL loss. The NLL of y_w is
    normalised per completion token, as TRL's ``sft`` term is. Needs ``chosen_lengths``; ``alpha=0`` is
    `dpo`.
    Shapes: every input ``(batch,)``; outputs ``(batch,)``; rewards as in `dpo`.
    Defaults: ``beta=0.1``, ``alpha=1.0`` (the paper's weight).
    """
    _check_beta("rpo", beta)
    _check_range("rpo", "alpha", alpha, 0.0)
    needs = _POLICY + _REFERENCE + ("chosen_lengths",)
    pair = _pair("rpo", needs, policy_chosen_logps, policy_rejected_logps,
                 reference_chosen_logps, reference_rejected_logps, chosen_lengths, rejected_lengths)
    losses = -F.logsigmoid(beta * pair.margin) - alpha * pair.chosen_mean_logps
    return _output(losses, *_reference_rewards(pair, beta))


def sft(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor | None = None,
    reference_chosen_logps: Tensor | None = None,  # noqa: ARG001 - the paired signature
    reference_rejected_logps: Tensor | None = None,  # noqa: ARG001 - the paired signature
    *,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> LossOutput:
    """SFT on the chosen completion: ``-policy_chosen_logps / chosen_lengths``, its per-token NLL.

    Needs per-example summed log-probs and ``chosen_lengths`` (not per-token log-probs). The loop's mean
    over examples then weights each example equally (a mean of per-example token means); TRL's
    ``loss_type="sft"`` instead averages over all tokens of the batch, which is the same only when the
    lengths are equal. Every argument but ``policy_chosen_logps`` and ``chosen_lengths`` may be None;
    the reference log-probs are ignored.
    Shapes: inputs ``(batch,)``; ``losses`` ``(batch,)``; ``chosen_rewards`` is the detached mean per-token
    log-prob of y_w; ``rejected_rewards`` that of y_l when its log-probs and lengths are given, else zeros.
    No hyperparameters.
    """
    pair = _pair("sft", ("policy_chosen_logps", "chosen_lengths"), policy_chosen_logps, policy_rejected_logps,
                 None, None, chosen_lengths, rejected_lengths)
    has_rejected = pair.policy_rejected_logps is not None and pair.rejected_lengths is not None
    rejected_rewards = pair.rejected_mean_logps if has_rejected else torch.zeros_like(pair.chosen_mean_logps)
    return _output(-pair.chosen_mean_logps, pair.chosen_mean_logps, rejected_rewards)


# --------------------------------------------------------------------------------------------------
# Unpaired: KTO.
# --------------------------------------------------------------------------------------------------


def kto_kl_estimate(policy_kl_logps: Tensor, reference_kl_logps: Tensor) -> Tensor:
    """The KTO reference point z0: ``max(0, mean(policy_kl_logps - reference_kl_logps))``, detached.

    Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization": z0
    estimates KL(pi_theta || pi_ref) from mismatched pairs, the log-probs of completion y_j given an
    unrelated prompt x_i (TRL pairs each prompt with the next example's completion). It carries no
    gradient. On several processes, call it on the gathered log-probs so every rank uses the same z0.
    Shapes: both inputs ``(n_pairs,)`` with ``n_pairs >= 1``; returns a 0-dim float32 (float64 for
    float64 input) tensor.
    """
    inputs = {"policy_kl_logps": policy_kl_logps, "reference_kl_logps": reference_kl_logps}
    _check_shapes("kto_kl_estimate", inputs)
    if policy_kl_logps.numel() == 0:
        raise ValueError("kto_kl_estimate: needs at least one mismatched pair, got an empty batch")
    dtype = _compute_dtype([policy_kl_logps, reference_kl_logps])
    kl = policy_kl_logps.detach().to(dtype) - reference_kl_logps.detach().to(policy_kl_logps.device, dtype)
    return kl.mean().clamp(min=0)


def kto(
    policy_logps: Tensor,
    reference_logps: Tensor,
    labels: Tensor,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    kl_estimate: Tensor | float,
) -> LossOutput:
    """KTO, per example: desirable ``lambda_D * (1 - sigmoid(beta * (r - z0)))``, undesirable
    ``lambda_U * (1 - sigmoid(beta * (z0 - r)))``, with ``r = policy_logps - reference_logps``.

    Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization", Eq. 7 (the loss
    ``lambda_y - v(x, y)``). ``z0 = kl_estimate``, detached here and clamped at 0; compute it with
    `kto_kl_estimate`. ``labels`` is True (or 1) for a desirable completion.
    Shapes: ``policy_logps``, ``reference_logps``, ``labels`` are ``(batch,)``; ``kl_estimate`` has one
    element. ``losses`` is ``(batch,)`` in input order; ``chosen_rewards = beta * r`` of the desirable
    examples ``(n_desirable,)`` and ``rejected_rewards`` of the undesirable ones ``(n_undesirable,)``.
    Defaults: ``beta=0.1``, ``desirable_weight=1.0``, ``undesirable_weight=1.0``; ``kl_estimate`` has none.
    """
    _check_beta("kto", beta)
    _check_range("kto", "desirable_weight", desirable_weight, 0.0)
    _check_range("kto", "undesirable_weight", undesirable_weight, 0.0)
    _check_shapes("kto", {"policy_logps": policy_logps, "reference_logps": reference_logps, "labels": labels})
    dtype, device = _compute_dtype([policy_logps, reference_logps]), policy_logps.device
    z0 = torch.as_tensor(kl_estimate, device=device).detach().to(dtype).clamp(min=0)
    if z0.numel() != 1:
        raise ValueError(f"kto: `kl_estimate` must hold one value, got shape {tuple(z0.shape)}")
    logratios = policy_logps.to(dtype) - reference_logps.to(device, dtype)
    desirable = labels.to(device=device, dtype=torch.bool)
    z0 = z0.reshape(())
    # 1 - sigmoid(x) is written sigmoid(-x): equal, and exact where sigmoid(x) rounds to 1.
    losses = torch.where(
        desirable,
        desirable_weight * torch.sigmoid(-beta * (logratios - z0)),
        undesirable_weight * torch.sigmoid(-beta * (z0 - logratios)),
    )
    rewards = beta * logratios.detach()
    return LossOutput(losses, rewards[desirable], rewards[~desirable])


# --------------------------------------------------------------------------------------------------
# The closed set of loss types, with what each needs from the loop.
# --------------------------------------------------------------------------------------------------


class RowLayout(str, Enum):
    """The rows of each example a loss consumes; the loop lays out batches and reads log-probs by it."""

    PAIR = "pair"  # the chosen and the rejected completion; the paired signature
    CHOSEN_ONLY = "chosen_only"  # the chosen completion only (a paired record's, or an unpaired desirable one)
    UNPAIRED_KL = "unpaired_kl"  # one labelled completion, plus a mismatched one for the KL estimate (KTO)


class LossType(str, Enum):
    """Every loss prefgate can train with; the values are the config names."""

    DPO = "dpo"
    DPOP = "dpop"
    IPO = "ipo"
    CDPO = "cdpo"
    ROBUST = "robust"
    HINGE = "hinge"
    SIMPO = "simpo"
    ORPO = "orpo"
    RDPO = "rdpo"
    RPO = "rpo"
    KTO = "kto"
    SFT = "sft"

    @classmethod
    def parse(cls, name: LossType | str) -> LossType:
        """`LossType` from a config name, with a ValueError that lists the valid names."""
        try:
            return cls(name)
        except ValueError:
            valid = ", ".join(member.value for member in cls)
            raise ValueError(f"unknown loss type {name!r}; expected one of: {valid}") from None

    @property
    def fn(self) -> Callable[..., LossOutput]:
        """The pure function computing this loss."""
        return _SPECS[self].fn

    @property
    def needs_reference(self) -> bool:
        """The loop must provide reference log-probs (a reference model or a cache)."""
        return _SPECS[self].needs_reference

    @property
    def row_layout(self) -> RowLayout:
        """The rows of each example the loss consumes (see `RowLayout`)."""
        return _SPECS[self].row_layout

    @property
    def paired(self) -> bool:
        """Consumes (chosen, rejected) pairs: `row_layout is RowLayout.PAIR` (not SFT, not KTO)."""
        return self.row_layout is RowLayout.PAIR

    @property
    def length_normalized(self) -> bool:
        """Some term divides a log-prob by its completion length (at the default hyperparameters)."""
        return _SPECS[self].length_normalized

    @property
    def needs_lengths(self) -> bool:
        """The loop must pass `chosen_lengths` (and `rejected_lengths` where the loss compares both)."""
        return _SPECS[self].needs_lengths

    @property
    def needs_chosen_nll(self) -> bool:
        """The loss contains the per-token NLL of the chosen completion (logged as `nll_loss`)."""
        return _SPECS[self].needs_chosen_nll

    @property
    def defaults(self) -> dict[str, Any]:
        """The default hyperparameters, read from the function's signature: the one place they live."""
        return dict(_hyperparameters(self.fn))


_BATCH_KEYWORDS = frozenset({"chosen_lengths", "rejected_lengths", "kl_estimate"})


@functools.cache
def _hyperparameters(fn: Callable[..., LossOutput]) -> tuple[tuple[str, Any], ...]:
    parameters = inspect.signature(fn).parameters.values()
    keyword_only = [p for p in parameters if p.kind is p.KEYWORD_ONLY and p.name not in _BATCH_KEYWORDS]
    return tuple((p.name, p.default) for p in keyword_only)


@dataclass(frozen=True)
class _Spec:
    """One row of the capability table; a flag left out is False."""

    fn: Callable[..., LossOutput]
    row_layout: RowLayout
    _: KW_ONLY
    needs_reference: bool = False
    length_normalized: bool = False
    needs_lengths: bool = False
    needs_chosen_nll: bool = False


_SPECS: dict[LossType, _Spec] = {
    LossType.DPO: _Spec(dpo, RowLayout.PAIR, needs_reference=True),
    LossType.DPOP: _Spec(dpop, RowLayout.PAIR, needs_reference=True),
    LossType.IPO: _Spec(ipo, RowLayout.PAIR, needs_reference=True, length_normalized=True, needs_lengths=True),
    LossType.CDPO: _Spec(cdpo, RowLayout.PAIR, needs_reference=True),
    LossType.ROBUST: _Spec(robust, RowLayout.PAIR, needs_reference=True),
    LossType.HINGE: _Spec(hinge, RowLayout.PAIR, needs_reference=True),
    LossType.SIMPO: _Spec(simpo, RowLayout.PAIR, length_normalized=True, needs_lengths=True),
    LossType.ORPO: _Spec(orpo, RowLayout.PAIR, length_normalized=True, needs_lengths=True, needs_chosen_nll=True),
    LossType.RDPO: _Spec(rdpo, RowLayout.PAIR, needs_reference=True, needs_lengths=True),
    LossType.RPO: _Spec(rpo, RowLayout.PAIR, needs_reference=True, length_normalized=True, needs_lengths=True,
                        needs_chosen_nll=True),
    LossType.KTO: _Spec(kto, RowLayout.UNPAIRED_KL, needs_reference=True),
    LossType.SFT: _Spec(sft, RowLayout.CHOSEN_ONLY, length_normalized=True, needs_lengths=True, needs_chosen_nll=True),
}


def compute_loss(loss_type: LossType | str, *logps: Tensor | None, **kwargs: Any) -> LossOutput:
    """Call the function of `loss_type` with the batch log-probs and keyword arguments.

    Losses of `RowLayout.PAIR` take ``(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
    reference_rejected_logps)`` positionally, and so does SFT (`CHOSEN_ONLY`), which needs only the first;
    KTO (`UNPAIRED_KL`) takes ``(policy_logps, reference_logps, labels)``. Keyword arguments are the loss's
    hyperparameters (``loss_type.defaults`` lists them; missing ones take their defaults) plus
    ``chosen_lengths``/``rejected_lengths`` or ``kl_estimate``. Any other keyword is a ValueError, never
    silently dropped: pass ``{k: config[k] for k in loss_type.defaults}``.
    """
    loss_type = LossType.parse(loss_type)
    parameters = inspect.signature(loss_type.fn).parameters.values()
    allowed = {p.name for p in parameters if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"{loss_type.value}: unknown argument(s) {unknown}; it takes {sorted(allowed)}")
    return loss_type.fn(*logps, **kwargs)
