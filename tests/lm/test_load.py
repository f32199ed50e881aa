"""Model loading: a model folder, a run directory with model/, and one with a LoRA adapter/."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from prefgate.errors import InputError
from prefgate.lm.load import load_model, resolve_dtype


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits


@pytest.fixture(scope="module")
def lora_run_dir(tiny_dir, tmp_path_factory):
    """A fake run directory: adapter/ holds a LoRA (non-zero B, so it changes the outputs) on the tiny model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(1)
    peft_model = get_peft_model(base, config)
    run_dir = tmp_path_factory.mktemp("run")
    peft_model.save_pretrained(run_dir / "adapter")
    (run_dir / "manifest.json").write_text(json.dumps({"run_id": "run-1"}))
    ids = [1, 41, 76, 228, 85]
    return run_dir, _logits(peft_model.eval(), ids), ids


def test_plain_model_folder(tiny_dir):
    loaded = load_model(tiny_dir)
    assert loaded.info == {"path": str(tiny_dir), "base": None, "adapter": None}
    assert not loaded.model.training and loaded.tokenizer.chat_template


@pytest.mark.filterwarnings("ignore::FutureWarning")  # raised inside peft, not ours
def test_run_dir_with_lora_adapter_loads_base_plus_adapter(tiny_dir, lora_run_dir):
    run_dir, expected, ids = lora_run_dir
    config = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_dir)
    loaded = load_model(run_dir)
    assert loaded.info == {"path": str(run_dir), "base": str(tiny_dir), "adapter": str(run_dir / "adapter")}
    got = _logits(loaded.model, ids)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, _logits(load_model(tiny_dir).model, ids), atol=1e-3)  # the adapter matters
    assert load_model(run_dir / "adapter").info["base"] == str(tiny_dir)  # the adapter folder itself


def test_run_dir_with_a_full_model(tiny_dir, tmp_path):
    shutil.copytree(tiny_dir, tmp_path / "model")
    loaded = load_model(tmp_path)
    assert loaded.info["path"] == str(tmp_path) and loaded.tokenizer is not None


def test_errors_are_one_line_input_errors(tmp_path, tiny_dir):
    with pytest.raises(InputError, match="cannot load model"):
        load_model(tmp_path)  # an empty folder
    bad = tmp_path / "run" / "adapter"
    bad.mkdir(parents=True)
    (bad / "adapter_config.json").write_text("{}")
    with pytest.raises(InputError, match="base_model_name_or_path"):
        load_model(tmp_path / "run")
    with pytest.raises(InputError, match="unknown dtype"):
        resolve_dtype("float13")
    assert resolve_dtype("auto") == torch.float32  # on CPU
