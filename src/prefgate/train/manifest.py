"""The run manifest: everything needed to know what a run consumed and produced.

`manifest.json` (contract in ../shared/DESIGN.md and docs/train.md): run id, status, base model, loss and
every hyperparameter (the whole resolved config), dataset fingerprints, audit verdict, code version,
sha256 of every saved artifact, final metrics.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from prefgate import __version__
from prefgate.reportio import header, sha256_file


def hash_tree(run_dir: Path, folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, keyed by its path relative to `run_dir`."""
    return {str(p.relative_to(run_dir)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_id(config_json: str, created: dt.datetime, loss: str) -> str:
    digest = hashlib.sha256(config_json.encode()).hexdigest()[:6]
    return f"{created:%Y%m%d-%H%M%S}-{loss}-{digest}"


@dataclass
class RunResult:
    """How a training run ended: what `train` returns and the manifest records."""

    run_dir: Path
    status: str  # "completed" | "aborted"
    steps: int
    final_metrics: dict = field(default_factory=dict)
    reason: str | None = None
    checkpoint: dict | None = None  # a stopped run: the checkpoint kept and what was checked (`_keep_checkpoint`)


def write_manifest(result: RunResult, *, config, datasets: dict, audit: dict, artifacts: dict, extra: dict) -> dict:
    """Write `manifest.json` into the run folder (atomically); `datasets` maps "train" and "eval" to a dataset
    or None."""
    run_dir = result.run_dir
    train_ds, eval_ds = datasets["train"], datasets.get("eval")
    created = dt.datetime.now(dt.timezone.utc)
    config_json = config.model_dump_json()
    previous = run_dir / "manifest.json"
    rid = json.loads(previous.read_text())["run_id"] if previous.exists() else run_id(config_json, created,
                                                                                        config.loss.type.value)
    manifest = {
        **header("run", 1, created=created.isoformat()),
        "run_id": rid, "status": result.status, "reason": result.reason, "steps": result.steps,
        "base_model": config.model.name_or_path,
        "loss": {"type": config.loss.type.value, **config.loss.hyperparameters},
        "config": json.loads(config_json),
        "datasets": {"train": train_ds.describe(), "eval": eval_ds.describe() if eval_ds is not None else None},
        "audit": audit,
        "code_version": {"prefgate": __version__, "git_commit": git_commit()},
        "artifacts": artifacts,
        "final_metrics": result.final_metrics,
        **extra,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(run_dir / "manifest.json")
    return manifest
