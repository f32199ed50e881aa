"""Tests for prefgate.losses: hand-derived values, equivalences, gradients, stability, shapes, TRL parity.

Notation as in the module: pc, pr, rc, rr are policy/reference chosen/rejected summed log-probs,
h = (pc - rc) - (pr - rr), lc and lr the completion lengths, s = log(1 + e^-1) = 0.31326168751822286
(so -log sigmoid(1) = s and -log sigmoid(-1) = log(1 + e) = 1 + s = 1.3132616875182228).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.kto_trainer import KTOTrainer

from prefgate import losses as L
from prefgate.losses import LossOutput, LossType, RowLayout, compute_loss

F64 = torch.float64
S = 0.31326168751822286  # log(1 + e^-1)
# Every loss called with the paired signature (pc, pr, rc, rr): the PAIR losses, and SFT, which takes it too.
PAIRED = [t for t in LossType if t.row_layout is not RowLayout.UNPAIRED_KL]


def t64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def assert_close(actual: torch.Tensor, expected, atol: float = 1e-6) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


# The fixed batch most hand-derived tests use: two examples, beta * h = +1 and -1 at beta = 0.5.
#   example 0: pc=-1, pr=-3, rc=-2, rr=-2 -> chosen_logratio=+1, rejected_logratio=-1, h=+2
#   example 1: pc=-4, pr=-2, rc=-3, rr=-3 -> chosen_logratio=-1, rejected_logratio=+1, h=-2
PC, PR, RC, RR = t64(-1, -4), t64(-3, -2), t64(-2, -3), t64(-2, -3)
LC, LR = t64(2, 4), t64(1, 2)


# --------------------------------------------------------------------------------------------------
# Hand-derived values, one test per loss.
# --------------------------------------------------------------------------------------------------


def test_dpo_hand_values():
    """beta = 0.5, so beta*h = [1, -1]:
    losses = [-log sig(1), -log sig(-1)] = [s, 1 + s] = [0.31326168751822286, 1.3132616875182228];
    chosen_rewards = beta*(pc - rc) = [0.5, -0.5]; rejected_rewards = beta*(pr - rr) = [-0.5, 0.5].
    """
    out = L.dpo(PC, PR, RC, RR, beta=0.5)
    assert isinstance(out, LossOutput)
    assert_close(out.losses, [0.31326168751822286, 1.3132616875182228])
    assert_close(out.chosen_rewards, [0.5, -0.5])
    assert_close(out.rejected_rewards, [-0.5, 0.5])


def test_dpop_hand_values():
    """beta = 0.5, lam = 2. Penalty max(0, rc - pc) = [max(0, -1), max(0, 1)] = [0, 1].
    example 0: no penalty, = DPO = s = 0.31326168751822286.
    example 1: beta*(h - lam*1) = 0.5*(-2 - 2) = -2 -> -log sig(-2) = log(1 + e^2) = 2.1269280110429727.
    (With the penalty outside the sigmoid, Eq. 3 misread, example 1 would be 1 + s + 2 = 3.3133.)
    """
    out = L.dpop(PC, PR, RC, RR, beta=0.5, lam=2.0)
    assert_close(out.losses, [0.31326168751822286, 2.1269280110429727])
    assert_close(out.chosen_rewards, [0.5, -0.5])


def test_ipo_hand_values_normalized_and_not():
    """beta = 0.5, target 1/(2*beta) = 1.
    Unnormalised: h = [2, -2] -> [(2 - 1)^2, (-2 - 1)^2] = [1, 9].
    Normalised, lc = [2, 4], lr = [1, 2]:
      example 0: h' = 1/2 - (-1)/1 = 1.5   -> (1.5 - 1)^2 = 0.25
      example 1: h' = -1/4 - 1/2 = -0.75   -> (-1.75)^2 = 3.0625
    """
    assert_close(L.ipo(PC, PR, RC, RR, beta=0.5, length_normalize=False).losses, [1.0, 9.0])
    out = L.ipo(PC, PR, RC, RR, beta=0.5, chosen_lengths=LC, rejected_lengths=LR)
    assert_close(out.losses, [0.25, 3.0625])
    assert_close(out.chosen_rewards, [0.5, -0.5])  # rewards stay the unnormalised beta * logratios


def test_cdpo_hand_values():
    """beta = 0.5, eps = 0.25, beta*h = [1, -1]:
    example 0: 0.75*s + 0.25*(1 + s) = s + 0.25 = 0.5632616875182228
    example 1: 0.75*(1 + s) + 0.25*s = s + 0.75 = 1.0632616875182228
    """
    out = L.cdpo(PC, PR, RC, RR, beta=0.5, eps=0.25)
    assert_close(out.losses, [0.5632616875182228, 1.0632616875182228])


def test_robust_hand_values():
    """beta = 0.5, eps = 0.25, 1 - 2*eps = 0.5, beta*h = [1, -1]:
    example 0: (0.75*s - 0.25*(1 + s)) / 0.5 = s - 0.5 = -0.18673831248177714 (negative: allowed)
    example 1: (0.75*(1 + s) - 0.25*s) / 0.5 = s + 1.5 = 1.8132616875182228
    """
    out = L.robust(PC, PR, RC, RR, beta=0.5, eps=0.25)
    assert_close(out.losses, [-0.18673831248177714, 1.8132616875182228])


def test_hinge_hand_values():
    """beta = 0.25, beta*h = [0.5, -0.5]: relu(1 - 0.5) = 0.5, relu(1 + 0.5) = 1.5.
    A margin past 1/beta costs nothing: pc=0, pr=-8, rc=rr=-4 gives h = 4 - (-4) = 8, relu(1 - 2) = 0.
    Rewards: beta*logratios = [0.25, -0.25] and [-0.25, 0.25].
    """
    out = L.hinge(PC, PR, RC, RR, beta=0.25)
    assert_close(out.losses, [0.5, 1.5])
    assert_close(out.chosen_rewards, [0.25, -0.25])
    assert_close(L.hinge(t64(0), t64(-8), t64(-4), t64(-4), beta=0.25).losses, [0.0])


def test_simpo_hand_values():
    """beta = 2, gamma = 0.5, lc = [2, 4], lr = [1, 2]; references unused (None).
    chosen_rewards = beta*pc/lc = [2*(-1/2), 2*(-4/4)] = [-1, -2]; rejected = beta*pr/lr = [-6, -2].
    example 0: -1 - (-6) - 0.5 = 4.5   -> log(1 + e^-4.5) = 0.011047744848593817
    example 1: -2 - (-2) - 0.5 = -0.5  -> log(1 + e^0.5)  = 0.9740769841801067
    """
    out = L.simpo(PC, PR, None, None, beta=2.0, gamma=0.5, chosen_lengths=LC, rejected_lengths=LR)
    assert_close(out.losses, [0.011047744848593817, 0.9740769841801067])
    assert_close(out.chosen_rewards, [-1.0, -2.0])
    assert_close(out.rejected_rewards, [-6.0, -2.0])


# ORPO / SFT batch: per-token probabilities chosen so the odds are simple.
#   example 0: y_w has 2 tokens, mean log-prob log(1/2) (p = 1/2, odds 1);
#              y_l has 3 tokens, mean log-prob log(1/5) (p = 1/5, odds 1/4)
#   example 1: y_w has 3 tokens, p = 1/3 (odds 1/2); y_l has 2 tokens, p = 1/2 (odds 1)
OPC, OLC = t64(2 * math.log(1 / 2), 3 * math.log(1 / 3)), t64(2, 3)
OPR, OLR = t64(3 * math.log(1 / 5), 2 * math.log(1 / 2)), t64(3, 2)


def test_orpo_hand_values():
    """lam = 0.5, beta = 0.1.
    example 0: NLL = -log(1/2) = log 2; log odds ratio = log(1 / (1/4)) = log 4; sig(log 4) = 4/5,
               -log(4/5) = log(5/4)  -> loss = log 2 + 0.5*log(5/4) = 0.8047189562170501
    example 1: NLL = log 3; log odds ratio = log((1/2) / 1) = -log 2; sig(-log 2) = 1/3,
               -log(1/3) = log 3     -> loss = log 3 + 0.5*log 3 = 1.6479184330021646
    chosen_rewards = beta * mean log-prob = [0.1*log(1/2), 0.1*log(1/3)].
    """
    out = L.orpo(OPC, OPR, lam=0.5, beta=0.1, chosen_lengths=OLC, rejected_lengths=OLR)
    assert_close(out.losses, [0.8047189562170501, 1.6479184330021646])
    assert_close(out.chosen_rewards, [0.1 * math.log(1 / 2), 0.1 * math.log(1 / 3)])
    assert_close(out.rejected_rewards, [0.1 * math.log(1 / 5), 0.1 * math.log(1 / 2)])


def test_sft_hand_values():
    """Per-token NLL of y_w = -pc/lc: [log 2, log 3] = [0.6931471805599453, 1.0986122886681098].
    chosen_rewards are the mean log-probs [-log 2, -log 3]; rejected ones [log(1/5), log(1/2)] when given,
    zeros when not.
    """
    out = L.sft(OPC, chosen_lengths=OLC)
    assert_close(out.losses, [0.6931471805599453, 1.0986122886681098])
    assert_close(out.chosen_rewards, [-0.6931471805599453, -1.0986122886681098])
    assert_close(out.rejected_rewards, [0.0, 0.0])
    paired = L.sft(OPC, OPR, chosen_lengths=OLC, rejected_lengths=OLR)
    assert_close(paired.rejected_rewards, [math.log(1 / 5), math.log(1 / 2)])


def test_rdpo_hand_values_and_sign():
    """beta = 0.5, alpha = 0.5, lc = [2, 4], lr = [1, 2]:
    example 0: beta*h + alpha*(lc - lr) = 1 + 0.5*1 = 1.5 -> log(1 + e^-1.5) = 0.2014132779827524
    example 1: -1 + 0.5*2 = 0                             -> log 2 = 0.6931471805599453
    Sign: with h = 0, a longer chosen (|y_w| - |y_l| = +1) gives log(1 + e^-0.5) < log 2, a shorter one
    log(1 + e^0.5) > log 2: the length bonus lowers the loss of long chosen answers, so DPO's pull toward
    length is damped.
    """
    out = L.rdpo(PC, PR, RC, RR, beta=0.5, alpha=0.5, chosen_lengths=LC, rejected_lengths=LR)
    assert_close(out.losses, [0.2014132779827524, 0.6931471805599453])
    zero = t64(0, 0)
    tie = L.rdpo(zero, zero, zero, zero, beta=0.5, alpha=0.5,
                 chosen_lengths=t64(3, 2), rejected_lengths=t64(2, 3))
    assert_close(tie.losses, [math.log1p(math.exp(-0.5)), math.log1p(math.exp(0.5))])


def test_rpo_hand_values():
    """beta = 0.5, alpha = 0.5, lc = [2, 4]: DPO + alpha * (-pc/lc)
    example 0: s + 0.5*(1/2) = s + 0.25 = 0.5632616875182228
    example 1: (1 + s) + 0.5*(4/4) = s + 1.5 = 1.8132616875182228
    """
    out = L.rpo(PC, PR, RC, RR, beta=0.5, alpha=0.5, chosen_lengths=LC)
    assert_close(out.losses, [0.5632616875182228, 1.8132616875182228])
    assert_close(out.chosen_rewards, [0.5, -0.5])


def test_kto_hand_values():
    """policy = [-1, -4, -2], reference = [-2, -3, -2] -> r = [1, -1, 0]; labels [desirable, undesirable,
    desirable]; beta = 0.5, lambda_D = 1, lambda_U = 2.
    kl_estimate = -1 is clamped to z0 = 0:
      [1 - sig(0.5*(1 - 0)), 2*(1 - sig(0.5*(0 + 1))), 1 - sig(0)] = [sig(-0.5), 2*sig(-0.5), 0.5]
      = [0.3775406687981454, 0.7550813375962908, 0.5]
    kl_estimate = 1 (z0 = 1):
      [1 - sig(0), 2*(1 - sig(0.5*(1 + 1))), 1 - sig(0.5*(0 - 1))] = [0.5, 2*sig(-1), sig(0.5)]
      = [0.5, 0.5378828427399902, 0.6224593312018546]
    chosen_rewards = beta*r of desirable = [0.5, 0]; rejected_rewards = [-0.5].
    """
    policy, reference, labels = t64(-1, -4, -2), t64(-2, -3, -2), torch.tensor([True, False, True])
    out = L.kto(policy, reference, labels, beta=0.5, undesirable_weight=2.0, kl_estimate=-1.0)
    assert_close(out.losses, [0.3775406687981454, 0.7550813375962908, 0.5])
    assert_close(out.chosen_rewards, [0.5, 0.0])
    assert_close(out.rejected_rewards, [-0.5])
    out = L.kto(policy, reference, torch.tensor([1, 0, 1]), beta=0.5, undesirable_weight=2.0,
                kl_estimate=torch.tensor(1.0))
    assert_close(out.losses, [0.5, 0.5378828427399902, 0.6224593312018546])


def test_kto_kl_estimate_hand_values():
    """mean([-1 - (-2), -2 - (-2)]) = mean([1, 0]) = 0.5; mean([-1, -2]) = -1.5 clamps to 0."""
    assert_close(L.kto_kl_estimate(t64(-1, -2), t64(-2, -2)), 0.5)
    assert_close(L.kto_kl_estimate(t64(-3, -4), t64(-2, -2)), 0.0)
    assert L.kto_kl_estimate(t64(-1), t64(-2)).shape == ()


# --------------------------------------------------------------------------------------------------
# Equivalences on random inputs.
# --------------------------------------------------------------------------------------------------


def random_batch(n: int = 16, seed: int = 0, dtype=F64) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 40, (2, n), generator=gen).to(dtype)
    logps = -torch.rand(4, n, generator=gen, dtype=dtype) * lengths.repeat(2, 1) * 2
    return {
        "policy_chosen_logps": logps[0], "policy_rejected_logps": logps[1],
        "reference_chosen_logps": logps[2], "reference_rejected_logps": logps[3],
        "chosen_lengths": lengths[0], "rejected_lengths": lengths[1],
    }


def call(fn, batch: dict[str, torch.Tensor], **hyper) -> LossOutput:
    logps = [batch[k] for k in ("policy_chosen_logps", "policy_rejected_logps",
                                "reference_chosen_logps", "reference_rejected_logps")]
    lengths = {"chosen_lengths": batch["chosen_lengths"], "rejected_lengths": batch["rejected_lengths"]}
    return fn(*logps, **lengths, **hyper)


@pytest.mark.parametrize(
    ("fn", "hyper"),
    [(L.cdpo, {"eps": 0.0}), (L.robust, {"eps": 0.0}), (L.rpo, {"alpha": 0.0}), (L.rdpo, {"alpha": 0.0})],
    ids=["cdpo-eps0", "robust-eps0", "rpo-alpha0", "rdpo-alpha0"],
)
def test_reduces_to_dpo(fn, hyper):
    batch = random_batch()
    expected = call(L.dpo, batch, beta=0.3)
    actual = call(fn, batch, beta=0.3, **hyper)
    for got, want in zip(actual, expected, strict=True):
        assert_close(got, want, atol=1e-12)


def test_dpop_equals_dpo_when_policy_chosen_not_below_reference():
    """max(0, rc - pc) = 0 whenever pc >= rc (equality included), so the loss and its gradient are DPO's."""
    batch = random_batch()
    batch["reference_chosen_logps"] = batch["policy_chosen_logps"] - torch.rand(16, dtype=F64)
    batch["reference_chosen_logps"][:3] = batch["policy_chosen_logps"][:3]
    dpop, dpo = call(L.dpop, batch, beta=0.3, lam=50.0), call(L.dpo, batch, beta=0.3)
    assert_close(dpop.losses, dpo.losses, atol=1e-12)


def test_ipo_normalized_with_unit_lengths_is_unnormalized():
    batch = random_batch()
    batch["chosen_lengths"] = batch["rejected_lengths"] = torch.ones(16, dtype=F64)
    normalized = call(L.ipo, batch, beta=0.2)
    assert_close(normalized.losses, call(L.ipo, batch, beta=0.2, length_normalize=False).losses)


def test_simpo_with_unit_lengths_and_no_margin_is_reference_free_dpo():
    batch = random_batch()
    batch["chosen_lengths"] = batch["rejected_lengths"] = torch.ones(16, dtype=F64)
    zeros = torch.zeros(16, dtype=F64)
    simpo = L.simpo(batch["policy_chosen_logps"], batch["policy_rejected_logps"], beta=0.7, gamma=0.0,
                    chosen_lengths=batch["chosen_lengths"], rejected_lengths=batch["rejected_lengths"])
    dpo = L.dpo(batch["policy_chosen_logps"], batch["policy_rejected_logps"], zeros, zeros, beta=0.7)
    assert_close(simpo.losses, dpo.losses, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Gradients.
# --------------------------------------------------------------------------------------------------


def grad_wrt_policy_chosen(fn, batch, **hyper) -> torch.Tensor:
    leaf = batch["policy_chosen_logps"].clone().requires_grad_(True)
    out = call(fn, {**batch, "policy_chosen_logps": leaf}, **hyper)
    (grad,) = torch.autograd.grad(out.losses.sum(), leaf)  # examples are independent: sum gives each one's
    return grad


def test_dpop_pushes_chosen_up_harder_than_dpo_below_reference():
    """d loss/d pc = -beta * sig(-z) * (1 + lam) for DPOP (z = beta*(h - lam*(rc - pc))) versus
    -beta * sig(-beta*h) for DPO; with pc < rc, z < beta*h and (1 + lam) > 1, so DPOP's is more negative."""
    batch = random_batch()
    batch["reference_chosen_logps"] = batch["policy_chosen_logps"] + 0.05 + torch.rand(16, dtype=F64)
    dpop_grad = grad_wrt_policy_chosen(L.dpop, batch, beta=0.1, lam=50.0)
    dpo_grad = grad_wrt_policy_chosen(L.dpo, batch, beta=0.1)
    assert (dpo_grad < 0).all()
    assert (dpop_grad < dpo_grad).all()


def test_dpop_gradient_equals_dpo_above_reference():
    batch = random_batch()
    batch["reference_chosen_logps"] = batch["policy_chosen_logps"] - 0.05 - torch.rand(16, dtype=F64)
    assert_close(grad_wrt_policy_chosen(L.dpop, batch, beta=0.1, lam=50.0),
                 grad_wrt_policy_chosen(L.dpo, batch, beta=0.1), atol=1e-12)


def test_kto_kl_estimate_carries_no_gradient():
    policy_kl = t64(-1, -2, -3).requires_grad_(True)
    kl = L.kto_kl_estimate(policy_kl, t64(-2, -2, -2))
    assert not kl.requires_grad
    kl_input = torch.tensor(0.3, dtype=F64, requires_grad=True)  # even a graph-attached z0 is detached
    policy = t64(-1, -2).requires_grad_(True)
    out = L.kto(policy, t64(-1.5, -1.5), torch.tensor([True, False]), kl_estimate=kl_input)
    out.losses.sum().backward()
    assert kl_input.grad is None
    assert policy.grad is not None and torch.isfinite(policy.grad).all()


@pytest.mark.parametrize("loss_type", PAIRED, ids=lambda t: t.value)
def test_rewards_carry_no_gradient(loss_type):
    batch = {k: v.clone().requires_grad_(True) for k, v in random_batch(4).items() if k.endswith("logps")}
    batch.update({k: v for k, v in random_batch(4).items() if k.endswith("lengths")})
    out = call(loss_type.fn, batch)
    assert out.losses.requires_grad
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad


def test_kto_rewards_carry_no_gradient():
    out = L.kto(t64(-1, -2).requires_grad_(True), t64(-1, -1), torch.tensor([True, False]), kl_estimate=0.0)
    assert out.losses.requires_grad
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad


# --------------------------------------------------------------------------------------------------
# Stability and precision.
# --------------------------------------------------------------------------------------------------


def extreme_batch(dtype) -> dict[str, torch.Tensor]:
    """Log-probs of magnitude 1e4 in both directions, and a fully masked row (log-prob 0, length 0)."""
    values = {
        "policy_chosen_logps": [-1e4, -1.0, -1e4, 0.0],
        "policy_rejected_logps": [-1.0, -1e4, -1e4, 0.0],
        "reference_chosen_logps": [-1.0, -1e4, -5e3, 0.0],
        "reference_rejected_logps": [-1e4, -1.0, -1.0, 0.0],
    }
    batch = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in values.items()}
    batch["chosen_lengths"] = torch.tensor([1, 10_000, 100, 0])
    batch["rejected_lengths"] = torch.tensor([10_000, 1, 3, 0])
    return batch


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("loss_type", PAIRED, ids=lambda t: t.value)
def test_finite_at_extreme_logps(loss_type, dtype):
    batch = extreme_batch(dtype)
    out = call(loss_type.fn, batch)
    assert out.losses.dtype == torch.float32
    assert torch.isfinite(out.losses).all(), out.losses
    assert torch.isfinite(out.chosen_rewards).all() and torch.isfinite(out.rejected_rewards).all()
    out.losses.sum().backward()
    for name in ("policy_chosen_logps", "policy_rejected_logps"):
        grad = batch[name].grad
        assert grad is None or torch.isfinite(grad.float()).all(), (name, grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_kto_finite_at_extreme_logps(dtype):
    policy = torch.tensor([-1e4, -1.0, -1e4, 0.0], dtype=dtype, requires_grad=True)
    reference = torch.tensor([-1.0, -1e4, -1.0, 0.0], dtype=dtype)
    kl = L.kto_kl_estimate(policy.detach(), reference)
    out = L.kto(policy, reference, torch.tensor([True, True, False, False]), kl_estimate=kl)
    assert out.losses.dtype == torch.float32 and torch.isfinite(out.losses).all()
    out.losses.sum().backward()
    assert torch.isfinite(policy.grad.float()).all()


@pytest.mark.parametrize("loss_type", PAIRED, ids=lambda t: t.value)
def test_low_precision_is_upcast_before_arithmetic(loss_type):
    """bfloat16/float16 input gives float32 output equal to computing on the upcast values; float64 stays."""
    batch = random_batch(8)
    for dtype in (torch.bfloat16, torch.float16):
        low = {k: v.to(dtype) if k.endswith("logps") else v for k, v in batch.items()}
        upcast = {k: v.float() for k, v in low.items()}
        got, want = call(loss_type.fn, low), call(loss_type.fn, upcast)
        assert got.losses.dtype == torch.float32
        torch.testing.assert_close(got.losses, want.losses, atol=0, rtol=0)
    assert call(loss_type.fn, batch).losses.dtype == F64


# --------------------------------------------------------------------------------------------------
# Shapes and arguments.
# --------------------------------------------------------------------------------------------------


def test_shape_mismatch_is_a_clear_value_error():
    with pytest.raises(ValueError, match=r"dpo: `reference_rejected_logps` has shape \(3,\) but `policy_"):
        L.dpo(PC, PR, RC, t64(-1, -2, -3))
    with pytest.raises(ValueError, match=r"must have shape \(batch,\), got \(2, 1\)"):
        L.hinge(PC[:, None], PR, RC, RR)
    with pytest.raises(ValueError, match="`chosen_lengths` has shape"):
        L.simpo(PC, PR, chosen_lengths=t64(1, 2, 3), rejected_lengths=LR)
    with pytest.raises(ValueError, match="must be a torch.Tensor"):
        L.dpo([-1.0, -2.0], PR, RC, RR)
    with pytest.raises(ValueError, match="kto: `labels` has shape"):
        L.kto(t64(-1, -2), t64(-1, -2), torch.tensor([True]), kl_estimate=0.0)
    with pytest.raises(ValueError, match="kl_estimate` must hold one value"):
        L.kto(t64(-1, -2), t64(-1, -2), torch.tensor([True, False]), kl_estimate=t64(0, 1))
    with pytest.raises(ValueError, match="empty batch"):
        L.kto_kl_estimate(t64(), t64())


@pytest.mark.parametrize("loss_type", PAIRED, ids=lambda t: t.value)
def test_capabilities_match_what_each_function_requires(loss_type):
    """`needs_reference` and `needs_lengths` say exactly when a None reference or length is an error."""
    batch = random_batch(4)
    no_reference = {**batch, "reference_chosen_logps": None, "reference_rejected_logps": None}
    no_lengths = {**batch, "chosen_lengths": None, "rejected_lengths": None}
    for missing, needed, word in ((no_reference, loss_type.needs_reference, "reference"),
                                  (no_lengths, loss_type.needs_lengths, "lengths")):
        if needed:
            with pytest.raises(ValueError, match=f"{loss_type.value}: .*{word}"):
                call(loss_type.fn, missing)
        else:
            assert torch.isfinite(call(loss_type.fn, missing).losses).all()


def test_hyperparameters_out_of_range_are_value_errors():
    with pytest.raises(ValueError, match=r"robust: `eps` must be in \[0.0, 0.5\)"):
        L.robust(PC, PR, RC, RR, eps=0.5)
    with pytest.raises(ValueError, match="cdpo: `eps`"):
        L.cdpo(PC, PR, RC, RR, eps=-0.1)
    with pytest.raises(ValueError, match="dpo: `beta` must be > 0"):
        L.dpo(PC, PR, RC, RR, beta=0.0)


def test_lengths_accept_any_numeric_dtype():
    floats = L.simpo(PC, PR, chosen_lengths=LC, rejected_lengths=LR)
    ints = L.simpo(PC, PR, chosen_lengths=LC.long(), rejected_lengths=LR.int())
    assert_close(ints.losses, floats.losses, atol=0)


# --------------------------------------------------------------------------------------------------
# The enum and the dispatch.
# --------------------------------------------------------------------------------------------------


def test_loss_type_members_are_the_config_names():
    names = ["dpo", "dpop", "ipo", "cdpo", "robust", "hinge", "simpo", "orpo", "rdpo", "rpo", "kto", "sft"]
    assert [t.value for t in LossType] == names
    assert all(LossType(name).fn.__name__ == name for name in names)
    assert LossType("dpo") is LossType.DPO and LossType.DPO == "dpo"


def test_row_layouts():
    """SFT consumes the chosen rows only and KTO labelled completions plus mismatched ones for its KL estimate;
    every other loss consumes (chosen, rejected) pairs, and `paired` says exactly that."""
    layouts = {t.value: t.row_layout for t in LossType}
    assert layouts.pop("sft") is RowLayout.CHOSEN_ONLY
    assert layouts.pop("kto") is RowLayout.UNPAIRED_KL
    assert set(layouts.values()) == {RowLayout.PAIR} and len(layouts) == len(LossType) - 2
    assert all(t.paired == (t.row_layout is RowLayout.PAIR) for t in LossType)
    assert not LossType.SFT.paired and not LossType.KTO.paired
    assert {layout.value for layout in RowLayout} == {"pair", "chosen_only", "unpaired_kl"}
    # The precomputed-reference cache key (train/reference.py) calls the rows "paired" when `paired`, else the
    # loss name: for the losses that use a reference this must stay as it was, or old caches go stale.
    with_reference = {t.value for t in LossType if t.needs_reference}
    assert {t.value for t in LossType if t.needs_reference and t.paired} == with_reference - {"kto"}


def test_capability_properties():
    assert {t.value for t in LossType if not t.needs_reference} == {"simpo", "orpo", "sft"}
    assert {t.value for t in LossType if not t.paired} == {"kto", "sft"}
    assert {t.value for t in LossType if t.needs_chosen_nll} == {"orpo", "rpo", "sft"}
    assert {t.value for t in LossType if t.length_normalized} == {"ipo", "simpo", "orpo", "rpo", "sft"}
    assert {t.value for t in LossType if t.needs_lengths} == {"ipo", "simpo", "orpo", "rdpo", "rpo", "sft"}


def test_defaults_come_from_the_signatures():
    assert LossType.DPO.defaults == {"beta": 0.1}
    assert LossType.DPOP.defaults == {"beta": 0.1, "lam": 50.0}
    assert LossType.IPO.defaults == {"beta": 0.1, "length_normalize": True}
    assert LossType.SIMPO.defaults == {"beta": 2.0, "gamma": 1.0}
    assert LossType.ORPO.defaults == {"beta": 0.1, "lam": 0.1}
    assert LossType.KTO.defaults == {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0}
    assert LossType.SFT.defaults == {}
    LossType.DPO.defaults["beta"] = 99.0  # a copy: mutating it changes nothing
    assert LossType.DPO.defaults == {"beta": 0.1}


@pytest.mark.parametrize("loss_type", PAIRED, ids=lambda t: t.value)
def test_compute_loss_dispatches(loss_type):
    batch = random_batch(4)
    logps = [batch[k] for k in ("policy_chosen_logps", "policy_rejected_logps",
                                "reference_chosen_logps", "reference_rejected_logps")]
    lengths = {"chosen_lengths": batch["chosen_lengths"], "rejected_lengths": batch["rejected_lengths"]}
    got = compute_loss(loss_type.value, *logps, **lengths, **loss_type.defaults)
    want = call(loss_type.fn, batch)
    for a, b in zip(got, want, strict=True):
        assert_close(a, b, atol=0)


def test_compute_loss_kto_and_errors():
    args = (t64(-1, -2), t64(-1, -1), torch.tensor([True, False]))
    out = compute_loss("kto", *args, kl_estimate=0.0, beta=0.5)
    assert_close(out.losses, L.kto(*args, kl_estimate=0.0, beta=0.5).losses, atol=0)
    with pytest.raises(ValueError, match=r"dpo: unknown argument\(s\) \['eps'\]"):
        compute_loss(LossType.DPO, PC, PR, RC, RR, eps=0.1)
    with pytest.raises(ValueError, match="unknown loss type 'sigmoid'; expected one of: dpo, dpop"):
        compute_loss("sigmoid", PC, PR, RC, RR)


# --------------------------------------------------------------------------------------------------
# Parity with TRL 1.16 on random inputs.
#
# TRL 1.16 has no standalone DPO loss function: `DPOTrainer._compute_loss(self, model, inputs,
# return_outputs)` runs the model and the loss in one method. We call that unbound method with a
# SimpleNamespace `self` and a fake `model`:
#   - self attributes read on this path: model.training (False -> "eval" metrics), accelerator.device,
#     accelerator.gather / gather_for_metrics (identity), aux_loss_enabled=False, ld_alpha=None,
#     precompute_ref_logps=True (so the reference log-probs come from inputs["ref_chosen_logps"] /
#     ["ref_rejected_logps"] and no reference model is called), f_divergence_type="reverse_kl",
#     loss_types, loss_weights, beta, label_smoothing, use_weighting=False, _metrics, _total_train_tokens,
#     _tp_size;
#   - the fake model returns `log_probs` (per-token log-probs, 0 outside the completion, as the fused LM
#     head gives for label -100) plus zero `entropy`, `mean_logits` and `is_top1`, used only for metrics;
#   - inputs: input_ids, attention_mask, completion_mask (column 0 is a prompt token, so TRL's
#     completion_mask.sum() used for IPO equals the token count), ref_chosen_logps, ref_rejected_logps.
# TRL returns the batch mean, so each example is run as a batch of one; the per-token gradient TRL gives
# equals our gradient with respect to the summed log-prob.
# KTO: `KTOTrainer._compute_loss` the same way (loss_type="kto", calculate_KL=True, desirable_weight,
# undesirable_weight, and `_compute_kl_logps` bound to the stub); the fake model tells the mismatched KL
# sequences (KL_input_ids filled with 1) from the main ones (input_ids filled with 0).
# SimPO, cDPO and unnormalised IPO: `trl.experimental.cpo.CPOTrainer.cpo_loss(self, chosen, rejected)`,
# a pure method reading self.alpha, loss_type, simpo_gamma, beta, label_smoothing, accelerator.device.
# ORPO: `trl.experimental.orpo.ORPOTrainer.odds_ratio_loss(self, chosen, rejected)` reading self.beta
# (ORPO's lambda) and accelerator.device; TRL's ORPO NLL is over prompt + completion tokens, so only the
# odds-ratio term is compared.
# --------------------------------------------------------------------------------------------------

ACCELERATOR = SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x)


def random_tokens(n: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs (n, width), zero past each row's length, and the lengths (n,) in [1, width]."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, width + 1, (n,), generator=gen)
    per_token = -3 * torch.rand(n, width, generator=gen, dtype=F64)
    return per_token * (torch.arange(width) < lengths[:, None]), lengths


def completion_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    positions = torch.arange(width + 1)
    return ((positions >= 1) & (positions <= lengths[:, None])).long()


def fake_model(log_probs: torch.Tensor, kl_log_probs: torch.Tensor | None = None):
    def model(**kwargs):
        use_kl = kl_log_probs is not None and bool(kwargs["input_ids"][0, 0] == 1)
        chosen = kl_log_probs if use_kl else log_probs
        zeros = torch.zeros(chosen.shape[0], chosen.shape[1] + 1, dtype=F64)
        return SimpleNamespace(log_probs=chosen, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())

    return model


def dpo_trainer_stub(loss_types, loss_weights=None, beta=0.1, label_smoothing=0.0) -> SimpleNamespace:
    """The attributes `DPOTrainer._compute_loss` reads with precomputed reference log-probs."""
    return SimpleNamespace(
        model=SimpleNamespace(training=False), accelerator=ACCELERATOR, aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", use_weighting=False,
        loss_types=loss_types, loss_weights=loss_weights or [1.0] * len(loss_types), beta=beta,
        label_smoothing=label_smoothing, _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0, _tp_size=1,
    )


def trl_dpo_example(per_token, lengths, reference, *, loss_types, loss_weights=None, beta, label_smoothing):
    """TRL's loss for one pair. per_token: (2, width) rows [chosen, rejected]; lengths (2,); reference (2,).
    Returns (loss, d loss / d summed log-probs (2,))."""
    width = per_token.shape[1]
    leaf = per_token.clone().requires_grad_(True)
    mask = completion_mask(lengths, width)
    self = dpo_trainer_stub(loss_types, loss_weights, beta, label_smoothing)
    inputs = {
        "input_ids": torch.zeros(2, width + 1, dtype=torch.long), "attention_mask": torch.ones_like(mask),
        "completion_mask": mask, "ref_chosen_logps": reference[:1], "ref_rejected_logps": reference[1:],
    }
    loss = DPOTrainer._compute_loss(self, fake_model(leaf * mask[:, 1:]), inputs, return_outputs=False)
    loss.backward()
    return loss.detach(), leaf.grad[:, 0]  # every completion token's gradient equals the sum's


def our_loss_and_grads(fn, policy_chosen, policy_rejected, *rest, **kwargs):
    leaves = [policy_chosen.clone().requires_grad_(True), policy_rejected.clone().requires_grad_(True)]
    out = fn(*leaves, *rest, **kwargs)
    grads = torch.autograd.grad(out.losses.sum(), leaves, allow_unused=True)
    return out.losses.detach(), [torch.zeros_like(leaves[0]) if g is None else g for g in grads]


TRL_DPO_CASES = [
    # (id, TRL loss_type(s), TRL loss_weights, TRL label_smoothing, our function, our hyperparameters)
    ("sigmoid=dpo", ["sigmoid"], None, 0.0, L.dpo, {}),
    ("hinge", ["hinge"], None, 0.0, L.hinge, {}),
    ("ipo(normalised)", ["ipo"], None, 0.0, L.ipo, {}),
    ("robust", ["robust"], None, 0.2, L.robust, {"eps": 0.2}),
    ("sigmoid+0.7*sft=rpo", ["sigmoid", "sft"], [1.0, 0.7], 0.0, L.rpo, {"alpha": 0.7}),
    ("sft", ["sft"], None, 0.0, L.sft, {}),
]


@pytest.mark.parametrize(("trl_types", "trl_weights", "smoothing", "fn", "hyper"),
                         [case[1:] for case in TRL_DPO_CASES], ids=[case[0] for case in TRL_DPO_CASES])
def test_matches_trl_dpo_trainer(trl_types, trl_weights, smoothing, fn, hyper):
    n, width, beta = 6, 9, 0.3
    chosen_tokens, chosen_lengths = random_tokens(n, width, seed=1)
    rejected_tokens, rejected_lengths = random_tokens(n, width, seed=2)
    reference = -torch.rand(2, n, generator=torch.Generator().manual_seed(3), dtype=F64) * 2 * width
    if fn is not L.sft:
        hyper = {"beta": beta, **hyper}
    ours, (grad_chosen, grad_rejected) = our_loss_and_grads(
        fn, chosen_tokens.sum(1), rejected_tokens.sum(1), reference[0], reference[1],
        chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths, **hyper)
    for i in range(n):
        per_token = torch.stack([chosen_tokens[i], rejected_tokens[i]])
        lengths = torch.stack([chosen_lengths[i], rejected_lengths[i]])
        loss, grads = trl_dpo_example(per_token, lengths, reference[:, i], loss_types=trl_types,
                                      loss_weights=trl_weights, beta=beta, label_smoothing=smoothing)
        assert_close(ours[i], loss)
        assert_close(torch.stack([grad_chosen[i], grad_rejected[i]]), grads)


def test_trl_sft_averages_tokens_over_the_batch_not_examples():
    """Documented difference: TRL's sft is sum(-logps) / sum(lengths) over the batch; ours is per example,
    and the loop's mean of per-example token means equals it only when lengths are equal."""
    tokens, lengths = random_tokens(4, 9, seed=4)
    tokens, lengths = tokens.repeat(2, 1), lengths.repeat(2)  # rows 0-3 "chosen", 4-7 "rejected"
    mask = completion_mask(lengths, 9)
    self = dpo_trainer_stub(["sft"])
    inputs = {"input_ids": torch.zeros(8, 10, dtype=torch.long), "attention_mask": torch.ones_like(mask),
              "completion_mask": mask, "ref_chosen_logps": torch.zeros(4, dtype=F64),
              "ref_rejected_logps": torch.zeros(4, dtype=F64)}
    trl_loss = DPOTrainer._compute_loss(self, fake_model(tokens * mask[:, 1:]), inputs, return_outputs=False)
    chosen_sums, chosen_lengths = tokens[:4].sum(1), lengths[:4]
    assert_close(trl_loss, -chosen_sums.sum() / chosen_lengths.sum())
    assert not torch.allclose(L.sft(chosen_sums, chosen_lengths=chosen_lengths).losses.mean(), trl_loss)


def trl_kto_example(tokens, length, label, reference, kl_tokens, kl_lengths, reference_kl, *, beta, weights):
    """TRL's KTO loss for one example against a batch of mismatched KL pairs; returns (loss, grad, kl)."""
    width = tokens.shape[0]
    leaf = tokens[None].clone().requires_grad_(True)
    mask, kl_mask = completion_mask(length[None], width), completion_mask(kl_lengths, width)
    self = SimpleNamespace(
        model=SimpleNamespace(training=False), accelerator=ACCELERATOR, calculate_KL=True,
        aux_loss_enabled=False, precompute_ref_logps=True, loss_type="kto", beta=beta,
        desirable_weight=weights[0], undesirable_weight=weights[1],
        _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1,
    )
    self._compute_kl_logps = functools.partial(KTOTrainer._compute_kl_logps, self)
    batch = {
        "input_ids": torch.zeros(1, width + 1, dtype=torch.long), "attention_mask": torch.ones_like(mask),
        "completion_mask": mask, "KL_input_ids": torch.ones(len(kl_lengths), width + 1, dtype=torch.long),
        "KL_attention_mask": torch.ones_like(kl_mask), "KL_completion_mask": kl_mask,
        "label": torch.tensor([label]), "ref_logps": reference[None], "ref_KL_logps": reference_kl,
    }
    model = fake_model(leaf * mask[:, 1:], kl_tokens * kl_mask[:, 1:])
    loss = KTOTrainer._compute_loss(self, model, batch, return_outputs=False)
    loss.backward()
    return loss.detach(), leaf.grad[0, 0], self._metrics["eval"]["kl"][-1]


@pytest.mark.parametrize("kl_shift", [0.0, -30.0], ids=["kl>0", "kl<0-clamped"])
def test_matches_trl_kto_trainer(kl_shift):
    n, width, beta, weights = 6, 9, 0.3, (1.0, 1.5)
    tokens, lengths = random_tokens(n, width, seed=5)
    kl_tokens, kl_lengths = random_tokens(n, width, seed=6)
    gen = torch.Generator().manual_seed(7)
    reference = tokens.sum(1) + torch.randn(n, generator=gen, dtype=F64)
    reference_kl = kl_tokens.sum(1) - 1.0 + torch.randn(n, generator=gen, dtype=F64) - kl_shift
    labels = torch.tensor([True, False, True, True, False, False])
    kl = L.kto_kl_estimate(kl_tokens.sum(1), reference_kl)
    assert (kl > 0) == (kl_shift == 0.0)
    ours, (grad, _) = our_loss_and_grads(
        lambda policy, _unused: L.kto(policy, reference, labels, beta=beta, desirable_weight=weights[0],
                                      undesirable_weight=weights[1], kl_estimate=kl),
        tokens.sum(1), torch.zeros(n, dtype=F64))
    for i in range(n):
        loss, trl_grad, trl_kl = trl_kto_example(
            tokens[i], lengths[i], bool(labels[i]), reference[i], kl_tokens, kl_lengths, reference_kl,
            beta=beta, weights=weights)
        assert_close(kl, trl_kl)
        assert_close(ours[i], loss)
        assert_close(grad[i], trl_grad)


def experimental(module: str, name: str):
    """Import from trl.experimental, silencing its import-time TRLExperimentalWarning."""
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(importlib.import_module(module), name)


def trl_cpo(loss_type: str, chosen, rejected, *, beta, gamma=0.0, label_smoothing=0.0):
    cpo = experimental("trl.experimental.cpo.cpo_trainer", "CPOTrainer")
    self = SimpleNamespace(alpha=0.0, loss_type=loss_type, simpo_gamma=gamma, beta=beta,
                           label_smoothing=label_smoothing, accelerator=ACCELERATOR)
    return cpo.cpo_loss(self, chosen, rejected)


def test_simpo_matches_trl_cpo_trainer():
    batch = random_batch(12, seed=8)
    pc, pr, lc, lr = (batch[k] for k in ("policy_chosen_logps", "policy_rejected_logps",
                                         "chosen_lengths", "rejected_lengths"))
    ours = L.simpo(pc, pr, beta=2.5, gamma=1.4, chosen_lengths=lc, rejected_lengths=lr)
    losses, chosen_rewards, rejected_rewards = trl_cpo("simpo", pc / lc, pr / lr, beta=2.5, gamma=1.4)
    assert_close(ours.losses, losses)
    assert_close(ours.chosen_rewards, chosen_rewards)
    assert_close(ours.rejected_rewards, rejected_rewards)


def test_cdpo_and_unnormalized_ipo_match_trl_cpo_formulas():
    """CPO's conservative 'sigmoid' and its 'ipo' are reference-free; fed the log-ratios (pc - rc, pr - rr)
    their logits are h, which makes them exactly cDPO and unnormalised IPO."""
    batch = random_batch(12, seed=9)
    chosen = batch["policy_chosen_logps"] - batch["reference_chosen_logps"]
    rejected = batch["policy_rejected_logps"] - batch["reference_rejected_logps"]
    cdpo_losses, _, _ = trl_cpo("sigmoid", chosen, rejected, beta=0.2, label_smoothing=0.15)
    assert_close(call(L.cdpo, batch, beta=0.2, eps=0.15).losses, cdpo_losses)
    ipo_losses, _, _ = trl_cpo("ipo", chosen, rejected, beta=0.2)
    assert_close(call(L.ipo, batch, beta=0.2, length_normalize=False).losses, ipo_losses)


def test_orpo_odds_ratio_term_matches_trl_orpo_trainer():
    """TRL returns lam * log sig(log odds ratio); ours is -pc/lc - lam * log sig(...).
    TRL computes in float32 (it calls .float()), hence the float32 tolerance."""
    batch = random_batch(12, seed=10)
    pc, pr, lc, lr = (batch[k] for k in ("policy_chosen_logps", "policy_rejected_logps",
                                         "chosen_lengths", "rejected_lengths"))
    orpo = experimental("trl.experimental.orpo.orpo_trainer", "ORPOTrainer")
    trl_terms, chosen_rewards, rejected_rewards, _, _ = orpo.odds_ratio_loss(
        SimpleNamespace(beta=0.25, accelerator=ACCELERATOR), pc / lc, pr / lr)
    ours = L.orpo(pc, pr, beta=0.25, lam=0.25, chosen_lengths=lc, rejected_lengths=lr)
    assert_close((ours.losses + pc / lc).float(), -trl_terms, atol=1e-5)
    assert_close(ours.chosen_rewards.float(), chosen_rewards, atol=1e-5)
    assert_close(ours.rejected_rewards.float(), rejected_rewards, atol=1e-5)
