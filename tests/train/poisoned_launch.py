"""`prefgate train` with the gradients of one optimizer step made infinite while its loss stays finite: what the
DeepSpeed NaN-guard test launches (`accelerate launch tests/train/poisoned_launch.py STEP CONFIG`). The policy's
summed log-prob enters the loss as `sqrt(x - x.detach())`: 0 in value, an infinite derivative."""

import sys

import torch

import prefgate.train.step as step_module
from prefgate.cli import main

POISONED_STEP = int(sys.argv.pop(1))
_real = step_module.Forward.logps
_calls = {"n": 0}


def _poisoned(self, model, batch):
    out = _real(self, model, batch)
    if not torch.is_grad_enabled():  # a reference, probe or evaluation pass
        return out
    _calls["n"] += 1
    if _calls["n"] != POISONED_STEP:
        return out
    total = out.sum()
    return out + torch.sqrt(total - total.detach())  # + 0, whose gradient is infinite


step_module.Forward.logps = _poisoned
sys.argv = ["prefgate", "train", *sys.argv[1:]]
main()
