"""Monitors that stop a run going bad: chosen-likelihood collapse and non-finite values."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

import torch


class TrainingAborted(RuntimeError):
    """A monitor stopped the run; the CLI exits 1 and says why."""


class CollapseStop(TrainingAborted):
    """`on_collapse: stop`: the collapse monitor fired. The checkpoint kept is the last one before the crossing,
    never one written from the weights after it."""


SIGNAL_METRICS = {  # what the collapse monitor reads, by `monitor.signal`
    "after_diff": "logps/chosen_shift_after_diff",  # the shift probe (prefgate.diagnose.PROBE_METRICS["after"])
    "mean": "logps/chosen_shift",  # the whole chosen answer, per token, on the step's batch
}
SIGNAL_WORDS = {
    "after_diff": "the chosen answer's shift after the first differing token, on the probe's fixed sample of pairs",
    "mean": "the whole chosen answer's shift on each step's batch",
}


class CollapseMonitor:
    """Watches the running mean, over the last `window` optimizer steps, of a chosen-likelihood signal (policy
    minus reference log-prob of the chosen completion, per token). Below `threshold` the model is making the
    *preferred* answer less likely: the failure DPO shows on low-contrast pairs (Pal et al. 2024, Smaug), which
    shows most clearly on the tokens after the first one where chosen and rejected differ (`signal:
    after_diff`, read every `diagnose_every` steps); `mean` reads the whole answer's shift every step. The
    window must have run `window` steps since the monitor started before it can fire. Warns once per crossing.
    """

    REMEDY = ("use `loss.type: dpop` (DPO-Positive), add an NLL term (`loss.type: rpo`), or raise `loss.beta`; "
              "and audit the pairs' contrast (`prefgate audit`)")

    def __init__(self, threshold: float, window: int, *, signal: str = "mean", start_step: int = 0):
        self.threshold = threshold
        self.window = window
        self.signal = signal
        self.metric = SIGNAL_METRICS[signal]
        self.start_step = start_step
        self.readings: deque[tuple[int, float]] = deque()
        self.tripped = False
        self.fired: list[dict] = []  # {"step", "value"} at each crossing
        self.last_good_step: int | None = None  # the last reading at which the running mean was not below
        self.fallback: str | None = None  # why the signal is not the configured one, if it is not

    def update(self, step: int, metrics: dict) -> str | None:
        """Read the signal from a step's metrics (absent: no reading this step); the warning, once per crossing."""
        value = metrics.get(self.metric)
        if value is None:
            return None
        self.readings.append((step, value))
        while self.readings[0][0] <= step - self.window:
            self.readings.popleft()
        mean = sum(v for _, v in self.readings) / len(self.readings)
        if step - self.start_step >= self.window and mean < self.threshold:
            if not self.tripped:
                self.tripped = True
                self.fired.append({"step": step, "value": mean})
                return (f"step {step}: the chosen log-probability is collapsing (running mean over the last "
                        f"{self.window} steps of {self.metric}, {SIGNAL_WORDS[self.signal]}: {mean:.3f} nats/token "
                        f"< {self.threshold}); {self.REMEDY}")
            return None
        self.tripped = False
        self.last_good_step = step
        return None

    def describe(self) -> dict:
        return {"signal": self.signal, "metric": self.metric, "threshold": self.threshold, "window": self.window,
                "fired": self.fired}


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
