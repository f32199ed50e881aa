"""Tiny models and pair data for trainer tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from prefgate.config import load_train_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "accelerate"  # the shipped accelerate configs
WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "fish", "bird", "rock", "star"]


def arithmetic_pairs(n: int) -> list[dict]:
    return [{"prompt": f"Question: What is {i % 9 + 1} plus {i // 9 + 1}?\nAnswer:",
             "chosen": f" {i % 9 + i // 9 + 2}.", "rejected": f" {i % 9 + i // 9 + 3}.", "category": "math"}
            for i in range(n)]


def write_pairs(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def ref_dir(tmp_path_factory) -> Path:
    """A second tiny model (other seed): a reference that differs from the policy at step 0."""
    from prefgate.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("ref"), seed=1)


@pytest.fixture()
def pairs_file(tmp_path) -> Path:
    return write_pairs(tmp_path / "pairs.jsonl", arithmetic_pairs(20))


def make_config(model_dir, train, out, **overrides):
    base = {"model": {"name_or_path": str(model_dir)}, "data": {"train": str(train), "max_length": 64},
            "batch_size": 4, "max_steps": 5, "output_dir": str(out), "optim": {"lr": 1e-3, "schedule": "constant"},
            "memory_probe": False}
    dotted = [f"{k}={json.dumps(v)}" for k, v in overrides.items() if "." in k]
    plain = {k: v for k, v in overrides.items() if "." not in k}
    return load_train_config(None, dotted, **{**base, **plain})


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(launch: list[str], program: list[str], *, deepspeed: bool = False,
                      timeout: int = 600) -> subprocess.CompletedProcess:
    """`accelerate launch LAUNCH --num_processes 2 PROGRAM` on 2 CPU processes (gloo), one thread each. `launch`:
    accelerate's flags (a `--config_file`, or `--multi_gpu ...`). ACCELERATE_USE_CPU=1 keeps accelerate on the CPU,
    except under DeepSpeed, which it would turn off (DeepSpeed finds its CPU accelerator itself)."""
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    env.update({"OMP_NUM_THREADS": "1", **({} if deepspeed else {"ACCELERATE_USE_CPU": "1"})})
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launch, "--num_processes", "2",
           "--main_process_port", str(free_port()), *program]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def launch_train(config, tmp_path: Path, launch: list[str], *extra: str, deepspeed: bool = False,
                 program: tuple[str, ...] = ("-m", "prefgate", "train")) -> subprocess.CompletedProcess:
    """`accelerate_launch` of `prefgate train CONFIG` (or `program CONFIG`; `extra`: its flags), the config written
    under `tmp_path`; asserts exit 0 for `prefgate train` itself."""
    path = tmp_path / f"{Path(config.output_dir).name}-{len(extra)}.yaml"
    path.write_text(json.dumps(config.model_dump(mode="json")))
    result = accelerate_launch(launch, [*program, str(path), *extra], deepspeed=deepspeed)
    if program[-1] == "train":
        assert result.returncode == 0, result.stderr[-3000:]
    return result
