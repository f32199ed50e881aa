"""TRL DPO recipes as prefgate train configs: `prefgate train --from-trl recipe.yaml`.

A TRL recipe is the YAML `trl dpo --config` reads: the fields of TRL 1.16's `ScriptArguments`, `DPOConfig` (with
transformers' `TrainingArguments`), `ModelConfig` and `DatasetMixtureConfig`, all at the top level. `convert_trl`
turns one into prefgate's train config, key by key, so that the run is the one TRL would do:

- a key with a prefgate equivalent is carried (`learning_rate` -> `optim.lr`, `loss_type: sigmoid` -> `loss.type:
  dpo`, `use_peft` + `lora_r` -> `lora.r`, ...); where the recipe leaves out a key whose TRL default differs from
  ours (TRL trains 3 epochs at 1e-6 with batch 8, a linear schedule, seed 42, bf16, gradient checkpointing), TRL's
  default is written, and `TRL_DEFAULTS` is checked against TRL's own dataclasses by a test;
- a key whose value would change what is trained and that prefgate cannot do (a loss with other math, an
  f-divergence, DoRA, a non-`main` model revision, ...) is refused: every such key is one line of an
  `InputErrors`, naming the recipe and the key;
- a TRL key with nothing to carry (hub pushing, dataloader workers, logging directories, ...) is listed in
  `Conversion.not_carried` with the reason, never dropped without a word;
- a key TRL does not know is an error, as it is in prefgate's own configs (a typo never trains silently).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefgate.config import TRL_LOSS_REFUSED, TrainConfig, loss_type_from_name, validate_train_config
from prefgate.errors import InputError, InputErrors
from prefgate.losses import LossType
from prefgate.yamlio import read_yaml_mapping

# Every argument name of TRL 1.16's `trl dpo` (ScriptArguments, DPOConfig with TrainingArguments, ModelConfig,
# DatasetMixtureConfig); tests/test_trl_config.py compares it with the installed TRL's dataclasses. Plus two keys of
# earlier TRL / transformers recipes that still mean the same thing: `max_prompt_length`, `warmup_ratio`.
TRL_KEYS = frozenset("""
accelerator_config activation_checkpointing activation_checkpointing_kwargs activation_offloading adam_beta1
adam_beta2 adam_epsilon attn_implementation auto_find_batch_size average_tokens_across_devices batch_eval_metrics
beta bf16 bf16_full_eval bnb_4bit_quant_storage bnb_4bit_quant_type data_seed dataloader_drop_last
dataloader_in_order dataloader_multiprocessing_context dataloader_num_workers dataloader_persistent_workers
dataloader_pin_memory dataloader_prefetch_factor dataset_config dataset_name dataset_num_proc dataset_streaming
dataset_test_split dataset_train_split datasets ddp_backend ddp_broadcast_buffers ddp_bucket_cap_mb
ddp_find_unused_parameters ddp_static_graph ddp_timeout debug deepspeed disable_dropout disable_tqdm discopop_tau
do_eval do_predict do_train dtype enable_jit_checkpoint eval_accumulation_steps eval_delay eval_do_concat_batches
eval_on_start eval_steps eval_strategy eval_use_gather_object f_alpha_divergence_coef f_divergence_type fp16
fp16_full_eval fsdp fsdp_config full_determinism gradient_accumulation_steps gradient_checkpointing
gradient_checkpointing_kwargs greater_is_better hub_always_push hub_model_id hub_private_repo hub_revision
hub_strategy hub_token ignore_bias_buffers ignore_data_skip include_for_metrics include_num_input_tokens_seen
label_names label_smoothing label_smoothing_factor ld_alpha learning_rate length_column_name liger_kernel_config
load_best_model_at_end load_in_4bit load_in_8bit local_rank log_level log_level_replica log_on_each_node
logging_first_step logging_nan_inf_filter logging_steps logging_strategy lora_alpha lora_dropout lora_modules_to_save
lora_r lora_target_modules lora_target_parameters lora_task_type loss_type loss_weights lr_scheduler_kwargs
lr_scheduler_type max_grad_norm max_length max_steps metric_for_best_model model_init_kwargs model_name_or_path
model_revision neftune_noise_alpha num_train_epochs optim optim_args optim_target_modules output_dir
pad_to_multiple_of pad_token padding_free parallelism_config per_device_eval_batch_size per_device_train_batch_size
precompute_ref_batch_size precompute_ref_log_probs prediction_loss_only project push_to_hub ref_model_mixup_alpha
ref_model_sync_steps remove_unused_columns report_to restore_callback_states_from_checkpoint resume_from_checkpoint
router_aux_loss_coef run_name save_on_each_node save_only_model save_steps save_strategy save_total_limit seed
skip_memory_metrics streaming sync_ref_model test_split_size tf32 torch_compile torch_compile_backend
torch_compile_mode torch_empty_cache_steps trackio_bucket_id trackio_space_id trackio_static_space_id
train_sampling_strategy truncation_mode trust_remote_code use_bnb_nested_quant use_cache use_cpu use_dora
use_liger_kernel use_peft use_rslora use_weighting warmup_steps weight_decay
max_prompt_length warmup_ratio
""".split())

# TRL 1.16's defaults where they differ from prefgate's, written into the converted config when the recipe leaves
# the key out. `bf16` is None in the dataclass and becomes `not fp16` in `__post_init__`; `lora_dropout` is
# ModelConfig's. tests/test_trl_config.py checks each against TRL's dataclasses.
TRL_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-6, "per_device_train_batch_size": 8, "num_train_epochs": 3.0, "lr_scheduler_type": "linear",
    "seed": 42, "gradient_checkpointing": True, "lora_dropout": 0.05,
}

# Keys that change what TRL trains, at values prefgate cannot reproduce: key -> (is the value harmless?, why not).
REFUSED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "f_divergence_type": (lambda v: v == "reverse_kl", "prefgate's losses use the reverse KL (standard DPO) only"),
    "use_weighting": (lambda v: not v, "WPO weighting is not implemented in prefgate"),
    "ld_alpha": (lambda v: v is None, "LD-DPO's down-weighting of the longer completion is not implemented"),
    "sync_ref_model": (lambda v: not v, "TR-DPO's reference syncing is not implemented; the reference is fixed"),
    "truncation_mode": (lambda v: v == "keep_start", "prefgate keeps the start of each completion (as TRL's "
                        "keep_start); keep_end is not implemented"),
    "model_revision": (lambda v: v in (None, "main"), "prefgate loads the default revision; download that revision "
                       "to a folder and give its path"),
    "use_dora": (lambda v: not v, "DoRA adapters are not implemented; prefgate trains LoRA"),
    "use_rslora": (lambda v: not v, "rank-stabilised LoRA scaling is not implemented"),
    "lora_modules_to_save": (lambda v: not v, "prefgate's adapters train the LoRA matrices only"),
    "lora_target_parameters": (lambda v: not v, "prefgate's adapters target modules, not parameters"),
    "load_in_8bit": (lambda v: not v, "8-bit loading is not implemented; load_in_4bit (QLoRA) is"),
    "datasets": (lambda v: not v, "dataset mixtures are not read; build the mixture into one file and give it as "
                 "dataset_name"),
    "dataset_train_split": (lambda v: v == "train", "data.train has no split setting; save that split to a file"),
    "neftune_noise_alpha": (lambda v: v is None, "NEFTune's embedding noise is not implemented"),
    "label_smoothing_factor": (lambda v: not v, "label smoothing of the LM loss is not implemented"),
}

# TRL keys with nothing to carry, and why; any other TRL key in this group is reported with GENERIC_NOT_CARRIED.
NOT_CARRIED: dict[str, str] = {
    "dtype": "prefgate loads weights in float32 and runs `precision` (bf16/fp16 autocast) over them",
    "disable_dropout": "prefgate trains with every dropout at 0 (in training mode), as TRL's default",
    "eval_strategy": "held-out pairs come from data.eval (a file) every eval.every steps; set them in the config",
    "eval_steps": "see eval_strategy", "per_device_eval_batch_size": "set eval.batch_size with data.eval",
    "dataset_test_split": "held-out pairs come from data.eval (a file)",
    "resume_from_checkpoint": "use `prefgate train --resume`",
    "precompute_ref_batch_size": "the reference pass uses batch_size",
    "report_to": "only tensorboard, mlflow and wandb are trackers here",
    "optim": "prefgate's optimizer is AdamW (torch)", "logging_first_step": "prefgate logs every log_every steps",
    "save_strategy": "checkpoints are written every checkpoint_every steps",
    "padding_free": "prefgate's prefix-shared forward (forward: auto) packs a pair's tokens without padding",
    "pad_to_multiple_of": "prefgate pads each batch to its longest row",
    "tf32": "a matmul precision switch of the GPU; prefgate leaves torch's default",
    "discopop_tau": "used only by loss_type discopop", "f_alpha_divergence_coef": "used only by f_divergence_type "
    "alpha_divergence",
    "bnb_4bit_quant_type": "prefgate's QLoRA (lora.load_in_4bit) uses its own bitsandbytes settings",
    "use_bnb_nested_quant": "prefgate's QLoRA (lora.load_in_4bit) uses its own bitsandbytes settings",
    "bnb_4bit_quant_storage": "prefgate's QLoRA (lora.load_in_4bit) uses its own bitsandbytes settings",
    "lora_task_type": "prefgate's adapters are causal-LM LoRA",
    "remove_unused_columns": "prefgate keeps every column: tools and chat_template_kwargs reach the chat template, "
    "the others pass through to what it writes",
}
GENERIC_NOT_CARRIED = "no prefgate equivalent (a Trainer setting for the hub, logging, data loading or distribution)"


@dataclass
class Conversion:
    """A TRL recipe as a prefgate train config (`config`, the raw mapping TrainConfig validates), with every TRL
    key that was not carried and why, and the TRL defaults written because the recipe left them out."""

    config: dict[str, Any]
    not_carried: list[tuple[str, str]] = field(default_factory=list)
    defaults_used: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Converter:
    """One recipe's conversion: `carry` records what a key became, `refuse` collects every refusal."""

    def __init__(self, recipe: dict[str, Any], where: str):
        self.recipe, self.where = recipe, where
        self.out = Conversion({})
        self.errors: list[InputError] = []
        self.used: set[str] = set()

    def get(self, key: str) -> Any:
        """The recipe's value, or TRL's default where it differs from ours (and the default is then listed)."""
        self.used.add(key)
        if key in self.recipe:
            return self.recipe[key]
        if key in TRL_DEFAULTS:
            value = TRL_DEFAULTS[key]
            self.out.defaults_used.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
            return TRL_DEFAULTS[key]
        return None

    def put(self, dotted: str, value: Any) -> None:
        node = self.out.config
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    def refuse(self, key: str, why: str) -> None:
        self.used.add(key)
        self.errors.append(InputError(f"{why} (value {self.recipe.get(key)!r})", where=self.where, field=key))


def convert_trl(recipe: dict[str, Any], where: str = "recipe") -> Conversion:
    """`recipe` (a TRL DPO recipe's top-level mapping) as prefgate's config; raises InputErrors (or an InputError
    for a lone problem) listing every unknown or refused key at once."""
    conv = _Converter(recipe, where)
    for key in sorted(set(recipe) - TRL_KEYS):
        conv.errors.append(InputError("not an argument of TRL 1.16's `trl dpo` (ScriptArguments, DPOConfig, "
                                      "ModelConfig)", where=where, field=key))
    for key, (harmless, why) in REFUSED.items():
        if key in recipe and not harmless(recipe[key]):
            conv.refuse(key, why)
    for step in (_model, _data, _optim, _schedule, _batches, _precision, _loss, _reference, _lora, _logging):
        step(conv)
    for key in sorted(set(recipe) & TRL_KEYS - conv.used - set(REFUSED)):
        conv.out.not_carried.append((key, NOT_CARRIED.get(key, GENERIC_NOT_CARRIED)))
    if conv.errors:
        raise conv.errors[0] if len(conv.errors) == 1 else InputErrors(conv.errors)
    return conv.out


def load_trl_recipe(path: str | Path, overrides: list[str] | None = None) -> tuple[TrainConfig, Conversion]:
    """Read a TRL recipe, convert it, apply prefgate `key=value` overrides and validate (errors name the recipe)."""
    conversion = convert_trl(read_yaml_mapping(path), str(path))
    return validate_train_config(conversion.config, overrides or [], str(path)), conversion


# -- one function per section of prefgate's config ----------------------------------------------------------------

def _model(conv: _Converter) -> None:
    name = conv.get("model_name_or_path")
    if not name:
        conv.errors.append(InputError("missing: the model to train", where=conv.where, field="model_name_or_path"))
    else:
        conv.put("model.name_or_path", name)
    for key in ("trust_remote_code", "attn_implementation", "gradient_checkpointing"):
        value = conv.get(key)
        if value is not None:
            conv.put(f"model.{key}", value)


def _data(conv: _Converter) -> None:
    name = conv.get("dataset_name")
    if not name:
        conv.errors.append(InputError("missing: the preference data (a hub id, file or datasets folder)",
                                      where=conv.where, field="dataset_name"))
    else:
        conv.put("data.train", name)
    conv.used.add("dataset_train_split")
    if "max_length" in conv.recipe:
        if conv.get("max_length") is None:
            conv.refuse("max_length", "prefgate needs a max_length (its truncation and memory probe are sized by it)")
        else:
            conv.put("data.max_length", conv.get("max_length"))
    if conv.recipe.get("max_prompt_length") is not None:
        conv.put("data.max_prompt_length", conv.get("max_prompt_length"))


def _optim(conv: _Converter) -> None:
    conv.put("optim.lr", conv.get("learning_rate"))
    for key, ours in (("weight_decay", "weight_decay"), ("adam_epsilon", "eps")):
        if key in conv.recipe:
            conv.put(f"optim.{ours}", conv.get(key))
    if "adam_beta1" in conv.recipe or "adam_beta2" in conv.recipe:
        conv.put("optim.betas", [conv.get("adam_beta1") or 0.9, conv.get("adam_beta2") or 0.999])
    if "max_grad_norm" in conv.recipe:
        norm = conv.get("max_grad_norm")
        conv.put("optim.max_grad_norm", norm if norm else None)  # transformers clips only when > 0


def _schedule(conv: _Converter) -> None:
    """lr_scheduler_type and warmup: transformers' `constant` has no warmup, prefgate's `constant` warms up."""
    name = conv.get("lr_scheduler_type")
    warmup = _warmup_steps(conv)
    ours = {"linear": "linear", "cosine": "cosine", "constant_with_warmup": "constant"}.get(name)
    if name == "constant" and not warmup:
        ours = "constant"
    if ours is None:
        conv.refuse("lr_scheduler_type", "prefgate's schedules are linear, cosine and constant (with warmup)"
                    + ("; transformers' 'constant' ignores warmup_steps" if name == "constant" else ""))
        return
    conv.put("optim.schedule", ours)
    if warmup:
        conv.put("optim.warmup_steps", warmup)


def _warmup_steps(conv: _Converter) -> int:
    """Warmup in optimizer steps: transformers reads a warmup_steps below 1 (and the older warmup_ratio) as a
    fraction of the run, which prefgate can turn into steps only when max_steps fixes the run's length."""
    steps, ratio = conv.get("warmup_steps") or 0, conv.get("warmup_ratio") or 0
    if not isinstance(steps, (int, float)) or isinstance(steps, bool):
        conv.refuse("warmup_steps", "expected a number")
        return 0
    fraction = ratio or (steps if 0 < steps < 1 else 0)
    if not fraction:
        return int(steps)
    max_steps = conv.recipe.get("max_steps")
    if isinstance(max_steps, int) and max_steps > 0:
        return math.ceil(fraction * max_steps)  # transformers' get_warmup_steps rounds up
    conv.refuse("warmup_ratio" if ratio else "warmup_steps", "a warmup fraction needs max_steps here; give "
                "warmup_steps as a number of steps")
    return 0


def _batches(conv: _Converter) -> None:
    conv.put("batch_size", conv.get("per_device_train_batch_size"))
    if "gradient_accumulation_steps" in conv.recipe:
        conv.put("grad_accumulation", conv.get("gradient_accumulation_steps"))
    epochs = conv.get("num_train_epochs")
    if isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and float(epochs).is_integer():
        conv.put("epochs", int(epochs))
    else:
        conv.refuse("num_train_epochs", "prefgate trains whole epochs; give max_steps for a partial one")
    max_steps = conv.get("max_steps")
    if max_steps is not None and max_steps != -1:
        conv.put("max_steps", max_steps)
    conv.put("seed", conv.get("seed"))
    if "output_dir" in conv.recipe:
        conv.put("output_dir", conv.get("output_dir"))


def _precision(conv: _Converter) -> None:
    """TRL turns an unset bf16 into `not fp16`: a recipe that names neither trains in bf16."""
    fp16, bf16 = bool(conv.get("fp16")), conv.get("bf16")
    if bf16 is None:
        bf16 = not fp16
        conv.out.defaults_used.append("bf16=true (TRL: bf16 unless fp16)")
    if fp16 and bf16:
        conv.refuse("fp16", "both fp16 and bf16 are set")
        return
    conv.put("precision", "fp16" if fp16 else "bf16" if bf16 else "fp32")


def _loss(conv: _Converter) -> None:
    """loss_type (a name or a list, with loss_weights), beta and label_smoothing as `loss`."""
    types = conv.get("loss_type") or ["sigmoid"]
    types = [types] if isinstance(types, str) else list(types)
    weights = conv.get("loss_weights") or [1.0] * len(types)
    if len(weights) != len(types):
        conv.refuse("loss_weights", "needs one weight per loss_type")
        return
    loss = _loss_of(conv, dict(zip(types, weights, strict=True)))
    if loss is None:
        return
    beta = conv.get("beta")
    if beta is not None and "beta" in loss.defaults:
        conv.put("loss.beta", beta)
    smoothing = conv.get("label_smoothing") or 0.0
    if loss is LossType.ROBUST:
        conv.put("loss.eps", smoothing)
    elif smoothing:
        conv.out.not_carried.append(("label_smoothing", "TRL 1.16 uses it only for robust, exo_pair and aot "
                                     f"(it has no effect on '{types[0]}' there either); prefgate's cdpo is the "
                                     "label-smoothed DPO"))


def _loss_of(conv: _Converter, weighted: dict[str, float]) -> LossType | None:
    if set(weighted) == {"sigmoid", "sft"} and weighted["sigmoid"] == 1.0:  # DPO + NLL: RPO
        conv.put("loss.type", LossType.RPO.value)
        conv.put("loss.alpha", weighted["sft"])
        conv.out.notes.append("loss_type [sigmoid, sft] is prefgate's rpo (alpha = the sft weight); TRL averages "
                              "the NLL term over the batch's tokens, rpo per example (equal for equal lengths)")
        return LossType.RPO
    if len(weighted) != 1 or next(iter(weighted.values())) != 1.0:
        conv.refuse("loss_type", "prefgate trains one loss at weight 1, or [sigmoid, sft] (its rpo)")
        return None
    name = next(iter(weighted))
    try:
        loss = loss_type_from_name(name)
    except ValueError:
        why = TRL_LOSS_REFUSED.get(name, "not a loss_type of TRL 1.16's DPOTrainer")
        conv.refuse("loss_type", f"TRL's '{name}' has no prefgate equivalent: {why}")
        return None
    conv.put("loss.type", loss.value)
    if loss is LossType.SFT:
        conv.out.notes.append("loss_type sft: TRL averages over the batch's tokens, prefgate per example (equal "
                              "for equal lengths)")
    return loss


def _reference(conv: _Converter) -> None:
    if conv.get("precompute_ref_log_probs"):
        conv.put("reference.strategy", "precomputed")


def _lora(conv: _Converter) -> None:
    lora_keys = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "load_in_4bit", "lora_task_type",
                 "bnb_4bit_quant_type", "use_bnb_nested_quant", "bnb_4bit_quant_storage")
    if not conv.get("use_peft"):
        given = [key for key in lora_keys if key in conv.recipe]
        conv.used.update(given)
        conv.out.not_carried += [(key, "use_peft is off, so TRL ignores it too") for key in given]
        return
    for key, ours in (("lora_r", "r"), ("lora_alpha", "alpha"), ("lora_dropout", "dropout")):
        value = conv.get(key)
        if value is not None:
            conv.put(f"lora.{ours}", value)
    targets = conv.get("lora_target_modules")
    if targets:
        conv.put("lora.target_modules", targets)
    else:
        conv.put("lora.target_modules", "all-linear")
        conv.out.notes.append("lora_target_modules is unset: PEFT picks per-architecture modules in TRL (q_proj and "
                              "v_proj for Llama); prefgate's default is all-linear; set lora.target_modules to match")
    if conv.get("load_in_4bit"):
        conv.put("lora.load_in_4bit", True)


def _logging(conv: _Converter) -> None:
    if "logging_steps" in conv.recipe:
        conv.put("log_every", conv.get("logging_steps"))
    if "save_steps" in conv.recipe and conv.recipe.get("save_strategy", "steps") == "steps":
        conv.put("checkpoint_every", conv.get("save_steps"))
        conv.used.add("save_strategy")
    if conv.recipe.get("save_total_limit"):
        conv.put("checkpoint_keep", conv.get("save_total_limit"))
    report = conv.recipe.get("report_to")
    report = [report] if isinstance(report, str) else list(report or [])
    trackers = [name for name in report if name in ("tensorboard", "mlflow", "wandb")]
    if trackers:
        conv.put("trackers", trackers)
    if set(report) - set(trackers) - {"none"}:
        conv.out.not_carried.append(("report_to", f"{sorted(set(report) - set(trackers) - {'none'})}: "
                                     + NOT_CARRIED["report_to"]))
    conv.used.add("report_to")
