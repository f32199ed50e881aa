"""Typed, strict configuration: one pydantic model per config file, one place for every default.

Unknown keys are errors (a typo never silently falls back to a default). `load_train_config(path,
overrides)` reads YAML and applies `key.sub=value` overrides from the command line; every error is an
`InputError` naming the file and the field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prefgate.errors import InputError
from prefgate.losses import LossType
from prefgate.yamlio import load_yaml, read_yaml_mapping, validated


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(Strict):
    name_or_path: str = Field(..., description="Hub id or local path of any AutoModelForCausalLM.")
    tokenizer: str | None = Field(None, description="Tokenizer hub id or path; default: the model's.")
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False
    attn_implementation: str | None = None


class DataConfig(Strict):
    train: str
    eval: str | None = None
    max_length: int = Field(1024, ge=2)
    max_prompt_length: int | None = Field(None, ge=1)
    skip_invalid: bool = False
    labels: str | None = Field(None, description="Human labels of a sample of the training pairs ({id, preferred, "
                               "rater} JSONL, as `prefgate label` writes): the pre-training audit checks the pairs' "
                               "labels against them and stops below 80% agreement.")


class LossConfig(Strict):
    """`type` plus that loss's hyperparameters; `LossType.defaults` is the one source of defaults."""

    model_config = ConfigDict(extra="allow")
    type: LossType = LossType.DPO

    @model_validator(mode="after")
    def _known_hyperparameters(self) -> LossConfig:
        allowed = self.type.defaults
        unknown = sorted(set(self.model_extra or {}) - set(allowed))
        if unknown:
            names = ", ".join(allowed) or "none"
            raise ValueError(f"unknown hyperparameter(s) {unknown} for loss '{self.type.value}' (it takes: {names})")
        return self

    @model_validator(mode="after")
    def _hyperparameter_values(self) -> LossConfig:
        """Each given value has its default's type (a float: any finite number) and `beta` is positive."""
        extra = self.model_extra or {}
        for name, default in self.type.defaults.items():
            if name in extra:
                extra[name] = _hyperparameter(name, extra[name], default)
        return self

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return {**self.type.defaults, **(self.model_extra or {})}


def _hyperparameter(name: str, value: Any, default: Any) -> Any:
    """`value` checked against the type of `default`; a number given as text (YAML reads `1e-2` as a string)
    is converted."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"hyperparameter '{name}' must be true or false, got {value!r}")
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"hyperparameter '{name}' must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"hyperparameter '{name}' must be a number, got {_type_name(value)}")
    if not math.isfinite(value if isinstance(value, float) else 0.0) or abs(value) > 1e300:
        shown = str(value) if isinstance(value, float) else f"an integer of {len(str(value))} digits"
        raise ValueError(f"hyperparameter '{name}' must be a finite number, got {shown}")
    if name == "beta" and not value > 0:
        raise ValueError(f"hyperparameter 'beta' must be > 0, got {value}")
    return float(value) if isinstance(default, float) else value


def _type_name(value: Any) -> str:
    return "null" if value is None else {bool: "true/false", dict: "a mapping", list: "a list"}.get(
        type(value), type(value).__name__)


class LoraConfig(Strict):
    r: int = Field(16, ge=1)
    alpha: float = 32.0
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    load_in_4bit: bool = Field(False, description="QLoRA through bitsandbytes; needs CUDA.")


class ReferenceConfig(Strict):
    strategy: Literal["auto", "model", "precomputed", "none"] = "auto"
    model: str | None = Field(None, description="Path or hub id of the reference, for strategy 'model'.")
    cache_dir: str | None = Field(None, description="For 'precomputed'; default $PREFGATE_HOME/cache/reference.")

    @model_validator(mode="after")
    def _model_given(self) -> ReferenceConfig:
        if self.strategy == "model" and not self.model:
            raise ValueError("strategy 'model' needs reference.model")
        return self


class OptimConfig(Strict):
    lr: float = Field(5e-6, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)

    @field_validator("lr")
    @classmethod
    def _fits_float32(cls, value: float) -> float:
        if value > FLOAT32_MAX:  # torch holds the learning rate in float32: past this it overflows mid-step
            raise ValueError(f"must be at most {FLOAT32_MAX:.4g} (the largest float32), got {value:g}")
        return value


FLOAT32_MAX = 3.4028234663852886e38

# The collapse monitor's default threshold for each signal, in nats per token (docs/train.md, "Monitors"). After the
# first differing token, a tenth of a nat per token is the continuation of the preferred answer made about 10% less
# likely per token, held over a whole window; the whole-answer mean keeps its earlier -0.5, since the tokens before
# the difference (which DPO often raises) dilute it.
COLLAPSE_THRESHOLDS = {"after_diff": -0.1, "mean": -0.5}


class MonitorConfig(Strict):
    """Collapse: the running mean of the signal over the last `collapse_window` steps below `collapse_threshold`.

    `signal: after_diff` (the default) reads the shift probe (`diagnose_every`): the chosen answer's per-token
    log-prob shift after the first token where chosen and rejected differ, on a fixed, seeded sample of
    training pairs; `mean` reads the whole-answer `logps/chosen_shift` of each step's batch. Losses without
    paired rows fall back to `mean`."""

    signal: Literal["after_diff", "mean"] = Field(
        "after_diff", description="after_diff: the probe's logps/chosen_shift_after_diff; mean: the batch's "
        "whole-answer logps/chosen_shift.")
    collapse_threshold: float | None = Field(None, lt=0, description="nats per token; default by signal: "
                                             "COLLAPSE_THRESHOLDS (after_diff -0.1, mean -0.5).")
    collapse_window: int = Field(10, ge=1, description="Optimizer steps the running mean covers.")
    on_collapse: Literal["warn", "stop"] = "warn"

    def threshold(self, signal: str) -> float:
        """The threshold for `signal` (the one the monitor reads, which may be the fallback `mean`)."""
        return self.collapse_threshold if self.collapse_threshold is not None else COLLAPSE_THRESHOLDS[signal]


class EvalConfig(Strict):
    """Held-out pairs (`data.eval`) and the in-training gate (`suite`): both every `every` steps and at the end."""

    every: int | None = Field(None, ge=1, description="Evaluate every N steps (and at the end).")
    batch_size: int = Field(8, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1, description="Evaluations without a better accuracy.")
    suite: str | None = Field(None, description="An eval suite (prefgate eval's format) run every `every` steps "
                              "and gated against the baseline with the same code as `prefgate gate`.")
    gate: str | None = Field(None, description="Gate policy YAML for the in-training gate; default: the built-in "
                             "policy.")
    baseline: str | None = Field(None, description="The eval report to gate against; default: the starting "
                                 "model's eval on the suite, computed before step 1 and cached by model and suite.")
    on_block: Literal["warn", "stop", "keep_best"] = Field(
        "warn", description="When the in-training gate blocks: warn; stop the run; or keep_best: train on and end "
        "with the latest evaluation the gate promoted as the run's model.")
    max_new_tokens: int = Field(64, ge=1, description="Generation length for the suite's items.")
    cache_dir: str | None = Field(None, description="Where the starting model's eval is cached; default "
                                  "$PREFGATE_HOME/cache/eval.")

    @model_validator(mode="after")
    def _suite_settings(self) -> EvalConfig:
        if self.suite is None:
            given = [name for name, value in (("on_block", self.on_block != "warn"), ("gate", self.gate),
                                              ("baseline", self.baseline)) if value]
            if given:
                raise ValueError(f"eval.{given[0]} needs eval.suite (the suite the in-training gate runs)")
        elif self.every is None:
            raise ValueError("eval.suite needs eval.every (how many optimizer steps between in-training evaluations)")
        return self


MONITOR_PROBE_EVERY = 1  # the shift probe's default cadence when the collapse monitor reads it (docs/train.md)


class TrainConfig(Strict):
    model: ModelConfig
    data: DataConfig
    loss: LossConfig = LossConfig()
    lora: LoraConfig | None = Field(None, description="LoRA settings; absent means full fine-tuning.")
    reference: ReferenceConfig = ReferenceConfig()
    optim: OptimConfig = OptimConfig()
    monitor: MonitorConfig = MonitorConfig()
    eval: EvalConfig = EvalConfig()
    batch_size: int = Field(4, ge=1, description="Pairs per micro-batch per process.")
    grad_accumulation: int = Field(1, ge=1)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; overrides epochs.")
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    seed: int = 0
    output_dir: str = "runs/latest"
    log_every: int = Field(1, ge=1)
    checkpoint_every: int | None = Field(None, ge=1)
    checkpoint_keep: int = Field(2, ge=1)
    trackers: list[Literal["tensorboard", "mlflow", "wandb"]] = []
    memory_probe: bool = True
    diagnose_every: int | None = Field(None, ge=1, description="Log the chosen shift before/at/after the first "
                                       "differing token on a fixed sample of training pairs every N steps; "
                                       "default: every step when the collapse monitor reads it (`probe_every`).")
    diagnose_pairs: int = Field(16, ge=1)
    registry_home: str | None = Field(None, description="The registry whose recorded audits the trainer checks "
                                      "the training data against; default $PREFGATE_HOME, else ./.prefgate.")
    forward: Literal["auto", "concatenated", "prefix_shared"] = Field(
        "auto", description="How a pair's log-probs are computed: 'prefix_shared' runs the prompt once for both "
        "completions (docs/performance.md), 'concatenated' runs two padded rows as TRL does, 'auto' picks prefix "
        "sharing where the model supports it and logs why not otherwise.")
    pack_tokens: int | None = Field(None, ge=1, description="prefix-shared forward only: pack several pairs into "
                                    "rows of at most this many tokens (worth it on GPU with flex_attention).")

    @field_validator("output_dir")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _reference_fits_loss(self) -> TrainConfig:
        if self.loss.type.needs_reference and self.reference.strategy == "none":
            raise ValueError(f"loss '{self.loss.type.value}' needs a reference; set reference.strategy")
        return self

    @model_validator(mode="after")
    def _packing_fits(self) -> TrainConfig:
        if self.pack_tokens is not None and self.forward == "concatenated":
            raise ValueError("pack_tokens packs the prefix-shared layout; it has no effect with forward "
                             "'concatenated' (set forward to 'auto' or 'prefix_shared', or drop pack_tokens)")
        return self

    @property
    def monitor_signal(self) -> tuple[str, str | None]:
        """(the collapse monitor's signal, why it is not the configured one or None): `after_diff` needs the
        shift probe, so paired rows and a live reference (or none at all)."""
        if self.monitor.signal == "mean":
            return "mean", None
        if not self.loss.type.paired:
            return "mean", f"loss '{self.loss.type.value}' has no paired rows to probe"
        if self.reference.strategy == "precomputed" and self.reference.model:
            return "mean", "a precomputed reference from reference.model has no live model to probe"
        return "after_diff", None

    @property
    def probe_every(self) -> int | None:
        """How often the shift probe runs: `diagnose_every`, else every step when the monitor reads it."""
        if self.diagnose_every is not None:
            return self.diagnose_every
        return MONITOR_PROBE_EVERY if self.monitor_signal[0] == "after_diff" else None

    @model_validator(mode="after")
    def _diagnose_fits(self) -> TrainConfig:
        if self.diagnose_every is None:
            return self
        if not self.loss.type.paired:
            raise ValueError(f"diagnose_every needs paired rows (chosen, rejected); loss '{self.loss.type.value}' "
                             "trains on single completions")
        if self.reference.strategy == "precomputed" and self.reference.model:
            raise ValueError("diagnose_every with a precomputed reference from reference.model is not supported "
                             "(the probe needs the live reference); use strategy 'model'")
        return self


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`["loss.beta=0.2", "lora=null"]` -> nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError(f"override {pair!r}: expected key=value (e.g. loss.beta=0.2)")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"override {pair!r}: {part} is set to a value and used as a section")
        try:
            node[leaf] = load_yaml(raw, "")
        except InputError as err:
            raise InputError(f"override of {key!r}: {err.message}") from None
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_train_config(path: str | Path | None, overrides: list[str] | None = None, **data: Any) -> TrainConfig:
    """Read a YAML train config (or start from `data`), apply overrides, validate strictly."""
    raw = _merge(read_yaml_mapping(path) if path else {}, data)
    raw = _merge(raw, parse_overrides(overrides or []))
    return validated(TrainConfig, raw, str(path or "config"))
