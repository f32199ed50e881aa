"""Snapshots: the model at a step worth keeping, in the format of the run's output (`save_pretrained`).

The run folder's `snapshots/` holds what the monitors and the in-training gate keep besides the resumable
checkpoints (`checkpoints/`):

- `snapshots/gate-passed/`: the latest step the in-training gate promoted (`eval.on_block: stop | keep_best`);
  with `keep_best` it becomes the run's `model/` or `adapter/` when a later evaluation blocked;
- `snapshots/collapse-step-NNNNNNN/`: the model at the step the collapse monitor fired.

A snapshot is a `model/` (full fine-tuning) or an adapter folder (LoRA) with the tokenizer, so
`prefgate eval --model RUN/snapshots/NAME` reads it as it is, plus `snapshot.json` (`step`, `why`). It is written
to a temporary folder and renamed when complete; a write the file system refuses raises `CheckpointNotWritten`
(the run stops, exit 1). The loop checks the weights finite before it writes one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from prefgate.train.checkpoint import CheckpointNotWritten

INFO = "snapshot.json"
GATE_PASSED = "gate-passed"


def collapse_name(step: int) -> str:
    return f"collapse-step-{step:07d}"


def save_snapshot(model, tokenizer, path: Path, *, step: int, why: str, state_dict: dict | None = None) -> Path:
    """Write `model` (its `save_pretrained` form) and `tokenizer` to `path` atomically, replacing what is there.
    `state_dict`: the weights to write instead of the model's own (under FSDP, the whole ones gathered)."""
    tmp = path.with_name(f".tmp-{path.name}")
    old = path.with_name(f".old-{path.name}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(str(tmp), **({} if state_dict is None else {"state_dict": state_dict}))
        tokenizer.save_pretrained(str(tmp))
        (tmp / INFO).write_text(json.dumps({"step": step, "why": why}, indent=2) + "\n")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)  # put the previous snapshot back
        raise CheckpointNotWritten(step, path, err) from err
    shutil.rmtree(old, ignore_errors=True)
    return path


def read_snapshot(path: Path) -> dict | None:
    """The `snapshot.json` of a complete snapshot, or None when there is none."""
    try:
        return json.loads((path / INFO).read_text())
    except (OSError, ValueError):
        return None


def publish(snapshot: Path, out: Path) -> None:
    """Make `out` (the run's `model/` or `adapter/`) a copy of the snapshot's model files."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(snapshot, out, ignore=shutil.ignore_patterns(INFO))
