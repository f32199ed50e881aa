"""Reference log-probs: where pi_ref comes from, chosen by `reference.strategy`, the loss type and LoRA.

`choose(config)` decides, as a pure function of the config (docs/train.md, "Reference", has the table):
- `none`, or any reference-free loss (`LossType.needs_reference` is False): no reference at all.
- `auto`: with LoRA (and no `reference.model`), the policy itself with its adapters disabled, live (no second
  copy, so nothing to free); otherwise `precomputed`, so that no reference model is held while the policy trains.
- `model`: `reference.model` (path or hub id), frozen and live every step: for data that changes during training.
- `precomputed`: one no-grad pass over the training (and eval) data before step 1, cached on disk under a key
  hashing the reference model's identity, the data fingerprint, the tokenizer, the length limits, the row
  layout, the forward and the weights' dtype (bfloat16, or nf4 under QLoRA); a later run (or a resumed one)
  with the same inputs reuses it, a changed input gives a new key. With full fine-tuning and no
  `reference.model`, the pass scores the initial policy itself: no copy is ever made. A loaded
  `reference.model` is dropped after the pass.

The loop asks `live_reference` for the model that scores the reference (the shift probe reads it too, before
step 1), then `settle` turns it into the `References` used in training: the live object itself, or cached
tables that hold no model. Every reference forward runs in eval mode (no dropout) and without gradients, on
the same forward path as the policy (`forward: concatenated | prefix_shared`, see `step.Forward`), the
precomputed pass included; a reference model of its own resolves `forward: auto` for itself. The precomputed
pass runs outside autocast, in the model's own dtype, so its table does not depend on `precision`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prefgate.console import progress
from prefgate.lm.load import eval_mode
from prefgate.train.batches import Batch, TokenizedData, collate
from prefgate.train.step import CONCATENATED, Forward


@dataclass(frozen=True)
class Choice:
    """What `reference.strategy` resolves to: `none`, `model` (a live reference) or `precomputed`, and why."""

    strategy: str
    why: str


def choose(config) -> Choice:
    """The strategy a run takes (see the module docstring); `why` is the line the log and the manifest show."""
    configured, loss = config.reference.strategy, config.loss.type
    if not loss.needs_reference:
        return Choice("none", f"loss '{loss.value}' uses no reference")
    if configured != "auto":
        return Choice(configured, f"reference.strategy: {configured} (configured)")
    if config.reference.model:
        return Choice("precomputed", "auto: reference.model is a second model in memory, so its log-probs of the "
                      "fixed training data are computed once and the model is freed before step 1 "
                      "(reference.strategy: model keeps it live)")
    if config.lora is not None:
        return Choice("model", "auto: LoRA, so the reference is the policy with its adapters disabled; there is no "
                      "second model to free")
    return Choice("precomputed", "auto: full fine-tuning on a fixed dataset, so the initial policy is scored once "
                  "before step 1 instead of kept as a frozen copy")


class NoReference:
    kind = "none"

    def logps(self, batch: Batch) -> None:  # noqa: ARG002 - the reference strategies' one method
        return None


class _ModelBacked:
    """A reference that runs a model: the model, the forward that scores it and the name it was loaded by."""

    def __init__(self, model, forward: Forward = CONCATENATED, name: str | None = None):
        self.model = model
        self.forward = forward
        self.name = name


class ModelReference(_ModelBacked):
    """A frozen model of its own (`reference.model`)."""

    kind = "model"

    def __init__(self, model, forward: Forward = CONCATENATED, name: str | None = None):
        super().__init__(model.eval().requires_grad_(False), forward, name)

    @torch.no_grad()
    def logps(self, batch: Batch) -> torch.Tensor:
        return self.forward.logps(self.model, batch)


class AdapterDisabledReference(_ModelBacked):
    """The LoRA policy with its adapters switched off: the base model, without a second copy."""

    kind = "adapter-disabled"

    @torch.no_grad()
    def logps(self, batch: Batch) -> torch.Tensor:
        with self.model.disable_adapter(), eval_mode(self.model):
            return self.forward.logps(self.model, batch)


class InitialPolicyReference(_ModelBacked):
    """The fully fine-tuned policy before step 1 as its own reference: for the precomputed pass only, which
    needs no copy. Eval mode and no gradients for the pass; the policy's mode and `requires_grad` are left
    as they are. Never a live reference: after step 1 it would be the policy itself."""

    kind = "initial-policy"

    @torch.no_grad()
    def logps(self, batch: Batch) -> torch.Tensor:
        with eval_mode(self.model):
            return self.forward.logps(self.model, batch)


class CachedReference:
    """Reference log-probs looked up by dataset index and row role from a (N, roles) table; holds no model."""

    kind = "precomputed"

    def __init__(self, table: torch.Tensor, path: Path | None = None, reused: bool = False, key: str | None = None,
                 seconds: float = 0.0):
        self.table = table
        self.path = path
        self.reused = reused
        self.key = key
        self.seconds = seconds

    def logps(self, batch: Batch) -> torch.Tensor:
        idx = torch.tensor(batch.indices, dtype=torch.long)
        rows = [self.table[idx, role] for role in range(self.table.shape[1])]
        return torch.cat(rows).to(batch.input_ids.device)

    def describe(self) -> dict:
        return {"path": str(self.path), "key": self.key, "reused": self.reused, "rows": int(self.table.shape[0]),
                "seconds": round(self.seconds, 2)}


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
              max_prompt_length: int | None, loss_rows: str, forward: str = "concatenated",
              weights: str = "float32") -> str:
    payload = {"model": model, "data": data_fingerprint, "tokenizer": tokenizer, "max_length": max_length,
               "max_prompt_length": max_prompt_length, "rows": loss_rows, "format": 2}  # 2: no EOS after a chat turn
    if forward != "concatenated":  # keys of caches written before the prefix-shared forward stay valid
        payload["forward"] = forward
    if weights != "float32":  # float32 keys stay as they were before `model.dtype` and QLoRA were keyed
        payload["weights"] = weights
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def precompute(source, data: TokenizedData, *, pad_id: int, batch_size: int, device,
               show: str | None = None) -> torch.Tensor:
    """(N, roles) float32 table of reference log-probs, from a live reference `source`; `show`: the label of a
    progress bar, or None for none."""
    columns = []
    with progress(len(data), show or "", enabled=show is not None) as advance:
        for start in range(0, len(data), batch_size):
            indices = list(range(start, min(start + batch_size, len(data))))
            batch = collate(data, indices, pad_id=pad_id).to(device)
            columns.append(source.logps(batch).float().cpu().view(data.n_roles, len(indices)).T)
            advance(len(indices))
    return torch.cat(columns)


def cached_reference(source, data: TokenizedData, key: str, cache_dir: Path, *, pad_id: int, batch_size: int,
                     device, show: str | None = None) -> CachedReference:
    """Load the table for `key`, or compute and store it (atomically) when absent."""
    from safetensors.torch import load_file, save_file

    t0 = time.perf_counter()
    path = cache_dir / f"{key}.safetensors"
    if path.exists():
        table = load_file(str(path))["reference_logps"]
        if table.shape == (len(data), data.n_roles):
            return CachedReference(table, path, reused=True, key=key, seconds=time.perf_counter() - t0)
    table = precompute(source, data, pad_id=pad_id, batch_size=batch_size, device=device, show=show)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({"reference_logps": table.contiguous()}, str(tmp))
    os.replace(tmp, path)
    return CachedReference(table, path, reused=False, key=key, seconds=time.perf_counter() - t0)


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
        """The manifest's `reference` block: `strategy` as resolved, `configured`, `why`, and per strategy the
        live model (`kind`, `model`) or the cache (`cache: {split: {path, key, reused, rows, seconds}}`)."""
        return {"strategy": self.strategy, **self.detail}

    def keys(self) -> dict[str, str]:
        """The cache key of each precomputed table (empty for a live reference or none)."""
        return {name: entry["key"] for name, entry in self.detail.get("cache", {}).items()}

    def summary(self) -> str:
        """One line for the run's log: what the strategy resolved to and why, and what the pass cost."""
        line = f"{self.strategy} ({self.detail['why']})"
        if self.strategy == "model":
            return f"{line}; live: {self.detail['kind']} {self.detail['model']}"
        if self.strategy != "precomputed":
            return line
        tables = [f"{name}: {'reused' if c['reused'] else 'computed'} {c['rows']} rows in {c['seconds']:.1f} s"
                  for name, c in self.detail["cache"].items()]
        cache_dir = Path(next(iter(self.detail["cache"].values()))["path"]).parent
        return f"{line}; {', '.join(tables)} (cache {cache_dir}); no reference model is held during training"


def live_reference(config, model, *, device, forward: Forward = CONCATENATED):
    """The live object that scores the reference, before step 1: `reference.model` (loaded, frozen, its own
    `forward: auto` resolution), the LoRA policy with its adapters disabled, or the initial policy itself (only
    ever precomputed); `NoReference` when the run takes none. `forward` is the policy's."""
    from prefgate.lm.load import load_causal_lm

    if choose(config).strategy == "none":
        return NoReference()
    if config.reference.model:
        ref = load_causal_lm(config.reference.model, dtype=getattr(torch, config.model.dtype),  # as the policy's
                             attn_implementation=config.model.attn_implementation,
                             trust_remote_code=config.model.trust_remote_code, what="reference model").to(device)
        return ModelReference(ref, Forward.resolve(ref, config.forward, config.pack_tokens), config.reference.model)
    name = config.model.name_or_path
    if config.lora is not None:
        return AdapterDisabledReference(model, forward, name)
    return InitialPolicyReference(model, forward, name)


def settle(config, live, splits: dict[str, tuple[TokenizedData, Any]], tokenizer, *, device, pad_id: int,
           show_progress: bool = False) -> References:
    """The `References` a run trains with, from `live_reference`'s object: that object itself (`model`), or one
    cached table per split (`precomputed`, which keeps no reference to `live`: the caller drops it).

    `splits` maps "train" (and, when there is one, "eval") to (tokenized rows, the dataset they came from)."""
    choice = choose(config)
    detail = {"configured": config.reference.strategy, "why": choice.why}
    if choice.strategy == "none":
        return References(live, live, "none", detail)
    if choice.strategy != "precomputed":
        if live.kind == "initial-policy":  # the validator makes this unreachable; it would silently train ref = policy
            raise ValueError("a live reference for full fine-tuning needs reference.model")
        return References(live, live, choice.strategy, {**detail, "kind": live.kind, "model": live.name,
                                                        "forward": live.forward.mode})
    cache_dir = Path(config.reference.cache_dir or Path(os.environ.get("PREFGATE_HOME", ".prefgate")) / "cache"
                     / "reference")
    common = {"model": model_identity(live.name, live.model), "tokenizer": tokenizer_identity(tokenizer),
              "max_length": config.data.max_length, "max_prompt_length": config.data.max_prompt_length,
              "loss_rows": f"{'paired' if config.loss.type.paired else config.loss.type.value}:"
                           f"{splits['train'][0].n_roles}",
              "forward": live.forward.key,
              "weights": "nf4" if live.kind == "adapter-disabled" and config.lora.load_in_4bit else config.model.dtype}
    tables = {name: cached_reference(live, data, cache_key(data_fingerprint=ds.fingerprint, **common), cache_dir,
                                     pad_id=pad_id, batch_size=config.eval.batch_size, device=device,
                                     show=f"reference log-probs ({name})" if show_progress else None)
              for name, (data, ds) in splits.items()}
    detail.update(cache={name: t.describe() for name, t in tables.items()}, model=live.name,
                  forward=live.forward.mode)
    return References(tables["train"], tables.get("eval", NoReference()), "precomputed", detail)


def build_reference(config, model, splits: dict[str, tuple[TokenizedData, Any]], tokenizer, *, device, pad_id: int,
                    forward: Forward = CONCATENATED) -> References:
    """`live_reference` then `settle`, for a caller that needs nothing from the live reference in between."""
    live = live_reference(config, model, device=device, forward=forward)
    return settle(config, live, splits, tokenizer, device=device, pad_id=pad_id)


def resumed_keys(recorded: dict | None, references: References) -> tuple[dict[str, str], str | None]:
    """(this run's cache keys, a warning or None) on resume: `recorded` are the keys the checkpoint's run used.
    A different key means a changed input (a weight file's size or mtime, the tokenizer, the data, a length
    limit): the resumed steps then train against a reference computed from the inputs as they are now."""
    keys = references.keys()
    if not recorded or recorded == keys:
        return keys, None
    changed = ", ".join(f"{name} {recorded.get(name, 'none')[:12]} -> {keys.get(name, 'none')[:12]}"
                        for name in sorted(set(recorded) | set(keys)) if recorded.get(name) != keys.get(name))
    return keys, (f"the reference's cache key changed since the checkpoint ({changed}): the model, tokenizer, data "
                  "or length limits differ from the checkpointed run's, so the resumed steps use a reference "
                  "computed from them as they are now")
