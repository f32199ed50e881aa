"""Reference log-probs: where pi_ref comes from, chosen by `reference.strategy` and the loss type.

- `none`, or any reference-free loss (`LossType.needs_reference` is False): no reference at all.
- `auto`: with LoRA, the policy itself with its adapters disabled (no second copy in memory); with full
  fine-tuning, a frozen copy of the initial model.
- `model`: another model (path or hub id), frozen.
- `precomputed`: one no-grad pass over the training data before step 1, cached on disk under a key
  hashing the reference model's identity, the data fingerprint, the tokenizer and the length limits; a
  later run with the same inputs reuses it, and a changed input gives a new key.

Every reference forward runs in eval mode (no dropout) and without gradients, on the same forward path as the
policy (`forward: concatenated | prefix_shared`, see `step.Forward`), the precomputed pass included; a
reference model of its own resolves `forward: auto` for itself.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prefgate.lm.load import eval_mode
from prefgate.train.batches import Batch, TokenizedData, collate
from prefgate.train.step import CONCATENATED, Forward


class NoReference:
    kind = "none"

    def logps(self, batch: Batch) -> None:  # noqa: ARG002 - the reference strategies' one method
        return None


class ModelReference:
    """A frozen model of its own (a copy of the initial policy, or another checkpoint)."""

    kind = "model"

    def __init__(self, model, forward: Forward = CONCATENATED):
        self.model = model.eval().requires_grad_(False)
        self.forward = forward

    @torch.no_grad()
    def logps(self, batch: Batch) -> torch.Tensor:
        return self.forward.logps(self.model, batch)

    @classmethod
    def frozen_copy(cls, model, forward: Forward = CONCATENATED) -> ModelReference:
        return cls(copy.deepcopy(model), forward)


class AdapterDisabledReference:
    """The LoRA policy with its adapters switched off: the base model, without a second copy."""

    kind = "adapter-disabled"

    def __init__(self, peft_model, forward: Forward = CONCATENATED):
        self.model = peft_model
        self.forward = forward

    @torch.no_grad()
    def logps(self, batch: Batch) -> torch.Tensor:
        with self.model.disable_adapter(), eval_mode(self.model):
            return self.forward.logps(self.model, batch)


class CachedReference:
    """Reference log-probs looked up by dataset index and row role from a (N, roles) table."""

    kind = "precomputed"

    def __init__(self, table: torch.Tensor, path: Path | None = None, reused: bool = False):
        self.table = table
        self.path = path
        self.reused = reused

    def logps(self, batch: Batch) -> torch.Tensor:
        idx = torch.tensor(batch.indices, dtype=torch.long)
        rows = [self.table[idx, role] for role in range(self.table.shape[1])]
        return torch.cat(rows).to(batch.input_ids.device)


def model_identity(name_or_path: str, model=None) -> dict:
    """What distinguishes one set of weights from another, cheaply: for a local folder, each weight file's
    name, size and modification time; for a hub id, the resolved commit."""
    path = Path(name_or_path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".json"))
        return {"path": str(path.resolve()),
                "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    return {"hub_id": name_or_path, "commit": commit}


def tokenizer_identity(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    extra = json.dumps([getattr(tokenizer, "chat_template", None), tokenizer.eos_token_id, tokenizer.bos_token_id])
    return hashlib.sha256((text + extra).encode()).hexdigest()


def cache_key(*, model: dict, data_fingerprint: str, tokenizer: str, max_length: int,
              max_prompt_length: int | None, loss_rows: str, forward: str = "concatenated") -> str:
    payload = {"model": model, "data": data_fingerprint, "tokenizer": tokenizer, "max_length": max_length,
               "max_prompt_length": max_prompt_length, "rows": loss_rows, "format": 1}
    if forward != "concatenated":  # keys of caches written before the prefix-shared forward stay valid
        payload["forward"] = forward
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def precompute(source, data: TokenizedData, *, pad_id: int, batch_size: int, device) -> torch.Tensor:
    """(N, roles) float32 table of reference log-probs, from a live reference `source`."""
    columns = []
    for start in range(0, len(data), batch_size):
        indices = list(range(start, min(start + batch_size, len(data))))
        batch = collate(data, indices, pad_id=pad_id).to(device)
        columns.append(source.logps(batch).float().cpu().view(data.n_roles, len(indices)).T)
    return torch.cat(columns)


def cached_reference(source, data: TokenizedData, key: str, cache_dir: Path, *, pad_id: int, batch_size: int,
                     device) -> CachedReference:
    """Load the table for `key`, or compute and store it (atomically) when absent."""
    from safetensors.torch import load_file, save_file

    path = cache_dir / f"{key}.safetensors"
    if path.exists():
        table = load_file(str(path))["reference_logps"]
        if table.shape == (len(data), data.n_roles):
            return CachedReference(table, path, reused=True)
    table = precompute(source, data, pad_id=pad_id, batch_size=batch_size, device=device)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({"reference_logps": table.contiguous()}, str(tmp))
    os.replace(tmp, path)
    return CachedReference(table, path, reused=False)


@dataclass
class References:
    """The reference used for training batches and the one for held-out batches (they differ only when
    precomputed: one cached table per dataset)."""

    train: object
    eval: object
    strategy: str
    detail: dict

    def logps(self, batch: Batch):
        return self.train.logps(batch)

    def describe(self) -> dict:
        return {"strategy": self.strategy, **self.detail}


def _live_source(config, model, device, forward: Forward):
    """The live reference a strategy implies: another model (its own `forward: auto` resolution), the
    adapter-disabled policy or a frozen copy (the policy's forward)."""
    from prefgate.lm.load import load_causal_lm

    if config.reference.model:
        ref = load_causal_lm(config.reference.model, trust_remote_code=config.model.trust_remote_code,
                             what="reference model").to(device)
        return ModelReference(ref, Forward.resolve(ref, config.forward, config.pack_tokens)), config.reference.model
    if config.lora is not None:
        return AdapterDisabledReference(model, forward), config.model.name_or_path
    return ModelReference.frozen_copy(model, forward), config.model.name_or_path


def build_reference(config, model, splits: dict[str, tuple[TokenizedData, Any]], tokenizer, *, device, pad_id: int,
                    forward: Forward = CONCATENATED) -> References:
    """Pick the reference per `config.reference.strategy` and the loss type (see the module docstring).

    `splits` maps "train" (and, when there is one, "eval") to (tokenized rows, the dataset they came from);
    `forward` is the policy's."""
    strategy = config.reference.strategy
    if not config.loss.type.needs_reference or strategy == "none":
        none = NoReference()
        return References(none, none, "none", {})
    source, identity_of = _live_source(config, model, device, forward)
    if strategy != "precomputed":
        return References(source, source, strategy, {"kind": source.kind, "model": identity_of,
                                                     "forward": source.forward.mode})
    cache_dir = Path(config.reference.cache_dir or Path(os.environ.get("PREFGATE_HOME", ".prefgate")) / "cache"
                     / "reference")
    common = {"model": model_identity(identity_of, getattr(source, "model", None)),
              "tokenizer": tokenizer_identity(tokenizer), "max_length": config.data.max_length,
              "max_prompt_length": config.data.max_prompt_length,
              "loss_rows": f"{'paired' if config.loss.type.paired else config.loss.type.value}:"
                           f"{splits['train'][0].n_roles}",
              "forward": source.forward.key}
    tables = {}
    for name, (data, ds) in splits.items():
        key = cache_key(data_fingerprint=ds.fingerprint, **common)
        tables[name] = cached_reference(source, data, key, cache_dir, pad_id=pad_id,
                                        batch_size=config.eval.batch_size, device=device)
    forward_mode = source.forward.mode
    del source  # a frozen copy is no longer needed: that is the point of precomputing
    detail = {"cache": {name: {"path": str(t.path), "reused": t.reused} for name, t in tables.items()},
              "model": identity_of, "forward": forward_mode}
    return References(tables["train"], tables.get("eval", NoReference()), "precomputed", detail)
