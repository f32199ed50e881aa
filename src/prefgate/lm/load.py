"""Loading models and tokenizers, the one place every stage gets a model from.

- `load_causal_lm(name_or_path)`: `AutoModelForCausalLM.from_pretrained` with a one-line error (the trainer's
  policy and reference, the editor, the merge).
- `load_model(path)`: a model to run (eval, diagnose, sweep, sampling): a model folder (or hub id), a PEFT
  adapter, or a prefgate run directory, with its tokenizer, on a device, in eval mode.
- `merge_adapter(run_dir, out)`: base + adapter of a LoRA run as one plain transformers model.
- `eval_mode(model)`, `pad_token_id(tokenizer)`, `check_same_vocab(policy, reference)`: small helpers
  that every caller of a model needs.

`load_model(path)` looks, in order, for:
1. `path/adapter/adapter_config.json` (a run directory holding a LoRA adapter): the base model named by
   the adapter's `base_model_name_or_path`, with the adapter applied (`peft.PeftModel.from_pretrained`)
   and merged for speed;
2. `path/adapter_config.json` (an adapter folder itself): the same;
3. `path/model/` (a run directory holding a full model): that folder;
4. otherwise `path` itself, for `AutoModelForCausalLM.from_pretrained`.
The tokenizer comes from the first of the adapter folder, the run directory, the model folder and the
base model that has one. `trust_remote_code` is off. The model is put in eval mode.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefgate.errors import InputError
from prefgate.hub import hub_offline

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    info: dict[str, Any] = field(default_factory=dict)  # the report's "model" block


def _has_tokenizer(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in _TOKENIZER_FILES)


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def resolve_dtype(dtype: str):
    """'auto' is float32 on CPU and bfloat16 on a GPU that supports it; else a torch dtype name."""
    import torch

    if dtype == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise InputError(f"unknown dtype {dtype!r}; expected auto, float32, bfloat16 or float16", field="dtype")
    return value


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_causal_lm(name_or_path: str, *, dtype=None, trust_remote_code: bool = False,
                   attn_implementation: str | None = None, quantization_config=None, what: str = "model"):
    """`AutoModelForCausalLM.from_pretrained` (float32 unless `dtype`: mixed precision is the accelerator's job;
    bfloat16 under 4-bit quantization), with a one-line error naming the path when it cannot be loaded."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "dtype": dtype or torch.float32}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["dtype"] = torch.bfloat16
    offline = hub_offline(name_or_path)
    if offline:  # the adapter probe does not inherit local_files_only (transformers 5.x): pass it there too
        kwargs.update(local_files_only=True, adapter_kwargs={"local_files_only": True})
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except Exception as err:  # any failure to load is the user's path or files: one line, not a traceback
        raise InputError(f"cannot load {what}: {_first_line(err)}{offline}", where=name_or_path) from None



def _tokenizer(candidates: list[Path | str]) -> Any:
    from prefgate.data import load_tokenizer

    for folder in candidates:
        if isinstance(folder, Path) and not _has_tokenizer(folder):
            continue
        return load_tokenizer(str(folder))
    raise InputError("no tokenizer found", where=str(candidates[0]))


def _adapter_base(adapter_dir: Path) -> str:
    """The base model named by an adapter folder's adapter_config.json."""
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
        base = config["base_model_name_or_path"]
    except (ValueError, KeyError, TypeError, RecursionError):  # ValueError: bad JSON, not UTF-8, huge int
        raise InputError("expected a PEFT adapter config with base_model_name_or_path",
                         where=str(adapter_dir / "adapter_config.json")) from None
    if not base or not isinstance(base, str):
        raise InputError("base_model_name_or_path is empty", where=str(adapter_dir / "adapter_config.json"))
    return base


def _merged(base_model, adapter_dir: Path):
    """`base_model` with the adapter in `adapter_dir` applied and merged in."""
    from peft import PeftModel
    from safetensors import SafetensorError

    try:
        return PeftModel.from_pretrained(base_model, str(adapter_dir)).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as err:  # e.g. a truncated file
        raise InputError(f"cannot load adapter: {_first_line(err)}", where=str(adapter_dir)) from None


def _load_adapter(adapter_dir: Path, run_dir: Path, dtype) -> LoadedModel:
    base = _adapter_base(adapter_dir)
    model = _merged(load_causal_lm(base, dtype=dtype, what="base model"), adapter_dir)
    base_path = Path(base)
    tokenizer = _tokenizer([adapter_dir, run_dir, base_path if base_path.exists() else base])
    info = {"path": str(run_dir), "base": base, "adapter": str(adapter_dir)}
    return LoadedModel(model, tokenizer, info)


def load_model(path: str | Path, *, dtype: str = "auto", device: str | None = None) -> LoadedModel:
    """Load `path` (see the module docstring) onto `device` (default: cuda if available, else cpu)."""
    root = Path(path)
    torch_dtype = resolve_dtype(dtype)
    if (root / "adapter" / "adapter_config.json").exists():
        loaded = _load_adapter(root / "adapter", root, torch_dtype)
    elif (root / "adapter_config.json").exists():
        loaded = _load_adapter(root, root, torch_dtype)
    else:
        folder = root / "model" if (root / "model" / "config.json").exists() else root
        model = load_causal_lm(str(folder), dtype=torch_dtype)
        candidates: list[Path | str] = [folder, root] if root.exists() else [str(folder)]
        loaded = LoadedModel(model, _tokenizer(candidates), {"path": str(path), "base": None, "adapter": None})
    loaded.model.to(device or default_device())
    loaded.model.eval()
    return loaded


def merge_adapter(run_dir: str | Path, out: str | Path, *, trust_remote_code: bool = False) -> Path:
    """Write base + adapter of a run folder as one plain transformers model (and its tokenizer)."""
    from transformers import AutoTokenizer

    adapter = Path(run_dir) / "adapter"
    if not (adapter / "adapter_config.json").exists():
        raise InputError("no adapter/adapter_config.json: not a LoRA run folder", where=str(run_dir))
    base = _adapter_base(adapter)
    merged = _merged(load_causal_lm(base, trust_remote_code=trust_remote_code, what="base model"), adapter)
    out = Path(out)
    merged.save_pretrained(out)
    tok_src = adapter if (adapter / "tokenizer_config.json").exists() else base
    AutoTokenizer.from_pretrained(str(tok_src), trust_remote_code=trust_remote_code).save_pretrained(out)
    return out


@contextlib.contextmanager
def eval_mode(model):
    """`model` in eval mode (no dropout) inside the block, its previous mode restored after; yields the model."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def pad_token_id(tokenizer: Any) -> int:
    """The id to pad with: the tokenizer's pad token, else its EOS, else 0 (padded positions are never attended
    to or scored, so the choice changes no result)."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if value is not None:
            return int(value)
    return 0  # pragma: no cover


def check_same_vocab(policy: Any, reference: Any) -> None:
    """A one-line error unless the two models' output vocabularies have the same size (one tokenizer)."""
    p_vocab = policy.get_output_embeddings().weight.shape[0]
    r_vocab = reference.get_output_embeddings().weight.shape[0]
    if p_vocab != r_vocab:
        raise InputError(f"the reference model's vocabulary ({r_vocab}) differs from the policy's ({p_vocab}); "
                         "they must share a tokenizer", field="reference")
