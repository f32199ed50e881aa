"""TRL recipes as prefgate configs (`prefgate train --from-trl`), checked against TRL 1.16's own dataclasses."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re

import pytest
import yaml

from prefgate.cli import app
from prefgate.config import TRL_LOSS_ALIASES, TRL_LOSS_REFUSED, load_train_config
from prefgate.errors import InputError, InputErrors
from prefgate.losses import LossType
from prefgate.trlconfig import NOT_CARRIED, REFUSED, TRL_DEFAULTS, TRL_KEYS, convert_trl, load_trl_recipe

# TRL's own example (trl/scripts/dpo.py docstring), as a recipe, with the keys the issue names.
RECIPE = {
    "model_name_or_path": "Qwen/Qwen2-0.5B-Instruct", "dataset_name": "trl-lib/ultrafeedback_binarized",
    "learning_rate": 5.0e-6, "num_train_epochs": 1, "per_device_train_batch_size": 2, "max_steps": 1000,
    "gradient_accumulation_steps": 8, "eval_strategy": "steps", "eval_steps": 50, "output_dir": "Qwen2-0.5B-DPO",
    "remove_unused_columns": False, "use_peft": True, "lora_r": 32, "lora_alpha": 16, "beta": 0.05,
    "loss_type": "sigmoid", "precompute_ref_log_probs": True,
}


def _trl_fields() -> dict[str, dataclasses.Field]:
    from trl import DatasetMixtureConfig, DPOConfig, ModelConfig, ScriptArguments

    return {f.name: f for cls in (ScriptArguments, DPOConfig, ModelConfig, DatasetMixtureConfig)
            for f in dataclasses.fields(cls)}


def test_the_key_list_is_trls():
    assert TRL_KEYS - {"max_prompt_length", "warmup_ratio"} == set(_trl_fields())
    assert set(REFUSED) | set(NOT_CARRIED) <= TRL_KEYS


def test_the_defaults_written_are_trls():
    fields = _trl_fields()
    for key, value in TRL_DEFAULTS.items():
        assert fields[key].default == value, key
    assert fields["bf16"].default is None and fields["fp16"].default is False  # TRL: bf16 = not fp16


def test_every_trl_loss_type_is_accepted_or_refused_with_a_reason():
    from trl import DPOTrainer

    trl_names = set(re.findall(r'loss_type == "(\w+)"', inspect.getsource(DPOTrainer)))
    assert len(trl_names) == 15
    ours = {t.value for t in LossType}
    accepted = (trl_names & ours) | set(TRL_LOSS_ALIASES)
    assert accepted == {"sigmoid", "hinge", "ipo", "robust", "sft"}
    assert trl_names - accepted == set(TRL_LOSS_REFUSED)


def test_the_issue_keys_convert():
    conv = convert_trl(RECIPE)
    cfg = conv.config
    assert cfg["model"] == {"name_or_path": "Qwen/Qwen2-0.5B-Instruct", "gradient_checkpointing": True}
    assert cfg["data"] == {"train": "trl-lib/ultrafeedback_binarized"}
    assert cfg["optim"] == {"lr": 5e-6, "schedule": "linear"}
    assert (cfg["batch_size"], cfg["grad_accumulation"], cfg["epochs"], cfg["max_steps"]) == (2, 8, 1, 1000)
    assert cfg["loss"] == {"type": "dpo", "beta": 0.05}
    assert cfg["lora"] == {"r": 32, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"}
    assert cfg["reference"] == {"strategy": "precomputed"}
    assert (cfg["precision"], cfg["seed"], cfg["output_dir"]) == ("bf16", 42, "Qwen2-0.5B-DPO")
    assert [key for key, _ in conv.not_carried] == ["eval_steps", "eval_strategy", "remove_unused_columns"]
    assert "lr_scheduler_type=linear" in conv.defaults_used and any("all-linear" in n for n in conv.notes)
    load_train_config(None, **cfg)  # a valid prefgate config


def test_trl_defaults_fill_what_the_recipe_leaves_out():
    cfg = convert_trl({"model_name_or_path": "m", "dataset_name": "d.jsonl"}).config
    assert "lora" not in cfg and "reference" not in cfg
    assert (cfg["optim"]["lr"], cfg["batch_size"], cfg["epochs"], cfg["seed"]) == (1e-6, 8, 3, 42)
    assert (cfg["precision"], cfg["model"]["gradient_checkpointing"]) == ("bf16", True)


@pytest.mark.parametrize(("extra", "key", "value"), [
    ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}, "loss", {"type": "rpo", "alpha": 0.5}),
    ({"loss_type": "robust", "label_smoothing": 0.2}, "loss", {"type": "robust", "eps": 0.2}),
    ({"loss_type": "ipo", "beta": 0.3}, "loss", {"type": "ipo", "beta": 0.3}),
    ({"loss_type": "sft"}, "loss", {"type": "sft"}),
    ({"fp16": True}, "precision", "fp16"),
    ({"bf16": False}, "precision", "fp32"),
    ({"warmup_steps": 0.1, "max_steps": 50}, "optim", {"lr": 1e-6, "schedule": "linear", "warmup_steps": 5}),
    ({"lr_scheduler_type": "constant_with_warmup", "warmup_steps": 3}, "optim",
     {"lr": 1e-6, "schedule": "constant", "warmup_steps": 3}),
    ({"max_grad_norm": 0}, "optim", {"lr": 1e-6, "schedule": "linear", "max_grad_norm": None}),
    ({"report_to": ["wandb", "tensorboard"]}, "trackers", ["wandb", "tensorboard"]),
    ({"use_peft": True, "lora_target_modules": ["q_proj", "v_proj"], "load_in_4bit": True}, "lora",
     {"dropout": 0.05, "target_modules": ["q_proj", "v_proj"], "load_in_4bit": True}),  # TRL's r, alpha are ours
])
def test_conversions(extra, key, value):
    cfg = convert_trl({"model_name_or_path": "m", "dataset_name": "d.jsonl", **extra}).config
    assert cfg[key] == value


def test_every_problem_is_reported_at_once():
    recipe = {"model_name_or_path": "m", "dataset_name": "d", "loss_type": "exo_pair", "learnin_rate": 1.0,
              "f_divergence_type": "js_divergence", "use_dora": True, "num_train_epochs": 1.5,
              "lr_scheduler_type": "cosine_with_restarts"}
    with pytest.raises(InputErrors) as err:
        convert_trl(recipe, "r.yaml")
    lines = str(err.value).splitlines()
    assert [line.split("'")[1] for line in lines] == ["learnin_rate", "f_divergence_type", "use_dora",
                                                      "lr_scheduler_type", "num_train_epochs", "loss_type"]
    assert lines[0] == "r.yaml: field 'learnin_rate': not an argument of TRL 1.16's `trl dpo` (ScriptArguments, " \
                       "DPOConfig, ModelConfig)"
    assert "field 'loss_type': TRL's 'exo_pair' has no prefgate equivalent: EXO" in lines[-1]


def test_cli_writes_the_converted_config_and_takes_overrides(tmp_path, runner):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(dict(RECIPE, push_to_hub=True)))
    out = tmp_path / "prefgate.yaml"
    result = runner.invoke(app, ["train", "--from-trl", str(recipe), "max_steps=3", "--write-config", str(out)])
    assert result.exit_code == 0, result.output
    assert "from TRL: push_to_hub not carried: no prefgate equivalent" in result.stderr
    assert "from TRL: eval_strategy not carried: held-out pairs come from data.eval" in result.stderr
    cfg = load_train_config(out)
    assert cfg.max_steps == 3 and cfg.loss.type is LossType.DPO and cfg.lora.r == 32
    assert cfg == load_trl_recipe(recipe, ["max_steps=3"])[0]


def test_cli_exit_2_lists_every_problem(tmp_path, runner):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"model_name_or_path": "m", "dataset_name": "d", "loss_type": "apo_zero",
                                  "use_weighting": True}))
    result = runner.invoke(app, ["train", "--from-trl", str(recipe)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {recipe}: field 'use_weighting': WPO weighting is not implemented in prefgate (value True)",
        f"error: {recipe}: field 'loss_type': TRL's 'apo_zero' has no prefgate equivalent: "
        f"{TRL_LOSS_REFUSED['apo_zero']} (value 'apo_zero')",
    ]


def test_cli_needs_a_config_or_a_recipe(tmp_path, runner):
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 2 and "give a training config (YAML), or a TRL recipe with --from-trl" in result.stderr
    config = tmp_path / "c.yaml"
    config.write_text("{}")
    result = runner.invoke(app, ["train", str(config), "--from-trl", str(config)])
    assert result.exit_code == 2 and "give a config or --from-trl RECIPE, not both" in result.stderr


def test_a_lone_conversion_problem_is_one_line():
    with pytest.raises(InputError) as err:
        convert_trl({"dataset_name": "d"}, "r.yaml")
    assert not isinstance(err.value, InputErrors)
    assert str(err.value) == "r.yaml: field 'model_name_or_path': missing: the model to train"


@pytest.mark.slow
def test_a_converted_recipe_trains(tiny_dir, tmp_path, runner):
    from tests.train.conftest import arithmetic_pairs, write_pairs

    data = write_pairs(tmp_path / "pairs.jsonl", arithmetic_pairs(8))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": str(tiny_dir), "dataset_name": str(data),
                                      "per_device_train_batch_size": 4, "max_steps": 2, "learning_rate": 1e-3,
                                      "bf16": False, "max_length": 64, "output_dir": str(tmp_path / "run"),
                                      "use_peft": True, "lora_r": 4, "lora_target_modules": ["q_proj", "v_proj"]}))
    result = runner.invoke(app, ["train", "--from-trl", str(recipe), "memory_probe=false"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["loss"] == {"type": "dpo", "beta": 0.1} and "trained 2 steps" in result.stdout
    config = manifest["config"]
    assert (config["lora"]["r"], config["lora"]["target_modules"], config["optim"]["lr"]) == (4, ["q_proj", "v_proj"],
                                                                                             1e-3)
    assert (config["seed"], config["optim"]["schedule"], config["model"]["gradient_checkpointing"]) == (42, "linear",
                                                                                                       "full")
