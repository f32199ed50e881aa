"""The policy to train: loaded through the model runtime, then set up for training (checkpointing, LoRA/QLoRA)."""

from __future__ import annotations

import torch

from prefgate.config import LoraConfig, TrainConfig
from prefgate.errors import InputError
from prefgate.lm.load import load_causal_lm


def _qlora_config(lora: LoraConfig):
    if not lora.load_in_4bit:
        return None
    if not torch.cuda.is_available():
        raise InputError("QLoRA (load_in_4bit) needs a CUDA GPU", field="lora.load_in_4bit")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                              bnb_4bit_use_double_quant=True)


def load_policy(config: TrainConfig):
    """The model to train: full, or wrapped with fresh LoRA adapters (only they require grad)."""
    quant = _qlora_config(config.lora) if config.lora else None
    model = load_causal_lm(config.model.name_or_path, dtype=getattr(torch, config.model.dtype),
                           trust_remote_code=config.model.trust_remote_code,
                           attn_implementation=config.model.attn_implementation, quantization_config=quant)
    model.config.use_cache = False
    if config.model.gradient_checkpointing:  # transformers 5 renamed it; older releases have only the old name
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora is None:
        return model
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    if quant is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.model.gradient_checkpointing)
    peft_config = PeftLoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                                 target_modules=config.lora.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, peft_config)
