"""Atomic, resumable checkpoints: trainable weights, optimizer, scheduler, RNG states, loop position.

A checkpoint is written to `checkpoints/.tmp-step-N/` and renamed to `checkpoints/step-N/` when complete,
so a run killed at any moment leaves only whole checkpoints; a write that fails (disk full, ...) removes its
temporary folder and raises `CheckpointNotWritten`. The last `keep` are kept. Nothing is pickled beyond
what `torch.load(weights_only=True)` accepts; weights are safetensors. The loop writes a checkpoint only
after checking that the weights are finite; `latest_finite_checkpoint` checks the files on disk.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from prefgate.train.monitors import TrainingAborted

PREFIX = "step-"


class CheckpointNotWritten(TrainingAborted):
    """Writing a checkpoint failed (disk full, permission denied, ...): the run stops (exit 1), and the
    checkpoints already on disk are untouched."""

    def __init__(self, step: int, path: Path, err: OSError):
        code = errno.errorcode.get(err.errno or 0)
        what = f"{err.strerror or err}" + (f" ({code})" if code else "")
        fix = "free some space (or lower checkpoint_keep)" if err.errno in (errno.ENOSPC, errno.EDQUOT) else \
            "fix that"
        super().__init__(f"step {step}: could not write checkpoint {path}: {what}; nothing partial was left on "
                         f"disk. The run stopped: {fix}, then run the same command with --resume")


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


def save_checkpoint(run_dir: Path, step: int, *, model, optimizer, scheduler, loop_state: dict, keep: int,
                    rng: dict[str, Any] | None = None) -> Path:
    """Write step N's checkpoint atomically (main process; others then add their RNG with `save_rng`).

    `rng`: the RNG state to record (default: the current one). `CheckpointNotWritten` when the file system
    refuses a write; the temporary folder is removed and the existing checkpoints are left as they were."""
    root = run_dir / "checkpoints"
    final = root / f"{PREFIX}{step:07d}"
    tmp = root / f".tmp-{PREFIX}{step:07d}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng if rng is not None else rng_state(), tmp / "rng-0.pt")
        (tmp / "state.json").write_text(json.dumps(loop_state, indent=2))
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointNotWritten(step, final, err) from err
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(root.glob(f"{PREFIX}*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_rng(checkpoint: Path, rank: int, rng: dict[str, Any] | None = None) -> None:
    """Non-main processes add their RNG state (default: the current one) to a finished checkpoint."""
    torch.save(rng if rng is not None else rng_state(), checkpoint / f"rng-{rank}.pt")


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / "checkpoints").glob(f"{PREFIX}*"))
    return found[-1] if found else None


def checkpoint_step(path: Path) -> int:
    return int(path.name.removeprefix(PREFIX))


def nonfinite_weights(path: Path) -> tuple[int, str | None]:
    """(number of trainable tensors in checkpoint `path`, name of the first holding a NaN or inf, or None).
    Reads one tensor at a time."""
    with safe_open(str(path / "trainable.safetensors"), framework="pt") as fh:
        names = list(fh.keys())
        for name in names:
            if not bool(torch.isfinite(fh.get_tensor(name)).all()):
                return len(names), name
    return len(names), None


def latest_finite_checkpoint(run_dir: Path) -> tuple[Path | None, int, list[str]]:
    """The newest checkpoint whose trainable weights are all finite: (its path or None, its number of
    tensors, one line for each newer checkpoint passed over and why)."""
    passed: list[str] = []
    for path in sorted((run_dir / "checkpoints").glob(f"{PREFIX}*"), reverse=True):
        try:
            n, bad = nonfinite_weights(path)
        except (OSError, SafetensorError) as err:
            passed.append(f"{path.name}: unreadable trainable.safetensors ({err})")
            continue
        if bad is None:
            return path, n, passed
        passed.append(f"{path.name}: non-finite weights (tensor {bad})")
    return None, 0, passed


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
