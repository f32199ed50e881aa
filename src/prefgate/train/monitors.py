"""Monitors that stop a run going bad: chosen-likelihood collapse and non-finite values."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

import torch


class TrainingAborted(RuntimeError):
    """A monitor stopped the run; the CLI exits 1 and says why."""


class CollapseMonitor:
    """Watches the running mean of `logps/chosen_shift` (policy minus reference log-prob of the chosen
    completion, per token). Below `threshold` the model is making the *preferred* answer less likely: the
    failure DPO shows on low-contrast pairs (Pal et al. 2024, Smaug). Warns once per crossing."""

    REMEDY = ("use `loss.type: dpop` (DPO-Positive), add an NLL term (`loss.type: rpo`), or raise `loss.beta`; "
              "and audit the pairs' contrast (`prefgate audit`)")

    def __init__(self, threshold: float, window: int):
        self.threshold = threshold
        self.values: deque[float] = deque(maxlen=window)
        self.tripped = False

    def update(self, step: int, chosen_shift: float | None) -> str | None:
        if chosen_shift is None:
            return None
        self.values.append(chosen_shift)
        mean = sum(self.values) / len(self.values)
        if len(self.values) == self.values.maxlen and mean < self.threshold:
            if not self.tripped:
                self.tripped = True
                return (f"step {step}: the chosen log-probability is collapsing (running mean of logps/chosen_shift "
                        f"{mean:.3f} nats/token < {self.threshold}); {self.REMEDY}")
            return None
        self.tripped = False
        return None


def check_finite(step: int, **values: float) -> None:
    """The NaN guard on a step's loss and gradient norm, before the optimizer step uses them."""
    for name, value in values.items():
        if value is not None and not math.isfinite(value):
            raise TrainingAborted(f"step {step}: non-finite {name} ({value}); the run stopped before the optimizer "
                                  f"step, so the weights are those after step {step - 1}. Lower optim.lr, or check "
                                  "the data.")


def nonfinite_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> tuple[int, list[str]]:
    """(number of tensors, names of those holding a NaN or inf), with one device-to-host copy."""
    pairs = list(named)
    if not pairs:
        return 0, []
    finite = torch.stack([torch.isfinite(t.detach()).all() for _, t in pairs]).cpu().tolist()
    return len(pairs), [name for (name, _), ok in zip(pairs, finite, strict=True) if not ok]


def nonfinite_weights_message(step: int, n_tensors: int, bad: list[str]) -> str:
    return (f"step {step}: the weights are not finite after the optimizer step ({len(bad)} of {n_tensors} trainable "
            f"tensors hold NaN or inf, first {bad[0]}); the model was not saved and no checkpoint was written from "
            "them. Lower optim.lr (or keep optim.max_grad_norm set), or check the data.")
