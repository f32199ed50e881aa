"""Typed, strict configuration: one pydantic model per config file, one place for every default.

Unknown keys are errors (a typo never silently falls back to a default). `load_train_config(path,
overrides)` reads YAML and applies `key.sub=value` overrides from the command line; every error is an
`InputError` naming the file and the field.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from prefgate.errors import InputError, InputErrors
from prefgate.losses import LossType
from prefgate.yamlio import load_yaml, read_yaml_mapping, validation_errors


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(Strict):
    name_or_path: str = Field(..., description="Hub id or local path of any AutoModelForCausalLM.")
    tokenizer: str | None = Field(None, description="Tokenizer hub id or path; default: the model's.")
    trust_remote_code: bool = False
    gradient_checkpointing: Literal["auto", "off", "selective", "full"] = Field(
        "auto", description="Activation checkpointing of every decoder layer (`prefgate.lm.checkpointing`). off: "
        "every activation kept; selective: matmul and attention outputs kept, the element-wise rest recomputed in "
        "the backward; full: each layer's input kept, the whole layer recomputed; auto: selective from hidden size "
        "512 on, off below. `true`/`false` read as full/off.")
    attn_implementation: str | None = None
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="The weights' dtype as loaded and trained (policy and reference.model). bfloat16: "
        "pure bf16 weights, gradients and AdamW state, half the memory of float32, no float32 master copy; "
        "`precision` adds autocast on top. Log-probs are computed in float32 either way.")

    @field_validator("gradient_checkpointing", mode="before")
    @classmethod
    def _checkpointing_bool(cls, value):  # TRL's and older configs' boolean
        return {True: "full", False: "off"}.get(value, value) if isinstance(value, bool) else value


class DataConfig(Strict):
    train: str
    eval: str | None = None
    max_length: int = Field(1024, ge=2)
    max_prompt_length: int | None = Field(None, ge=1)
    skip_invalid: bool = False
    labels: str | None = Field(None, description="Human labels of a sample of the training pairs ({id, preferred, "
                               "rater} JSONL, as `prefgate label` writes): the pre-training audit checks the pairs' "
                               "labels against them and stops below 80% agreement.")


# TRL 1.16's `loss_type` names, as `loss.type`. Accepted where TRL computes the same per-example loss as ours
# (tests/test_losses.py compares each with TRL's own code); `ipo`, `hinge`, `robust`, `sft`, `kto` and `simpo` are
# our names already (docs/losses.md, "Coming from TRL", has the table and the small differences).
TRL_LOSS_ALIASES = {"sigmoid": LossType.DPO}

# TRL names refused, each with why: no prefgate loss computes the same thing.
TRL_LOSS_REFUSED = {
    "sigmoid_norm": "DPO on mean per-token log-ratios; prefgate's dpo uses summed log-ratios (ipo and simpo are "
                    "the length-normalised losses here)",
    "exo_pair": "EXO (Ji et al. 2024), a reverse-KL objective over the pair",
    "nca_pair": "NCA (Chen et al. 2024) scores each answer against the reference alone, not the pair's margin",
    "bco_pair": "BCO's pairwise form: separate sigmoids of each side's log-ratio, not a margin",
    "sppo_hard": "SPPO (Wu et al. 2024), hard labels: squared distance of each side's log-ratio to +-1/(2*beta)",
    "aot": "AOT (Melnyk et al. 2024) sorts the log-ratios across the batch, so a pair's loss depends on the others",
    "aot_unpaired": "AOT (Melnyk et al. 2024) sorts the log-ratios across the batch, so a pair's loss depends on "
                    "the others",
    "apo_zero": "APO-zero (D'Oosterlinck et al. 2024): separate sigmoids of the chosen and rejected log-ratios",
    "apo_down": "APO-down (D'Oosterlinck et al. 2024): lowers both answers, the rejected more",
    "discopop": "DiscoPOP (Lu et al. 2024), a blend of the logistic and exponential losses",
}


def loss_type_from_name(name: str) -> LossType:
    """The `LossType` of a `loss.type` value: our name, or TRL's name for the same loss. Anything else raises a
    ValueError: a TRL name with other math says why, an unknown name lists the valid ones."""
    if name in TRL_LOSS_ALIASES:
        return TRL_LOSS_ALIASES[name]
    valid = ", ".join(t.value for t in LossType)
    if name in TRL_LOSS_REFUSED:
        raise ValueError(f"TRL's loss_type '{name}' has no equivalent here: {TRL_LOSS_REFUSED[name]} (prefgate's "
                         f"losses: {valid})")
    try:
        return LossType(name)
    except ValueError:
        raise ValueError(f"unknown loss type {name!r}; expected one of: {valid} (or TRL's 'sigmoid', which is "
                         "'dpo')") from None


class LossConfig(Strict):
    """`type` plus that loss's hyperparameters; `LossType.defaults` is the one source of defaults.

    `type` also takes TRL's `loss_type` name where TRL computes the same loss (`TRL_LOSS_ALIASES`); a TRL name
    with other math is refused with the reason (`TRL_LOSS_REFUSED`)."""

    model_config = ConfigDict(extra="allow")
    type: LossType = LossType.DPO

    @field_validator("type", mode="before")
    @classmethod
    def _trl_names(cls, value: Any) -> Any:
        return loss_type_from_name(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _hyperparameters_known_and_valid(self) -> LossConfig:
        """Every problem at once: unknown names, then each value that does not have its default's type (a
        float: any finite number) or breaks `beta > 0`."""
        allowed = self.type.defaults
        extra = self.model_extra or {}
        problems = []
        unknown = sorted(set(extra) - set(allowed))
        if unknown:
            names = ", ".join(allowed) or "none"
            problems.append(f"unknown hyperparameter(s) {unknown} for loss '{self.type.value}' (it takes: {names})")
        for name, default in allowed.items():
            if name in extra:
                try:
                    extra[name] = _hyperparameter(name, extra[name], default)
                except ValueError as err:
                    problems.append(str(err))
        if problems:
            raise ValidationError.from_exception_data("LossConfig", [
                InitErrorDetails(type=PydanticCustomError("value_error", problem), loc=(), input=extra)
                for problem in problems])
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
    strategy: Literal["auto", "model", "precomputed", "none"] = Field(
        "auto", description="auto: LoRA -> the policy with adapters disabled (live); otherwise precomputed (no "
        "reference model held while training). model: reference.model, live. precomputed: scored once, cached.")
    model: str | None = Field(None, description="Path or hub id of the reference; default the initial policy. "
                              "Needed by strategy 'model'.")
    cache_dir: str | None = Field(None, description="For a precomputed reference (also auto's); default "
                                  "$PREFGATE_HOME/cache/reference.")

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


# What each tracker imports (one module of every group, as accelerate checks) and the package that brings it all;
# mlflow's store in the run folder is SQLite, which takes sqlalchemy and alembic (in `mlflow`, not `mlflow-skinny`).
TRACKER_PACKAGES = {"tensorboard": ([("tensorboard", "tensorboardX")], "tensorboard"),
                    "mlflow": ([("mlflow",), ("sqlalchemy",), ("alembic",)], "mlflow"),
                    "wandb": ([("wandb",)], "wandb")}


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

    @field_validator("trackers")
    @classmethod
    def _trackers_installed(cls, value: list[str]) -> list[str]:
        for name in value:  # accelerate would drop a tracker whose package is missing without a word
            groups, package = TRACKER_PACKAGES[name]
            for group in groups:
                if not any(importlib.util.find_spec(module) for module in group):
                    raise ValueError(f"tracker '{name}' needs the {group[0]} package, which is not installed: "
                                     f"pip install {package}")
        return value

    @model_validator(mode="after")
    def _dtype_fits_precision(self) -> TrainConfig:
        if self.model.dtype == "bfloat16" and self.precision == "fp16":
            raise ValueError("model.dtype bfloat16 with precision fp16 would autocast bf16 weights to float16; use "
                             "precision bf16 or fp32")
        return self

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
        shift probe, so paired rows (the probe scores the reference before step 1, before a precomputed
        reference's model is freed)."""
        if self.monitor.signal == "mean":
            return "mean", None
        if not self.loss.type.paired:
            return "mean", f"loss '{self.loss.type.value}' has no paired rows to probe"
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
    return validate_train_config(raw, overrides or [], str(path or "config"))


def validate_train_config(raw: dict[str, Any], overrides: list[str], where: str) -> TrainConfig:
    """`raw` with `key=value` overrides applied, as a TrainConfig. Every problem is reported at once: an
    `InputErrors` with one line per key naming `where` (a lone problem is a plain `InputError`). Checks across
    sections (a loss that needs a reference, ...) run once every section is valid on its own."""
    raw = _merge(raw, parse_overrides(overrides))
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as err:
        problems = validation_errors(err, where)
        raise (problems[0] if len(problems) == 1 else InputErrors(problems)) from None
