"""A run killed with SIGKILL resumes to bit-identical weights; two processes match one (accelerate launch)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prefgate.train.loop import train
from tests.train.conftest import losses, make_config

pytestmark = pytest.mark.slow


def _write_config(path: Path, cfg) -> Path:
    path.write_text(json.dumps(cfg.model_dump(mode="json")))
    return path


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def test_sigkill_then_resume_is_bit_identical_to_an_uninterrupted_run(tiny_dir, pairs_file, tmp_path):
    settings = {"batch_size": 2, "max_steps": 120, "checkpoint_every": 3, "memory_probe": True,
                "optim.schedule": "cosine", "optim.warmup_steps": 5}
    whole = train(make_config(tiny_dir, pairs_file, tmp_path / "whole", **settings), show_progress=False)

    cfg = _write_config(tmp_path / "c.yaml", make_config(tiny_dir, pairs_file, tmp_path / "killed", **settings))
    # The same thread count as this process: bit-identity needs the same floating-point reduction order.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "prefgate", "train", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    target = tmp_path / "killed" / "checkpoints" / "step-0000009"
    deadline = time.time() + 120
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "manifest.json").exists(), "the run finished before it could be killed"
    killed_at = sorted((tmp_path / "killed" / "checkpoints").glob("step-*"))[-1].name
    assert killed_at < "step-0000120"

    resumed = train(make_config(tiny_dir, pairs_file, tmp_path / "killed", **settings), resume=True,
                    show_progress=False)
    assert resumed.status == "completed" and resumed.steps == 120
    a, b = _weights(whole.run_dir), _weights(resumed.run_dir)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
    assert losses(whole.run_dir) == losses(resumed.run_dir)  # metrics.jsonl is continuous too


def test_two_processes_match_one_at_the_same_global_batch(tiny_dir, pairs_file, tmp_path):
    one = train(make_config(tiny_dir, pairs_file, tmp_path / "one", batch_size=4), show_progress=False)
    cfg = _write_config(tmp_path / "c.yaml", make_config(tiny_dir, pairs_file, tmp_path / "two", batch_size=2))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--main_process_port", "29517",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "prefgate", "train", str(cfg)]
    # `accelerate launch --cpu` starts several processes only through MPI; this is its CPU multi-process path
    # without MPI (torchrun underneath, gloo backend), documented in docs/train.md.
    env = {**os.environ, "ACCELERATE_USE_CPU": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained 5 steps") == 1, result.stdout  # the main process reports, once
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["processes"] == 2
    assert manifest["forward"]["mode"] == "prefix_shared"  # DDP around the prefix-shared forward and chunked head
    l1, l2 = losses(one.run_dir), losses(tmp_path / "two")
    assert len(l1) == len(l2) == 5
    assert max(abs(x - y) for x, y in zip(l1, l2, strict=True)) < 1e-4
    w1, w2 = _weights(one.run_dir), _weights(tmp_path / "two")
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4
