"""Monitors that stop a run going bad: chosen-likelihood collapse and non-finite values."""

from __future__ import annotations

import math
from collections import deque


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
    for name, value in values.items():
        if value is not None and not math.isfinite(value):
            raise TrainingAborted(f"step {step}: non-finite {name} ({value}); the run stopped before the optimizer "
                                  "step, so the last checkpoint is intact. Lower optim.lr, or check the data.")
