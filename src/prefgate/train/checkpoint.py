"""Atomic, resumable checkpoints: trainable weights, optimizer, scheduler, RNG states, loop position.

A checkpoint is written to `checkpoints/.tmp-step-N/` and renamed to `checkpoints/step-N/` when complete,
so a run killed at any moment leaves only whole checkpoints; a write that fails (disk full, ...) removes its
temporary folder and raises `CheckpointNotWritten`. The last `keep` are kept. Nothing is pickled beyond
what `torch.load(weights_only=True)` accepts; weights are safetensors. The loop writes a checkpoint only
after checking that the weights are finite; `latest_finite_checkpoint` checks the files on disk.

Under FSDP (`sharded`) the weights and the optimizer state are gathered whole to the main process with
`torch.distributed.checkpoint.state_dict` (every process takes part) and restored into the shards the same way:
the files hold whole tensors either way, and the optimizer state is then keyed by parameter name. A checkpoint
resumes on either layout: one written under FSDP on one process, and one written without it under FSDP.

Under DeepSpeed the engine writes its own partitioned state (weights and optimizer, each process its part) into
the checkpoint's `deepspeed/` folder before the folder is renamed, and resumes from it; `trainable.safetensors`
still holds the whole trainable weights (gathered), which the finite check reads. Such a checkpoint resumes under
DeepSpeed only (the same ZeRO stage and number of processes, as DeepSpeed's format asks), and a checkpoint without
that folder does not resume under DeepSpeed: either is refused with one line.
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

from prefgate.errors import InputError
from prefgate.train.monitors import TrainingAborted

PREFIX = "step-"
DEEPSPEED = "deepspeed"  # the engine's own state, in a checkpoint written under DeepSpeed
DEEPSPEED_TAG = "state"


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


def trainable_of(model, whole: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trainable tensors of a whole state dict gathered from shards or partitions (FSDP, DeepSpeed)."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {name: t.detach().contiguous().cpu() for name, t in whole.items() if name in trainable}


def _full_options(**kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def _inner(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps the torch one


def full_state_dict(model) -> dict[str, torch.Tensor]:
    """The whole state dict of an FSDP model on the main process's CPU (empty elsewhere); every process calls it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full_options(cpu_offload=True))


def training_state(model, optimizer, *, sharded: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """(trainable weights, optimizer state) as a checkpoint stores them. `sharded` (FSDP): gathered whole to the
    main process, which alone gets them (every process must call this); otherwise this process's own."""
    if not sharded:
        return trainable_state(model), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    weights = trainable_of(model, full_state_dict(model))
    return weights, get_optimizer_state_dict(model, _inner(optimizer), options=_full_options(cpu_offload=True))


def _by_name(optimizer_state: dict) -> bool:
    """True when the optimizer state is keyed by parameter name (written under FSDP), not by index."""
    return any(isinstance(key, str) for key in optimizer_state.get("state", {}))


def _named(optimizer_state: dict, model) -> dict:
    """An optimizer state keyed by index (`optimizer.state_dict()`) keyed by parameter name instead: the loop's
    AdamW holds the trainable parameters in `named_parameters` order (`loop._optimizer_and_scheduler`)."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    return {"state": {names[i]: value for i, value in optimizer_state["state"].items()},
            "param_groups": [{**group, "params": [names[i] for i in group["params"]]}
                             for group in optimizer_state["param_groups"]]}


def _restore(model, optimizer, weights: dict[str, torch.Tensor], optimizer_state: dict, *, sharded: bool) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    if sharded:
        set_model_state_dict(model, weights, options=_full_options(strict=False))
    else:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in weights.items():
                params[name].copy_(tensor)
    if sharded or _by_name(optimizer_state):  # a checkpoint of one layout resumes on the other too
        named = optimizer_state if _by_name(optimizer_state) else _named(optimizer_state, model)
        set_optimizer_state_dict(model, _inner(optimizer), named, options=_full_options())
    else:
        optimizer.load_state_dict(optimizer_state)


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


def temporary_dir(run_dir: Path, step: int) -> Path:
    """Where step N's checkpoint is written before it is renamed into place."""
    return run_dir / "checkpoints" / f".tmp-{PREFIX}{step:07d}"


def save_checkpoint(run_dir: Path, step: int, *, state: tuple[dict[str, torch.Tensor], dict | None], scheduler,
                    loop_state: dict, keep: int, rng: dict[str, Any] | None = None, fresh: bool = True) -> Path:
    """Write step N's checkpoint atomically (main process; others then add their RNG with `save_rng`).

    `state`: (trainable weights, optimizer state), from `training_state`; the optimizer state is None under
    DeepSpeed, whose engine has already written its own into the temporary folder (`fresh=False` keeps it). `rng`:
    the RNG state to record (default: the current one). `CheckpointNotWritten` when the file system refuses a
    write; the temporary folder is removed and the existing checkpoints are left as they were."""
    weights, optimizer_state = state
    root = run_dir / "checkpoints"
    final = root / f"{PREFIX}{step:07d}"
    tmp = temporary_dir(run_dir, step)
    try:
        if fresh:
            shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=not fresh)
        save_file(weights, str(tmp / "trainable.safetensors"))
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / "optimizer.pt")
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


def load_checkpoint(path: Path, *, model, optimizer, scheduler, rank: int = 0, sharded: bool = False,
                    engine=None) -> dict:
    """Restore everything `save_checkpoint` wrote; returns the loop state. `sharded` (FSDP): every process
    reads the whole tensors and keeps its shards. `engine` (DeepSpeed): the engine restores its own state."""
    written_by_deepspeed = (path / DEEPSPEED).is_dir()
    if written_by_deepspeed != (engine is not None):
        was, now = ("under", "without") if written_by_deepspeed else ("without", "under")
        raise InputError(f"{path} was written {was} DeepSpeed and this run trains {now} it: DeepSpeed's partitioned "
                         "optimizer state resumes only under DeepSpeed (the same ZeRO stage and number of processes); "
                         "resume with the launch that wrote it")
    if engine is not None:
        engine.load_checkpoint(str(path / DEEPSPEED), tag=DEEPSPEED_TAG, load_optimizer_states=True,
                               load_lr_scheduler_states=False)
    else:
        weights = load_file(str(path / "trainable.safetensors"))
        missing = {name for name, p in model.named_parameters() if p.requires_grad} - set(weights)
        if missing:
            raise ValueError(f"checkpoint {path} lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]})")
        _restore(model, optimizer, weights, torch.load(path / "optimizer.pt", weights_only=True), sharded=sharded)
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng_file = path / f"rng-{rank}.pt"
    if rng_file.exists():
        set_rng_state(torch.load(rng_file, weights_only=True))
    return json.loads((path / "state.json").read_text())
