"""Several processes: the `Accelerator` a run trains with, and what FSDP needs from prefgate.

`accelerate launch` decides the layout (its flags, or a config file such as those in `examples/accelerate/`);
`make_accelerator` builds the `Accelerator` from it and adds what prefgate's loop relies on:

- **FSDP is FSDP2** (`fully_shard`, `fsdp_version: 2`). FSDP1 is refused with one line: its flattened
  parameters change every parameter name the checkpoints, the finite-weights check and the LoRA adapter use.
- **Wrap policy**: where the launch names none, `transformer_based_wrap` on the model's `_no_split_modules`
  (each decoder layer its own unit); accelerate also puts the input embedding and the final norm + LM head in
  units of their own.
- **State-dict type**: `FULL_STATE_DICT`. Checkpoints, snapshots and the saved model hold whole tensors,
  gathered to the main process (`checkpoint.training_state`, `checkpoint.full_state_dict`), so they load with
  `from_pretrained` and resume on any number of processes.
- **CPU processes**: accelerate 1.16 builds the FSDP plugin from the launcher's environment but turns FSDP on
  only for GPU-like layouts; on CPU processes (`ACCELERATE_USE_CPU=1`, gloo) it would train plain DDP without a
  word. prefgate switches the accelerator's state to FSDP there, so accelerate's own FSDP2 preparation runs (on
  2 CPU processes in `tests/train/test_fsdp.py`).
- **A launch that did not connect**: processes started by a launcher (`WORLD_SIZE` > 1) that accelerate runs
  alone (a CPU-only machine launched without `ACCELERATE_USE_CPU=1`) would each train the whole run into the same
  folder; that is refused.
- **DeepSpeed ZeRO-2 and ZeRO-3** (`deepspeed_plugin`): the launch chooses the stage, offload and any DeepSpeed
  config file; prefgate's config sets what its loop relies on: the micro-batch (`batch_size`), the accumulation
  (`grad_accumulation`) and the clipping (`optim.max_grad_norm`), replacing the launch's values for these; whole
  weights gathered on save; no `zero.Init` (each process loads the whole model, as under FSDP, so the precomputed
  reference pass runs before sharding). The loop drives the engine itself (`engine.backward`, `engine.step`),
  since accelerate's `backward` would step inside it. On CPU processes the process group is gloo and
  DeepSpeed's CPU accelerator is selected (`DS_ACCELERATOR=cpu`).

What FSDP and ZeRO-3 ask of the run's settings (`check_sharded`): no live `reference.model` (a whole unsharded
copy on every process; `precomputed` scores it once and drops it), and no in-training gate (the main process
generates alone, and a sharded model needs every process in each forward). DeepSpeed also refuses fp16 (its
loss scaler skips steps the NaN guard would read as a collapse) and an optimizer or scheduler in its config file
(prefgate builds AdamW and the schedule from its own config).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from prefgate.errors import InputError

if TYPE_CHECKING:
    from accelerate import Accelerator

    from prefgate.config import TrainConfig

MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
STATE_DICT_TYPE = "FULL_STATE_DICT"
WRAP_POLICY = "transformer_based_wrap"


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() == "true"


def fsdp_requested() -> bool:
    """Did the launch ask for FSDP (`accelerate launch --use_fsdp`, or `distributed_type: FSDP` in its config)?"""
    return _flag("ACCELERATE_USE_FSDP")


def deepspeed_requested() -> bool:
    """Did the launch ask for DeepSpeed (`accelerate launch --use_deepspeed`, or `distributed_type: DEEPSPEED`)?"""
    return _flag("ACCELERATE_USE_DEEPSPEED")


def deepspeed_plugin(config: TrainConfig):
    """accelerate's DeepSpeed plugin from the launch's settings (stage, offload, a DeepSpeed config file), with
    prefgate's micro-batch, accumulation and clipping, whole weights gathered on save and no `zero.Init`."""
    import torch

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        raise InputError("ACCELERATE_USE_CPU=1 turns DeepSpeed off in accelerate, which would train plain DDP; launch "
                         "DeepSpeed on CPU processes without it", field="ACCELERATE_USE_CPU")
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise InputError("the launch asks for DeepSpeed, which is not installed: pip install deepspeed",
                         field="distributed_type") from None
    from accelerate.utils import DeepSpeedPlugin

    ours = {"gradient_accumulation_steps": config.grad_accumulation,
            "gradient_clipping": config.optim.max_grad_norm or 0.0}
    plugin = DeepSpeedPlugin(**ours, zero3_save_16bit_model=True, zero3_init_flag=False)
    ds = plugin.deepspeed_config
    for key in ("optimizer", "scheduler"):
        if key in ds:
            raise InputError(f"the DeepSpeed config names a{'n' if key == 'optimizer' else ''} {key}; prefgate builds "
                             "AdamW and its schedule from its own config (optim.*): remove it",
                             field=f"deepspeed_config.{key}")
    ds.update(ours, train_micro_batch_size_per_gpu=config.batch_size)  # a config file's own values replaced too
    ds.pop("train_batch_size", None)  # accelerate fills it from the three above and the number of processes
    ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = True
    return plugin


def fsdp_plugin():
    """accelerate's FSDP plugin from the launch's settings (its environment), with prefgate's: FSDP2, whole state
    dicts, and a transformer-layer wrap policy where the launch names none."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    wrap = None if os.environ.get("FSDP_AUTO_WRAP_POLICY") else WRAP_POLICY
    plugin = FullyShardedDataParallelPlugin(state_dict_type=STATE_DICT_TYPE, auto_wrap_policy=wrap)
    if plugin.fsdp_version != 2:
        raise InputError(f"prefgate trains with FSDP2 only, and the launch asks for FSDP{plugin.fsdp_version}: pass "
                         "--fsdp_version 2 to accelerate launch (or set fsdp_version: 2 in the accelerate config)",
                         field="fsdp_version")
    return plugin


def check_launch(world_size: int, num_processes: int) -> None:
    """A launcher started `world_size` processes; accelerate must see the same number."""
    if world_size > 1 and num_processes == 1:
        raise InputError(f"the launcher started {world_size} processes, but accelerate runs this one alone, so each "
                         "would train the whole run into the same output_dir; on a machine without a GPU launch with "
                         "ACCELERATE_USE_CPU=1 (docs/train.md, 'Several processes')")


def _drop_other_precision(mixed: str) -> None:
    """accelerate keeps one `AcceleratorState` per process and refuses an `Accelerator` of another mixed
    precision; a single process may start several runs (the Python API, the tests), so a run on one process
    drops the state a previous run of another precision left. (A launched process trains one run.)"""
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 and shared and shared.get("_mixed_precision") != mixed:
        AcceleratorState._reset_state()


def make_accelerator(config: TrainConfig, project_dir: str) -> Accelerator:
    """The run's `Accelerator`: mixed precision from `precision`, the trackers, and FSDP or DeepSpeed as the launch
    asks (each with the settings prefgate's loop relies on, and the run's settings they cannot honour refused)."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType, InitProcessGroupKwargs

    from prefgate.train.trackers import log_with

    mixed = MIXED_PRECISION[config.precision]
    plugin = fsdp_plugin() if fsdp_requested() else None
    ds = deepspeed_plugin(config) if deepspeed_requested() else None
    if ds is not None and config.precision == "fp16":
        raise InputError("precision: fp16 is not supported under DeepSpeed (its loss scaler skips steps, which the NaN "
                         "guard reads as a non-finite step); use precision: bf16", field="precision")
    if ds is not None and ds.deepspeed_config["zero_optimization"]["stage"] == 3:
        check_sharded(config, "DeepSpeed ZeRO-3")
    _drop_other_precision(mixed)
    handlers = [InitProcessGroupKwargs(backend="gloo")] if ds is not None and not _cuda() else []
    accelerator = Accelerator(mixed_precision=mixed, log_with=log_with(config), project_dir=project_dir,
                              fsdp_plugin=plugin, deepspeed_plugin=ds, kwargs_handlers=handlers)
    check_launch(int(os.environ.get("WORLD_SIZE", "1")), accelerator.num_processes)
    if plugin is not None and accelerator.distributed_type == DistributedType.MULTI_CPU:
        if mixed != "no":
            plugin.set_mixed_precision(mixed)
        # What accelerate does itself on GPUs (AcceleratorState.__init__), done for CPU processes: both shared
        # states say FSDP, since every later AcceleratorState() copies PartialState's layout into its own.
        PartialState().distributed_type = accelerator.state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = plugin
    if is_fsdp(accelerator):
        check_sharded(config, "FSDP")
    return accelerator


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def is_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def zero_stage(accelerator) -> int | None:
    """The DeepSpeed ZeRO stage the run trains with, or None when it does not train under DeepSpeed."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return None
    return int(accelerator.state.deepspeed_plugin.deepspeed_config["zero_optimization"]["stage"])


@contextlib.contextmanager
def whole_model_loading(accelerator):
    """Under ZeRO-3 accelerate tells transformers so (a process-wide setting), and `from_pretrained` would then
    partition the weights as it loads them (`zero.Init`). prefgate loads them whole on every process, so that the
    precomputed reference pass and the shift probe run before the engine partitions them; the setting is restored
    for the rest of the run."""
    if zero_stage(accelerator) != 3:
        yield
        return
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        accelerator.state.deepspeed_plugin.set_deepspeed_weakref()


def check_sharded(config: TrainConfig, layout: str = "FSDP") -> None:
    """The settings a sharded model (FSDP, ZeRO-3) cannot honour, each one line (exit 2)."""
    if config.reference.strategy == "model" and config.loss.type.needs_reference:
        raise InputError(f"under {layout} a live reference.model would be a whole unsharded copy on every process; "
                         "use reference.strategy: precomputed (it scores reference.model once before step 1, then "
                         "drops it)", field="reference.strategy")
    if config.eval.suite is not None:
        raise InputError(f"the in-training gate does not run under {layout}: the main process generates alone, and a "
                         "sharded model needs every process in each forward; gate the saved model with prefgate eval "
                         "and prefgate gate, or train with DDP (or DeepSpeed ZeRO-2)", field="eval.suite")


def local(tensor):
    """This process's shard of an FSDP2 parameter (a DTensor) or of a ZeRO-3 parameter (its `ds_tensor`); any
    other tensor as it is."""
    partition = getattr(tensor, "ds_tensor", None)
    if partition is not None:
        return partition
    to_local = getattr(tensor, "to_local", None)
    return to_local() if to_local is not None else tensor


def policy_mode(model) -> str:
    """The mode of `model`: "train" when every module is in training mode, "eval" when none is, else "mixed". The
    policy trains in training mode with its dropout off (`train.model.load_policy`); wrapping keeps that: DDP's wrapper
    is a module of its own (the loop sets it to training mode), and FSDP2's `fully_shard` changes each unit's
    class in place, leaving its modules, their mode and their attributes (the zeroed dropout) as they were."""
    modes = {module.training for module in model.modules()}
    return "mixed" if len(modes) > 1 else "train" if modes == {True} else "eval"


def describe(accelerator, model=None) -> dict:
    """The manifest's `distributed` block: the layout, the mode the policy `model` ended in (`policy_mode`),
    and under FSDP the plugin's settings and the units."""
    out = {"type": str(accelerator.distributed_type.value).lower(), "processes": accelerator.num_processes}
    if model is not None:
        out["policy_mode"] = policy_mode(model)
    stage = zero_stage(accelerator)
    if stage is not None:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        zero = ds["zero_optimization"]
        out["deepspeed"] = {"zero_stage": stage, "micro_batch": ds["train_micro_batch_size_per_gpu"],
                            "gradient_accumulation_steps": ds["gradient_accumulation_steps"],
                            "gradient_clipping": ds.get("gradient_clipping"),
                            "offload_optimizer": zero.get("offload_optimizer", {}).get("device", "none"),
                            "offload_param": zero.get("offload_param", {}).get("device", "none")}
    if not is_fsdp(accelerator):
        return out
    plugin = accelerator.state.fsdp_plugin
    wrap = plugin.transformer_cls_names_to_wrap
    out["fsdp"] = {"version": plugin.fsdp_version, "state_dict_type": STATE_DICT_TYPE,
                   "wrap": list(wrap) if wrap else None, "reshard_after_forward": plugin.reshard_after_forward}
    if model is not None:
        from torch.distributed.fsdp import FSDPModule

        out["fsdp"]["units"] = sum(isinstance(m, FSDPModule) for m in model.modules())
    return out
