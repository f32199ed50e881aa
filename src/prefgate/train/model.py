"""The policy to train: loaded through the model runtime, then set up for training (checkpointing, LoRA/QLoRA,
training mode with every dropout off).

The policy trains in training mode, so that `model.gradient_checkpointing` takes effect (transformers checkpoints
a layer only when `self.training` is true), with every source of dropout set to 0 first (`disable_dropout`), as
TRL's default `disable_dropout=True`: a training-mode forward then gives the same logits as an eval-mode one.
The config fields `disable_dropout` zeroes are put back around every save (`original_dropout_config`), so a
saved `config.json` holds the values the model was loaded with.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from prefgate.config import LoraConfig, TrainConfig
from prefgate.errors import InputError
from prefgate.lm import checkpointing
from prefgate.lm.load import load_causal_lm

# Every dropout-like module of torch: `p` is the probability each reads in training mode.
DROPOUT_MODULES = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d,
                   torch.nn.AlphaDropout, torch.nn.FeatureAlphaDropout)
# Names of the numbers transformers reads only in training mode, as module attributes (Llama's and Qwen2's
# `attention_dropout`, passed as `dropout=0.0 if not self.training else self.attention_dropout`) or config fields
# (GPT-2's `resid_pdrop`, `embd_pdrop`, `attn_pdrop`, `summary_first_dropout`; `hidden_dropout`, `layerdrop`,
# `drop_path_rate`, MoE routers' `router_jitter_noise`, ...).
NOISE_NAME = re.compile(r"dropout|pdrop|layerdrop|drop_prob|drop_rate|drop_path|jitter")
_RECORD = "_prefgate_disabled_dropout"  # where load_policy keeps `disable_dropout`'s record on the model


@dataclass
class DisabledDropout:
    """What `disable_dropout` set to 0: `modules` (dropout modules whose p was above 0), `attributes` (their
    qualified names, `module.attribute`) and `config` ((config object, field, original value) triples)."""

    modules: int = 0
    attributes: list[str] = field(default_factory=list)
    config: list[tuple[Any, str, float]] = field(default_factory=list)

    def describe(self) -> dict:
        """The manifest's `dropout` block: what was zeroed; config fields with the values a save writes."""
        return {"modules": self.modules, "attributes": len(self.attributes),
                "config": {name: value for _, name, value in self.config}}


def _is_rate(name: str, value: Any) -> bool:
    """A number above 0 under a dropout-like name (never a bool, a module or None)."""
    return bool(NOISE_NAME.search(name)) and isinstance(value, (int, float)) and not isinstance(value, bool) \
        and value > 0


def _configs(model) -> list:
    """Every transformers config `model`'s modules hold, sub-configs (`text_config`, ...) included, once each."""
    from transformers import PretrainedConfig

    found: dict[int, Any] = {}
    stack = [getattr(module, "config", None) for module in model.modules()]
    while stack:
        config = stack.pop()
        if isinstance(config, PretrainedConfig) and id(config) not in found:
            found[id(config)] = config
            stack.extend(v for v in vars(config).values() if isinstance(v, PretrainedConfig))
    return list(found.values())


def disable_dropout(model) -> DisabledDropout:
    """Set every dropout of `model` to 0, in place: `p` of each torch dropout module (LoRA's `lora_dropout`
    included), every dropout-like number a module holds as an attribute (`NOISE_NAME`), and the same fields of
    its transformers configs. The mode is left as it is; returns what was changed."""
    record = DisabledDropout()
    for qualified, module in model.named_modules():
        if isinstance(module, DROPOUT_MODULES) and module.p > 0:
            module.p = 0.0
            record.modules += 1
        for name in [n for n, v in vars(module).items() if _is_rate(n, v)]:
            setattr(module, name, 0.0)
            record.attributes.append(f"{qualified}.{name}" if qualified else name)
    for config in _configs(model):
        for name in [n for n, v in vars(config).items() if _is_rate(n, v)]:
            record.config.append((config, name, getattr(config, name)))
            setattr(config, name, 0.0)
    return record


def disabled_dropout(model) -> DisabledDropout:
    """The record `load_policy` kept of `model` (an empty one for a model it did not load)."""
    return getattr(model, _RECORD, None) or DisabledDropout()


@contextlib.contextmanager
def original_dropout_config(model):
    """Inside the block, the config fields `load_policy` zeroed hold their original values (save the model
    here: its config.json keeps them); zeroed again after."""
    record = disabled_dropout(model)
    for config, name, value in record.config:
        setattr(config, name, value)
    try:
        yield model
    finally:
        for config, name, _ in record.config:
            setattr(config, name, 0.0)


def _qlora_config(lora: LoraConfig):
    if not lora.load_in_4bit:
        return None
    if not torch.cuda.is_available():
        raise InputError("QLoRA (load_in_4bit) needs a CUDA GPU", field="lora.load_in_4bit")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                              bnb_4bit_use_double_quant=True)


def _in_training_mode(model):
    """`model` with every dropout off (`disable_dropout`, the record kept on it) and in training mode."""
    record = disable_dropout(model)
    setattr(model, _RECORD, record)
    return model.train()


def load_policy(config: TrainConfig):
    """The model to train, full or wrapped with fresh LoRA adapters (only they require grad), in training mode
    with every dropout off (the module docstring)."""
    quant = _qlora_config(config.lora) if config.lora else None
    model = load_causal_lm(config.model.name_or_path, dtype=getattr(torch, config.model.dtype),
                           trust_remote_code=config.model.trust_remote_code,
                           attn_implementation=config.model.attn_implementation, quantization_config=quant)
    model.config.use_cache = False
    checkpointing.enable(model, checkpointing.resolve(config.model.gradient_checkpointing, model.config)[0])
    if config.lora is None:
        return _in_training_mode(model)
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    if quant is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    peft_config = PeftLoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                                 target_modules=config.lora.target_modules, task_type="CAUSAL_LM")
    return _in_training_mode(get_peft_model(model, peft_config))
