"""Load a model to evaluate: a model folder (or hub id), a PEFT adapter, or a prefgate run directory.

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

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefgate.errors import InputError

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


def _from_pretrained(source: str, dtype) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(source, trust_remote_code=False, dtype=dtype)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load model: {_first_line(err)}", where=source) from None


def _tokenizer(candidates: list[Path | str]) -> Any:
    from prefgate.data import load_tokenizer

    for folder in candidates:
        if isinstance(folder, Path) and not _has_tokenizer(folder):
            continue
        return load_tokenizer(str(folder))
    raise InputError("no tokenizer found", where=str(candidates[0]))


def _load_adapter(adapter_dir: Path, run_dir: Path, dtype) -> LoadedModel:
    from peft import PeftModel

    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
        base = config["base_model_name_or_path"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError("expected a PEFT adapter config with base_model_name_or_path",
                         where=str(adapter_dir / "adapter_config.json")) from None
    if not base:
        raise InputError("base_model_name_or_path is empty", where=str(adapter_dir / "adapter_config.json"))
    base_model = _from_pretrained(base, dtype)
    try:
        model = PeftModel.from_pretrained(base_model, str(adapter_dir)).merge_and_unload()
    except (OSError, ValueError, RuntimeError) as err:
        raise InputError(f"cannot load adapter: {_first_line(err)}", where=str(adapter_dir)) from None
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
        model = _from_pretrained(str(folder), torch_dtype)
        candidates: list[Path | str] = [folder, root] if root.exists() else [str(folder)]
        loaded = LoadedModel(model, _tokenizer(candidates), {"path": str(path), "base": None, "adapter": None})
    loaded.model.to(device or default_device())
    loaded.model.eval()
    return loaded
