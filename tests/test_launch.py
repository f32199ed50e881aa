"""Issue 19: `accelerate launch --cpu --num_processes 2 -m prefgate train` starts one process (without MPI), which
would train at half the global batch without a word; `prefgate train` says so and exits 2 instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from prefgate.commands.launch import launch_mismatch, requested_processes

# What accelerate 1.16's simple launcher exports (accelerate/utils/launch.py, prepare_simple_launcher_cmd_env):
# MASTER_ADDR/MASTER_PORT only when more than one process was asked for; WORLD_SIZE never (torchrun sets it).
ACCELERATE = {"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_DYNAMO_BACKEND": "NO", "OMP_NUM_THREADS": "1"}
SIMPLE_CPU_2 = {**ACCELERATE, "ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
LAUNCHER = ["/venv/bin/python", "/venv/bin/accelerate", "launch", "--cpu", "--num_processes", "2", "-m", "prefgate",
            "train", "c.yaml"]


def test_the_one_process_of_a_cpu_launch_asked_for_two_is_named_with_the_command_that_works():
    message = launch_mismatch(SIMPLE_CPU_2, LAUNCHER)
    assert message is not None and "\n" not in message
    assert message.startswith("accelerate launch was asked for 2 processes but started only this one")
    assert "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m prefgate train CONFIG" in message


def test_one_gpu_without_multi_gpu_is_named_too():
    message = launch_mismatch({**SIMPLE_CPU_2, "ACCELERATE_USE_CPU": "False"}, ["accelerate", "launch",
                                                                                "--num_processes=4"])
    assert "asked for 4 processes" in message and "add --multi_gpu" in message


@pytest.mark.parametrize("env", [
    {},  # not launched by accelerate
    ACCELERATE,  # accelerate launch with one process: no MASTER_PORT
    {**SIMPLE_CPU_2, "WORLD_SIZE": "2", "RANK": "0"},  # torchrun (--multi_gpu): really two processes
    {**SIMPLE_CPU_2, "PMI_SIZE": "2"},  # --cpu through mpirun
    {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"},  # a cluster's exports, no accelerate
])
def test_no_mismatch(env):
    assert launch_mismatch(env, LAUNCHER) is None


@pytest.mark.parametrize("args, n", [(LAUNCHER, 2), (["launch", "--num-processes=3"], 3), (["launch"], None),
                                     (["launch", "--num_processes"], None)])
def test_requested_processes(args, n):
    assert requested_processes(args) == n


@pytest.mark.slow
def test_accelerate_launch_cpu_two_processes_stops_with_one_line(tmp_path):
    """The real launcher (about 10 s: accelerate imports torch before it starts prefgate)."""
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"model": {"name_or_path": str(tmp_path / "never-loaded")},
                                  "data": {"train": str(tmp_path / "never-read.jsonl")}}))
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE")}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "-m", "prefgate", "train", str(config)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0  # accelerate reports the child's exit 2 as its own failure
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith("error: accelerate launch was asked for 2 processes but started only this one")
    assert "exit status 2" in proc.stderr
    assert not (tmp_path / "runs").exists()
