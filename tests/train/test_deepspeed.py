"""DeepSpeed ZeRO-2 and ZeRO-3 through accelerate on 2 CPU processes (gloo, DeepSpeed's CPU accelerator), for
real: the shipped examples/accelerate/deepspeed_zero{2,3}.yaml with `--num_processes 2` give the same losses and
weights as one process (1e-4), through a checkpoint and `--resume`; the saved model loads with `from_pretrained`.
ZeRO-3 runs with a DeepSpeed config file that partitions every parameter (the tiny model's tensors are all below
DeepSpeed's default persistence threshold, which would keep them whole). Then the plumbing, without a launch: the
settings prefgate imposes on the plugin, and those it refuses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prefgate.errors import InputError
from prefgate.train.distributed import deepspeed_plugin, make_accelerator
from prefgate.train.loop import train
from tests.train.conftest import EXAMPLES, launch_train, losses, make_config
from tests.train.test_fsdp import _max_diff

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (bash dev.sh test installs it)")

TOLERANCE = 1e-4
PARTITION_EVERYTHING = {"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0,
                                              "stage3_model_persistence_threshold": 0},
                        "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto"}


def _launch(config, tmp_path: Path, accelerate_config: Path, *extra: str,
            program: tuple[str, ...] = ("-m", "prefgate", "train")) -> subprocess.CompletedProcess:
    """`launch_train` under DeepSpeed with an accelerate config file."""
    return launch_train(config, tmp_path, ["--config_file", str(accelerate_config)], *extra, deepspeed=True,
                        program=program)


def _metric(run_dir: Path, name: str) -> list[float]:
    return [json.loads(line)[name] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _zero3_partitioning_everything(tmp_path: Path) -> Path:
    """An accelerate config naming a DeepSpeed config file: ZeRO-3 with every parameter partitioned."""
    ds_file = tmp_path / "ds.json"
    ds_file.write_text(json.dumps(PARTITION_EVERYTHING))
    path = tmp_path / "zero3_file.yaml"
    path.write_text(json.dumps({"compute_environment": "LOCAL_MACHINE", "distributed_type": "DEEPSPEED",
                                "deepspeed_config": {"deepspeed_config_file": str(ds_file), "zero3_init_flag": False},
                                "machine_rank": 0, "num_machines": 1, "num_processes": 2, "rdzv_backend": "static",
                                "same_network": True, "use_cpu": False}))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_zero_on_two_cpu_processes_matches_one_process_through_a_resume(stage, tiny_dir, pairs_file, tmp_path):
    # warm-up: the rate the schedule sets reaches DeepSpeed's optimizer; constant after it, since the first launch
    # stops at step 3 (a decaying schedule would end there)
    settings = {"batch_size": 2, "grad_accumulation": 2,
                "optim": {"lr": 1e-3, "schedule": "constant", "warmup_steps": 2, "max_grad_norm": 1.0}}
    one = train(make_config(tiny_dir, pairs_file, tmp_path / "one", **{**settings, "batch_size": 4}),
                show_progress=False)
    # ZeRO-2: the shipped example; ZeRO-3: the shipped example's settings through a DeepSpeed config file that
    # partitions every parameter (deepspeed_zero3.yaml itself is loaded by accelerate below)
    launch = EXAMPLES / "deepspeed_zero2.yaml" if stage == 2 else _zero3_partitioning_everything(tmp_path)
    two = tmp_path / "two"
    _launch(make_config(tiny_dir, pairs_file, two, max_steps=3, checkpoint_every=3, **settings), tmp_path, launch)
    assert (two / "checkpoints" / "step-0000003" / "deepspeed").is_dir()
    assert losses(two) == pytest.approx(losses(one.run_dir)[:3], abs=TOLERANCE)
    _launch(make_config(tiny_dir, pairs_file, two, checkpoint_every=3, **settings), tmp_path, launch, "--resume")

    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["processes"] == 2
    ds = manifest["distributed"]["deepspeed"]
    assert manifest["distributed"]["type"] == "deepspeed" and ds["zero_stage"] == stage
    assert (ds["micro_batch"], ds["gradient_accumulation_steps"], ds["gradient_clipping"]) == (2, 2, 1.0)
    assert manifest["reference"]["strategy"] == "precomputed"
    assert len(losses(two)) == 5
    assert max(abs(x - y) for x, y in zip(losses(two), losses(one.run_dir), strict=True)) < TOLERANCE
    assert _metric(two, "grad_norm") == pytest.approx(_metric(one.run_dir, "grad_norm"), abs=TOLERANCE)
    assert _metric(two, "lr") == pytest.approx(_metric(one.run_dir, "lr"), abs=1e-12)  # the warm-up reached it
    weights = load_file(str(two / "model" / "model.safetensors"))
    assert _max_diff(weights, load_file(str(one.run_dir / "model" / "model.safetensors"))) < TOLERANCE

    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(two / "model"))
    assert all(torch.equal(p, weights[name]) for name, p in loaded.named_parameters())


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_the_nan_guard_stops_before_a_nonfinite_step_lands(stage, tiny_dir, pairs_file, tmp_path):
    """Step 3's gradients are infinite and its loss finite: DeepSpeed skips the update, the loop stops with exit 1
    naming the step, and the checkpoint kept is step 2's, whose weights equal a clean run's step 2."""
    launch = EXAMPLES / "deepspeed_zero2.yaml" if stage == 2 else _zero3_partitioning_everything(tmp_path)
    run = tmp_path / "run"
    result = _launch(make_config(tiny_dir, pairs_file, run, batch_size=2, checkpoint_every=1), tmp_path, launch,
                     program=(str(Path(__file__).with_name("poisoned_launch.py")), "3"))
    assert result.returncode != 0
    assert "step 3: non-finite grad_norm" in result.stderr, result.stderr[-2000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "aborted" and manifest["steps"] == 3
    assert manifest["checkpoint"]["step"] == 2
    clean = train(make_config(tiny_dir, pairs_file, tmp_path / "clean", batch_size=4, max_steps=2,
                              checkpoint_every=2), show_progress=False)
    kept = load_file(str(run / "checkpoints" / "step-0000002" / "trainable.safetensors"))
    assert _max_diff(kept, load_file(str(clean.run_dir / "checkpoints" / "step-0000002" / "trainable.safetensors"))) \
        < TOLERANCE


# -- plumbing: no launch -------------------------------------------------------------------------------------


@pytest.fixture()
def ds_env(monkeypatch):
    """What `accelerate launch --config_file examples/accelerate/deepspeed_zero3.yaml` puts in the environment,
    with a launch that also asks for its own accumulation and clipping."""
    for key in [k for k in os.environ if k.startswith(("ACCELERATE_DEEPSPEED", "ACCELERATE_GRADIENT"))]:
        monkeypatch.delenv(key)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "8")
    monkeypatch.setenv("ACCELERATE_GRADIENT_CLIPPING", "5.0")
    return monkeypatch


def test_the_plugin_takes_batch_accumulation_and_clipping_from_the_train_config(ds_env, tiny_dir, pairs_file,
                                                                                 tmp_path):
    config = make_config(tiny_dir, pairs_file, tmp_path / "run", batch_size=3, grad_accumulation=2,
                         **{"optim.max_grad_norm": 0.5})
    plugin = deepspeed_plugin(config)
    ds = plugin.deepspeed_config
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["gradient_clipping"]) == \
        (3, 2, 0.5)  # the launch's 8 and 5.0 are replaced
    assert ds["zero_optimization"]["stage"] == 3  # the launch's own
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert plugin.zero3_init_flag is False  # each process loads the whole model
    unclipped = make_config(tiny_dir, pairs_file, tmp_path / "run", **{"optim.max_grad_norm": None})
    assert deepspeed_plugin(unclipped).deepspeed_config["gradient_clipping"] == 0.0


@pytest.mark.parametrize("settings, env, field", [
    ({}, {"ACCELERATE_USE_CPU": "1"}, "ACCELERATE_USE_CPU"),
    ({"precision": "fp16"}, {}, "precision"),
    ({"eval.suite": "suite.jsonl", "eval.every": 2}, {}, "eval.suite"),
    ({"reference.strategy": "model", "reference.model": "REF"}, {}, "reference.strategy"),
])
def test_settings_deepspeed_cannot_honour_are_refused_in_one_line(settings, env, field, ds_env, tiny_dir,
                                                                  pairs_file, tmp_path):
    for key, value in env.items():
        ds_env.setenv(key, value)
    settings = {k: str(tiny_dir) if v == "REF" else v for k, v in settings.items()}
    with pytest.raises(InputError) as err:
        make_accelerator(make_config(tiny_dir, pairs_file, tmp_path / "run", **settings), str(tmp_path / "run"))
    assert err.value.field == field and "\n" not in str(err.value)


def test_a_deepspeed_config_naming_an_optimizer_is_refused(ds_env, tiny_dir, pairs_file, tmp_path):
    ds_file = tmp_path / "ds.json"
    ds_file.write_text(json.dumps({"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW"}}))
    ds_env.delenv("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    ds_env.delenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
    ds_env.delenv("ACCELERATE_GRADIENT_CLIPPING")
    ds_env.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(ds_file))
    with pytest.raises(InputError, match="names an optimizer") as err:
        deepspeed_plugin(make_config(tiny_dir, pairs_file, tmp_path / "run"))
    assert err.value.field == "deepspeed_config.optimizer"


def test_a_checkpoint_resumes_only_under_the_layout_that_wrote_it(tmp_path):
    from prefgate.train import checkpoint as ckpt

    written = tmp_path / "step-0000002"
    (written / ckpt.DEEPSPEED).mkdir(parents=True)
    with pytest.raises(InputError, match="written under DeepSpeed and this run trains without it"):
        ckpt.load_checkpoint(written, model=None, optimizer=None, scheduler=None)
    shutil.rmtree(written / ckpt.DEEPSPEED)
    with pytest.raises(InputError, match="written without DeepSpeed and this run trains under it"):
        ckpt.load_checkpoint(written, model=None, optimizer=None, scheduler=None, engine=object())


@pytest.mark.slow
@pytest.mark.parametrize("stage", [3])  # ZeRO-2 passed too (by hand); left out of the suite for its time budget
def test_lora_with_the_adapter_disabled_reference_matches_one_process(stage, tiny_dir, pairs_file, tmp_path):
    lora = {"lora": {"r": 4}}
    one = train(make_config(tiny_dir, pairs_file, tmp_path / "one", batch_size=4, **lora), show_progress=False)
    launch = EXAMPLES / "deepspeed_zero2.yaml" if stage == 2 else _zero3_partitioning_everything(tmp_path)
    _launch(make_config(tiny_dir, pairs_file, tmp_path / "two", batch_size=2, **lora), tmp_path, launch)
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["distributed"]["deepspeed"]["zero_stage"] == stage
    assert manifest["reference"]["kind"] == "adapter-disabled"
    assert max(abs(x - y) for x, y in zip(losses(tmp_path / "two"), losses(one.run_dir), strict=True)) < TOLERANCE
    name = "adapter/adapter_model.safetensors"
    assert _max_diff(load_file(str(tmp_path / "two" / name)), load_file(str(one.run_dir / name))) < TOLERANCE
