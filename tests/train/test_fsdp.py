"""FSDP2 through accelerate on 2 CPU processes (gloo), for real: the shipped examples/accelerate/fsdp.yaml with
`ACCELERATE_USE_CPU=1 --num_processes 2` gives the same losses and weights as one process (1e-4), through a
checkpoint and `--resume`; the saved model loads with `from_pretrained`; a LoRA run with the adapter-disabled
reference (live, sharded with the policy) agrees too. Then the plumbing, without a launch: the plugin prefgate
builds from the launcher's settings, the settings FSDP refuses, a launch that did not connect,
and checkpoints that resume across layouts.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prefgate.errors import InputError
from prefgate.train import checkpoint as ckpt
from prefgate.train.distributed import check_launch, check_sharded, fsdp_plugin
from prefgate.train.loop import train
from tests.train.conftest import EXAMPLES, launch_train, losses, make_config

TOLERANCE = 1e-4


def _launch(config, tmp_path: Path, example: str, *extra: str) -> None:
    """`accelerate launch` of `prefgate train` on 2 CPU processes with a shipped accelerate config."""
    launch_train(config, tmp_path, ["--config_file", str(EXAMPLES / example)], *extra)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert set(a) == set(b)
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.slow
def test_fsdp_on_two_cpu_processes_matches_one_process_through_a_resume(tiny_dir, pairs_file, tmp_path):
    one = train(make_config(tiny_dir, pairs_file, tmp_path / "one", batch_size=4), show_progress=False)
    two = tmp_path / "two"
    # Steps 1-3 with fully sharded parameters (fsdp.yaml), checkpointed; then --resume for steps 4-5 with
    # parameters kept whole from forward to backward (fsdp_shard_grad_op.yaml): the checkpoint holds whole tensors.
    _launch(make_config(tiny_dir, pairs_file, two, batch_size=2, max_steps=3, checkpoint_every=3), tmp_path,
            "fsdp.yaml")
    assert losses(two) == pytest.approx(losses(one.run_dir)[:3], abs=TOLERANCE)
    halfway = tmp_path / "halfway"
    shutil.copytree(two, halfway)
    _launch(make_config(tiny_dir, pairs_file, two, batch_size=2, checkpoint_every=3), tmp_path,
            "fsdp_shard_grad_op.yaml", "--resume")

    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["status"] == "completed"
    fsdp = manifest["distributed"]["fsdp"]
    assert manifest["distributed"]["type"] == "fsdp" and fsdp["version"] == 2 and fsdp["wrap"] == ["LlamaDecoderLayer"]
    assert fsdp["units"] >= 3  # each decoder layer a unit of its own, besides the root: really sharded, not DDP
    assert not fsdp["reshard_after_forward"]  # the resumed half ran fsdp_shard_grad_op.yaml
    assert manifest["reference"]["strategy"] == "precomputed"  # auto: no frozen copy on any process
    assert manifest["forward"]["mode"] == "prefix_shared"  # the chunked LM head on FSDP's gathered weights
    assert len(losses(two)) == 5
    assert max(abs(x - y) for x, y in zip(losses(two), losses(one.run_dir), strict=True)) < TOLERANCE
    weights = load_file(str(two / "model" / "model.safetensors"))
    assert _max_diff(weights, load_file(str(one.run_dir / "model" / "model.safetensors"))) < TOLERANCE

    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(two / "model"))
    assert all(torch.equal(p, weights[name]) for name, p in loaded.named_parameters())

    # The checkpoint FSDP wrote (whole tensors, optimizer state by parameter name) resumes on one process.
    (halfway / "manifest.json").unlink()
    shutil.rmtree(halfway / "model")
    alone = train(make_config(tiny_dir, pairs_file, halfway, batch_size=4, checkpoint_every=3), resume=True,
                  show_progress=False)
    assert alone.status == "completed"
    assert max(abs(x - y) for x, y in zip(losses(halfway), losses(one.run_dir), strict=True)) < TOLERANCE


@pytest.mark.slow
def test_fsdp_lora_with_the_adapter_disabled_reference_matches_one_process(tiny_dir, pairs_file, tmp_path):
    lora = {"lora": {"r": 4}}
    one = train(make_config(tiny_dir, pairs_file, tmp_path / "one", batch_size=4, **lora), show_progress=False)
    _launch(make_config(tiny_dir, pairs_file, tmp_path / "two", batch_size=2, **lora), tmp_path, "fsdp.yaml")
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["distributed"]["type"] == "fsdp" and manifest["reference"]["kind"] == "adapter-disabled"
    assert max(abs(x - y) for x, y in zip(losses(tmp_path / "two"), losses(one.run_dir), strict=True)) < TOLERANCE
    name = "adapter/adapter_model.safetensors"
    assert _max_diff(load_file(str(tmp_path / "two" / name)), load_file(str(one.run_dir / name))) < TOLERANCE


# -- plumbing: no launch -------------------------------------------------------------------------------------


@pytest.fixture()
def fsdp_env(monkeypatch):
    """What `accelerate launch --config_file examples/accelerate/fsdp.yaml` puts in each process's environment."""
    for key in [k for k in os.environ if k.startswith("FSDP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    return monkeypatch


def test_the_plugin_gets_fsdp2_whole_state_dicts_and_a_transformer_layer_wrap(fsdp_env):
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    fsdp_env.setenv("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT")  # prefgate's checkpoints are whole tensors
    plugin = fsdp_plugin()
    assert plugin.fsdp_version == 2 and plugin.auto_wrap_policy is transformer_auto_wrap_policy
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"
    fsdp_env.setenv("FSDP_AUTO_WRAP_POLICY", "SIZE_BASED_WRAP")
    fsdp_env.setenv("FSDP_MIN_NUM_PARAMS", "1000")
    from torch.distributed.fsdp.wrap import size_based_auto_wrap_policy

    assert fsdp_plugin().auto_wrap_policy is size_based_auto_wrap_policy  # the launch's own policy is kept


def test_fsdp1_is_refused_with_the_flag_that_fixes_it(fsdp_env):
    fsdp_env.setenv("FSDP_VERSION", "1")
    with pytest.raises(InputError, match="--fsdp_version 2"):
        fsdp_plugin()


@pytest.mark.parametrize("overrides, field", [
    ({"reference.strategy": "model", "reference.model": "REF"}, "reference.strategy"),
    ({"eval.suite": "suite.jsonl", "eval.every": 2}, "eval.suite"),
])
def test_settings_fsdp_cannot_honour_are_refused(overrides, field, tiny_dir, pairs_file, tmp_path):
    overrides = {k: str(tiny_dir) if v == "REF" else v for k, v in overrides.items()}
    with pytest.raises(InputError) as err:
        check_sharded(make_config(tiny_dir, pairs_file, tmp_path / "run", **overrides))
    assert err.value.field == field


@pytest.mark.parametrize("overrides", [{}, {"lora": {"r": 4}}, {"reference.strategy": "precomputed",
                                                                "reference.model": "REF"}])
def test_fsdp_accepts_a_precomputed_or_adapter_disabled_reference(overrides, tiny_dir, pairs_file, tmp_path):
    overrides = {k: str(tiny_dir) if v == "REF" else v for k, v in overrides.items()}
    check_sharded(make_config(tiny_dir, pairs_file, tmp_path / "run", **overrides))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_accelerate_config_loads_with_accelerates_loader(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))  # unknown keys are an error there
    assert config.mixed_precision == "no"  # prefgate's `precision` decides; the files say so
    if config.distributed_type.value == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert config.num_processes >= config.num_machines


def test_the_examples_cover_each_launch_setting():
    assert {p.stem for p in EXAMPLES.glob("*.yaml")} == {"single_gpu", "ddp", "fsdp", "fsdp_shard_grad_op",
                                                          "multi_node", "deepspeed_zero2", "deepspeed_zero3"}


def test_a_launch_whose_processes_run_alone_is_refused():
    check_launch(1, 1)
    check_launch(2, 2)
    with pytest.raises(InputError, match="ACCELERATE_USE_CPU=1"):
        check_launch(2, 1)


def test_an_index_keyed_optimizer_state_restores_by_name_as_under_fsdp():
    """A checkpoint written on one process (AdamW state keyed by index) restores through the by-name path FSDP
    uses (torch.distributed.checkpoint's set_optimizer_state_dict): the same state, tensor for tensor."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].bias.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    named = ckpt._named(optimizer.state_dict(), model)
    assert sorted(named["state"]) == ["0.weight", "1.bias", "1.weight"]
    model.zero_grad(set_to_none=True)  # as at a resume: no gradients yet
    fresh = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    ckpt._restore(model, fresh, {}, named, sharded=False)
    for before, after in zip(optimizer.state_dict()["state"].values(), fresh.state_dict()["state"].values(),
                             strict=True):
        assert all(torch.equal(before[k], after[k]) for k in ("exp_avg", "exp_avg_sq", "step"))
