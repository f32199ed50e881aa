"""Atomic, resumable checkpoints: trainable weights, optimizer, scheduler, RNG states, loop position.

A checkpoint is written to `checkpoints/.tmp-step-N/` and renamed to `checkpoints/step-N/` when complete,
so a run killed at any moment leaves only whole checkpoints. The last `keep` are kept. Nothing is pickled
beyond what `torch.load(weights_only=True)` accepts; weights are safetensors.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

PREFIX = "step-"


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, keys, *rest = state["python"]
    random.setstate((version, tuple(keys), *rest))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, *, model, optimizer, scheduler, loop_state: dict, keep: int) -> Path:
    """Write step N's checkpoint atomically (main process; others then add their RNG with `save_rng`)."""
    root = run_dir / "checkpoints"
    final = root / f"{PREFIX}{step:07d}"
    tmp = root / f".tmp-{PREFIX}{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / "rng-0.pt")
    (tmp / "state.json").write_text(json.dumps(loop_state, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(root.glob(f"{PREFIX}*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_rng(checkpoint: Path, rank: int) -> None:
    """Non-main processes add their RNG state to a finished checkpoint."""
    torch.save(rng_state(), checkpoint / f"rng-{rank}.pt")


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / "checkpoints").glob(f"{PREFIX}*"))
    return found[-1] if found else None


def load_checkpoint(path: Path, *, model, optimizer, scheduler, rank: int = 0) -> dict:
    """Restore everything `save_checkpoint` wrote; returns the loop state."""
    weights = load_file(str(path / "trainable.safetensors"))
    missing = set(trainable_state(model)) - set(weights)
    if missing:
        raise ValueError(f"checkpoint {path} lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]})")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng_file = path / f"rng-{rank}.pt"
    if rng_file.exists():
        set_rng_state(torch.load(rng_file, weights_only=True))
    return json.loads((path / "state.json").read_text())
