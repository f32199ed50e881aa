"""Loading the policy (full or LoRA, optionally QLoRA), and merging a trained adapter into its base."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from prefgate.config import LoraConfig, TrainConfig
from prefgate.errors import InputError


@contextlib.contextmanager
def eval_mode(model):
    """`model` in eval mode (no dropout) inside the block, its previous mode restored after; yields the model."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def load_causal_lm(name_or_path: str, *, trust_remote_code: bool = False, attn_implementation: str | None = None,
                   quantization_config=None, what: str = "model"):
    """`AutoModelForCausalLM.from_pretrained` in float32 (mixed precision is the accelerator's job), with a
    one-line error when it cannot be loaded."""
    from transformers import AutoModelForCausalLM

    kwargs = {"trust_remote_code": trust_remote_code, "dtype": torch.float32}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["dtype"] = torch.bfloat16
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except Exception as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise InputError(f"cannot load {what}: {reason}", where=name_or_path) from None


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
    model = load_causal_lm(config.model.name_or_path, trust_remote_code=config.model.trust_remote_code,
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


def merge_adapter(run_dir: str | Path, out: str | Path, *, trust_remote_code: bool = False) -> Path:
    """Write base + adapter of a run folder as one plain transformers model (and its tokenizer)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    adapter = Path(run_dir) / "adapter"
    if not (adapter / "adapter_config.json").exists():
        raise InputError("no adapter/adapter_config.json: not a LoRA run folder", where=str(run_dir))
    import json

    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(load_causal_lm(base, trust_remote_code=trust_remote_code, what="base model"),
                                      str(adapter))
    merged = model.merge_and_unload()
    out = Path(out)
    merged.save_pretrained(out)
    tok_src = adapter if (adapter / "tokenizer_config.json").exists() else base
    AutoTokenizer.from_pretrained(str(tok_src), trust_remote_code=trust_remote_code).save_pretrained(out)
    return out
