"""`train(config)`: the training loop, read top to bottom: set up, train, save, clean up.

Batching: one optimizer step consumes a global batch of G = batch_size * grad_accumulation * processes
examples, drawn in a seeded per-epoch permutation; each process takes its own micro-batches of it. The
per-example losses are summed and divided by the examples each process handles per step, so the gradient
is the mean over the global batch however it is split (the invariance tests check 4x1 = 1x4 and one vs two
processes). A trailing remainder smaller than G is left out of each epoch (a new permutation every epoch).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from prefgate.config import TrainConfig
from prefgate.console import note, progress
from prefgate.data import PreferenceDataset, load_tokenizer, read_dataset
from prefgate.errors import InputError
from prefgate.lm import checkpointing
from prefgate.lm.load import eval_mode, pad_token_id
from prefgate.losses import LossType
from prefgate.train import checkpoint as ckpt
from prefgate.train import snapshot as snap
from prefgate.train.batches import TokenizedData, collate, tokenize_dataset
from prefgate.train.distributed import describe, is_fsdp, local, make_accelerator, whole_model_loading, zero_stage
from prefgate.train.ingate import InTrainingGate, check_settings, output_choice
from prefgate.train.manifest import RunResult, write_manifest
from prefgate.train.model import disabled_dropout, load_policy, original_dropout_config
from prefgate.train.monitors import (
    CollapseMonitor,
    CollapseStop,
    TrainingAborted,
    check_finite,
    nonfinite_tensors,
    nonfinite_weights_message,
)
from prefgate.train.reference import References, live_reference, resumed_keys, settle
from prefgate.train.step import Forward, Sums, batch_metrics, compute_batch_loss, means, merge_sums
from prefgate.train.trackers import PROJECT, tracker_params

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedTokenizerBase

    from prefgate.diagnose import ShiftProbe


@dataclass
class Schedule:
    """Which examples each process sees at each step (see the module docstring)."""

    n_examples: int
    batch_size: int
    grad_accumulation: int
    processes: int
    seed: int

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accumulation * self.processes

    @property
    def steps_per_epoch(self) -> int:
        return self.n_examples // self.global_batch

    def micro_batches(self, step: int, rank: int) -> list[list[int]]:
        """The micro-batches (dataset indices) of 1-based optimizer `step` for process `rank`."""
        epoch, k = divmod(step - 1, self.steps_per_epoch)
        order = torch.randperm(self.n_examples, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
        chunk = order[k * self.global_batch:(k + 1) * self.global_batch]
        b = self.batch_size
        return [chunk[(a * self.processes + rank) * b:(a * self.processes + rank + 1) * b]
                for a in range(self.grad_accumulation)]


# -- set up -------------------------------------------------------------------------------------------------


def _check_output_dir(run_dir: Path, resume: bool) -> None:
    taken = (run_dir / "manifest.json").exists() or (run_dir / "checkpoints").exists()
    if taken and not resume:
        raise InputError("holds a previous run; pass --resume to continue it, or choose another output_dir",
                         where=str(run_dir))


def _audit_gate(config: TrainConfig, train_ds: PreferenceDataset, eval_ds: PreferenceDataset | None, tokenizer,
                allow_audit_fail: str | None, show: bool = False) -> dict:
    """`prefgate audit` on the training pairs with what the trainer knows: the eval set (leakage), the tokenizer
    and max_length (truncation, one-sided included) and `data.labels` (agreement of the labels with a human
    sample, the 80% rule). A `fail` verdict stops here unless overridden."""
    from prefgate.audit import CHECK_IDS, run_audit

    if not train_ds.paired:
        return {"verdict": None, "override_reason": None}
    labels = config.data.labels
    with progress(len(CHECK_IDS), "audit", enabled=show, postfix="{task.fields[check]}") as advance:
        report = run_audit(train_ds, eval_dataset=eval_ds if eval_ds is not None and eval_ds.paired else None,
                           labels=labels, tokenizer=tokenizer, max_length=config.data.max_length,
                           progress=lambda check, _seconds: advance(1, check=check))
    by_status = {s: [c["id"] for c in report["checks"] if c["status"] == s] for s in ("fail", "warn")}
    verdict = report["verdict"]
    if verdict == "fail" and not allow_audit_fail:
        flags = {"--eval": config.data.eval, "--labels": labels,
                 "--tokenizer": config.model.tokenizer or config.model.name_or_path,
                 "--max-length": config.data.max_length}
        command = " ".join(["prefgate audit", train_ds.source, *(f"{k} {v}" for k, v in flags.items() if v)])
        raise TrainingAborted(f"the audit of {train_ds.source} fails on {', '.join(by_status['fail'])}; run "
                              f"`{command}` to see why, or pass --allow-audit-fail REASON to train anyway")
    return {"verdict": verdict, "failed": by_status["fail"], "warned": by_status["warn"], "labels": labels,
            "override_reason": allow_audit_fail if verdict == "fail" else None}


def _recorded_audits(config: TrainConfig, train_ds: PreferenceDataset, audit: dict,
                     allow_audit_fail: str | None) -> dict:
    """The audits recorded for the training data (by fingerprint) in the registry home: one that failed stops
    the run as the trainer's own audit does, unless overridden; the manifest lists them under `recorded`."""
    from prefgate.registry.api import default_home
    from prefgate.registry.audits import describe_failure, recorded_audits

    home = Path(config.registry_home) if config.registry_home else default_home()
    recorded = recorded_audits(home, train_ds.fingerprint)
    failed = [a for a in recorded if a["verdict"] == "fail"]
    if failed and not allow_audit_fail:
        raise TrainingAborted(f"the recorded audit of {train_ds.source} (fingerprint {train_ds.fingerprint[:16]}) "
                              f"failed: {describe_failure(failed[-1])}; fix the data, or pass --allow-audit-fail "
                              "REASON to train anyway (the reason goes in the manifest)")
    out = {**audit, "recorded": recorded, "registry_home": str(home)}
    if failed:
        out["override_reason"] = allow_audit_fail
    return out


def _load_data(config: TrainConfig, tokenizer, loss_type: LossType, show: bool = False):
    train_ds = read_dataset(config.data.train, skip_invalid=config.data.skip_invalid)
    eval_ds = read_dataset(config.data.eval, skip_invalid=config.data.skip_invalid) if config.data.eval else None
    kwargs = {"max_length": config.data.max_length, "max_prompt_length": config.data.max_prompt_length}
    with progress(len(train_ds) + (len(eval_ds) if eval_ds else 0), "tokenising", enabled=show) as advance:
        train_data = tokenize_dataset(train_ds, tokenizer, loss_type, advance=advance, **kwargs)
        eval_data = tokenize_dataset(eval_ds, tokenizer, loss_type, advance=advance, **kwargs) if eval_ds else None
    return train_ds, eval_ds, train_data, eval_data


def _optimizer_and_scheduler(model, config: TrainConfig, total_steps: int):
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    o = config.optim
    # The fused kernel (TRL's default through transformers' adamw_torch_fused): one pass per tensor, where the
    # foreach one holds a temporary the size of all the parameters (the step's peak at 181M parameters on CPU).
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay,
                                  fused=fused or None)
    name = "constant_with_warmup" if o.schedule == "constant" else o.schedule
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=o.warmup_steps, num_training_steps=total_steps)
    return optimizer, scheduler


def _peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _memory_probe(run: _Run) -> dict:
    """Forward and backward on the largest possible micro-batch, so an OOM happens now, not in epoch 2."""
    data, config, model, device = run.train_data, run.config, run.model, run.accelerator.device
    largest = sorted(range(len(data)), key=data.n_tokens, reverse=True)[: config.batch_size]
    batch = collate(data, largest, pad_id=run.pad_id).to(device)
    rng = ckpt.rng_state()  # the probe must not change what the run does next
    try:
        policy = run.forward.logps(model, batch)
        out = compute_batch_loss(config.loss.type, config.loss.hyperparameters, policy, run.reference.logps(batch),
                                 batch)
        out.losses.sum().backward()
    except torch.OutOfMemoryError:
        raise TrainingAborted(f"step 0 memory probe: out of memory on the largest micro-batch ({batch.n_tokens} "
                              "tokens); lower batch_size or data.max_length, or set model.gradient_checkpointing: full"
                              ) from None
    finally:
        model.zero_grad(set_to_none=True)
        ckpt.set_rng_state(rng)
    return {"probe_tokens": batch.n_tokens, "peak_memory_mb": round(_peak_memory_mb(device), 1),
            "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss"}


# -- evaluation on held-out pairs ---------------------------------------------------------------------------


@torch.no_grad()
def _evaluate(run: _Run) -> dict[str, float]:
    """Loss, rewards and preference accuracy of the policy on the held-out pairs."""
    data, config, model = run.eval_data, run.config, run.model
    sums: Sums = {}
    size = config.eval.batch_size
    with eval_mode(model), progress(-(-len(data) // size), "eval pairs", enabled=run.log.show) as advance:
        for start in range(0, len(data), size):
            batch = collate(data, list(range(start, min(start + size, len(data)))),
                            pad_id=run.pad_id).to(run.accelerator.device)
            policy = run.forward.logps(model, batch)
            ref = run.reference.eval.logps(batch)
            out = compute_batch_loss(config.loss.type, config.loss.hyperparameters, policy, ref, batch)
            merge_sums(sums, batch_metrics(config.loss.type, out, policy, ref, batch))
            advance(1)
    return {f"eval/{k}": v for k, v in means(sums).items()}


# -- the loop -----------------------------------------------------------------------------------------------


def _train_step(run: _Run, step: int) -> Sums:
    """Forward and backward over this process's micro-batches of `step`; returns local metric sums."""
    accelerator, config, model, schedule = run.accelerator, run.config, run.model, run.schedule
    sums: Sums = {}
    micro = schedule.micro_batches(step, accelerator.process_index)
    per_process = schedule.batch_size * schedule.grad_accumulation
    for a, indices in enumerate(micro):
        batch = collate(run.train_data, indices, pad_id=run.pad_id).to(accelerator.device)
        sync = accelerator.no_sync(model) if a < len(micro) - 1 else contextlib.nullcontext()
        with sync, accelerator.autocast():
            policy = run.forward.logps(model, batch)
            ref = run.reference.logps(batch)
            out = compute_batch_loss(config.loss.type, config.loss.hyperparameters, policy, ref, batch)
        loss = out.losses.sum() / per_process
        check_finite(step, loss=float(loss.detach()))
        if run.engine is not None:  # DeepSpeed: backward, then step, which updates after the last micro-batch
            run.engine.backward(loss, scale_wrt_gas=False)  # the loss is already a share of the global batch
            run.engine.step()
        else:
            accelerator.backward(loss)
        merge_sums(sums, batch_metrics(config.loss.type, out, policy, ref, batch))
        sums["_tokens"] = (sums.get("_tokens", (0, 0))[0] + batch.n_tokens, 1)
    return sums


def _reduce(accelerator, sums: Sums) -> Sums:
    """Sum (total, count) pairs over processes."""
    if accelerator.num_processes == 1:
        return sums
    names = sorted(sums)
    local = torch.tensor([[sums[n][0], sums[n][1]] for n in names], dtype=torch.float64, device=accelerator.device)
    total = accelerator.reduce(local, reduction="sum")
    return {n: (float(total[i, 0]), float(total[i, 1])) for i, n in enumerate(names)}


@dataclass
class _Run:
    """Everything set up before step 1."""

    config: TrainConfig
    run_dir: Path
    accelerator: Accelerator
    log: _Logger
    tokenizer: PreTrainedTokenizerBase
    pad_id: int
    train_ds: PreferenceDataset
    eval_ds: PreferenceDataset | None
    train_data: TokenizedData
    eval_data: TokenizedData | None
    audit: dict
    schedule: Schedule
    total_steps: int
    # Set by `_set_up` after construction; none is None once the loop starts.
    forward: Forward | None = None
    checkpointing: dict = field(default_factory=dict)  # the mode `model.gradient_checkpointing` ran, and why
    model: torch.nn.Module | None = None  # as prepared by accelerate (wrapped on several processes)
    unwrapped: torch.nn.Module | None = None  # the model itself, what checkpoints and the saved model hold
    reference: References | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    engine: Any = None  # under DeepSpeed, the engine the loop drives (`run.model`); None otherwise
    start_step: int = 0
    loop_state: dict = field(default_factory=lambda: {"best_eval_accuracy": None, "evals_without_improvement": 0})
    probe: dict = field(default_factory=dict)
    shift_probe: ShiftProbe | None = None  # None unless the probe runs (`config.probe_every`)
    monitor: CollapseMonitor | None = None  # set by `_train_loop`
    gate: InTrainingGate | None = None  # the in-training gate (`eval.suite`)
    seconds: dict = field(default_factory=dict)  # "started" (perf_counter) and "baseline" (its evaluation)


def train(config: TrainConfig, *, resume: bool = False, allow_audit_fail: str | None = None,
          show_progress: bool = True) -> RunResult:
    """Train per `config`; writes the run folder (manifest.json, metrics.jsonl, adapter/ or model/, checkpoints/)."""
    run = _set_up(config, resume, allow_audit_fail, show_progress)  # 1. set up
    status, reason, step, metrics, kept = _train_loop(run)  # 2. train
    status, reason, output = _run_output(run, status, reason, step)  # keep_best: the model the gate promoted last
    result = RunResult(run.run_dir, status, step, metrics, reason, kept)
    run.accelerator.wait_for_everyone()  # 3. save
    whole = _gathered(run) if status == "completed" else None
    if run.accelerator.is_main_process:
        artifacts = _save_output(run, output, whole) if status == "completed" else {}
        write_manifest(result, config=config, datasets={"train": run.train_ds, "eval": run.eval_ds}, audit=run.audit,
                       artifacts=artifacts, extra={"memory_probe": run.probe, "reference": run.reference.describe(),
                                                   "forward": run.forward.describe(),
                                                   "checkpointing": run.checkpointing,
                                                   "processes": run.accelerator.num_processes, "checkpoint": kept,
                                                   "distributed": describe(run.accelerator, run.unwrapped),
                                                   "dropout": disabled_dropout(run.unwrapped).describe(),
                                                   **_watch_blocks(run, output)})
    run.accelerator.end_training()  # 4. clean up
    return result


def _set_up(config: TrainConfig, resume: bool, allow_audit_fail: str | None, show_progress: bool) -> _Run:
    import transformers
    from accelerate.utils import set_seed

    transformers.utils.logging.disable_progress_bar()  # our own progress bar is the one to watch
    started = time.perf_counter()
    gate_settings = check_settings(config)  # a bad suite, gate policy or baseline fails before anything loads
    run_dir = Path(config.output_dir)
    _check_output_dir(run_dir, resume)
    accelerator = make_accelerator(config, str(run_dir))  # FSDP, mixed precision, trackers (train/distributed.py)
    set_seed(config.seed)
    log = _Logger(run_dir, accelerator, show_progress)

    tokenizer = load_tokenizer(config.model.tokenizer or config.model.name_or_path,
                               trust_remote_code=config.model.trust_remote_code)
    pad_id = pad_token_id(tokenizer)
    train_ds, eval_ds, train_data, eval_data = _load_data(config, tokenizer, config.loss.type, show=log.show)
    log.note(f"train: {len(train_ds)} records, fingerprint {train_ds.fingerprint[:16]}; {train_data.truncated} cut "
             f"by max_length {config.data.max_length} ({train_data.asymmetric} on one side only)")
    audit = _audit_gate(config, train_ds, eval_ds, tokenizer, allow_audit_fail, show=log.show)
    audit = _recorded_audits(config, train_ds, audit, allow_audit_fail)
    schedule = Schedule(len(train_data), config.batch_size, config.grad_accumulation, accelerator.num_processes,
                        config.seed)
    if schedule.steps_per_epoch == 0:
        raise InputError(f"{len(train_data)} training examples are fewer than one global batch "
                         f"({schedule.global_batch}); lower batch_size or grad_accumulation", field="batch_size")
    total_steps = config.max_steps or config.epochs * schedule.steps_per_epoch
    run = _Run(config, run_dir, accelerator, log, tokenizer, pad_id, train_ds, eval_ds, train_data, eval_data,
               audit, schedule, total_steps)

    with whole_model_loading(accelerator):  # ZeRO-3: whole on every process until the engine partitions it
        model = load_policy(config).to(accelerator.device)  # training mode, every dropout at 0 (train/model.py)
    if config.lora and config.lora.dropout > 0:  # said, not silently ignored
        log.warn(f"lora.dropout {config.lora.dropout:g} has no effect: the policy trains with dropout off (every "
                 "dropout at 0, LoRA's included), as TRL's default disable_dropout=True; the saved "
                 "adapter_config.json keeps it")
    run.forward = Forward.resolve(model, config.forward, config.pack_tokens)
    log.note(f"forward: {run.forward.reason}")
    mode, why = checkpointing.resolve(config.model.gradient_checkpointing, model.config)  # as load_policy took it
    run.checkpointing = {"mode": mode, "why": why}
    log.note(f"activation checkpointing: {mode} ({why})")
    splits = {"train": (train_data, train_ds), **({"eval": (eval_data, eval_ds)} if eval_data is not None else {})}
    with whole_model_loading(accelerator):
        live = live_reference(config, model, device=accelerator.device, forward=run.forward)
    run.shift_probe = _shift_probe(config, live, model, train_data, pad_id)  # while weights are initial
    run.reference = settle(config, live, splits, tokenizer, device=accelerator.device, pad_id=pad_id,
                           show_progress=log.show)
    del live  # precomputed: the reference model goes now (a loaded one is collected at once, cycles included)
    if run.reference.strategy == "precomputed":
        gc.collect()
    run.loop_state["reference_keys"] = run.reference.keys()
    log.note(f"reference: {run.reference.summary()}")
    optimizer, run.scheduler = _optimizer_and_scheduler(model, config, total_steps)
    run.model, run.optimizer = accelerator.prepare(model, optimizer)
    run.model.train()  # a wrapper (DDP) trains as the policy does: eval_mode(run.model) restores the wrapper's mode
    run.unwrapped = accelerator.unwrap_model(run.model)
    run.engine = run.model if zero_stage(accelerator) is not None else None
    if zero_stage(accelerator) == 3:
        log.note("forward: under ZeRO-3 the LM head runs as its own module on the completion positions, not in chunks "
                 "(its weight is gathered only inside its forward)")
    _resume_or_probe(run, resume)
    run.seconds["started"] = started
    if gate_settings is not None:
        _start_gate(run, gate_settings)
    if accelerator.is_main_process and config.trackers:  # flat, typed hyperparameters (train/trackers.py)
        accelerator.init_trackers(PROJECT, config=tracker_params(config))
    return run


def _shift_probe(config: TrainConfig, live, model, data: TokenizedData, pad_id: int):
    """The token-level probe (`diagnose_every`, and by default the collapse monitor's signal): reference
    per-token log-probs of a fixed, seeded sample of training pairs, taken now from the live reference (before a
    precomputed one drops it). None when it does not run, or runs only for the monitor and no pair's answers
    differ (the monitor then reads the whole-answer mean)."""
    if not config.probe_every:
        return None
    from prefgate.diagnose import ShiftProbe

    source = live if live.kind in ("model", "adapter-disabled") else model  # else: the initial policy
    try:
        return ShiftProbe.from_data(source, data, n_pairs=config.diagnose_pairs, seed=config.seed, pad_id=pad_id,
                                    batch_size=config.eval.batch_size)
    except ValueError:
        if config.diagnose_every:  # asked for explicitly
            raise
        return None


def _resume_or_probe(run: _Run, resume: bool) -> None:
    latest, _, passed = ckpt.latest_finite_checkpoint(run.run_dir) if resume else (None, 0, [])
    for line in passed:
        run.log.warn(f"not resuming from {line}")
    if latest is not None:
        run.loop_state = ckpt.load_checkpoint(latest, model=run.unwrapped, optimizer=run.optimizer,
                                              scheduler=run.scheduler, rank=run.accelerator.process_index,
                                              sharded=is_fsdp(run.accelerator), engine=run.engine)
        run.start_step = run.loop_state["step"]
        run.loop_state["reference_keys"], changed = resumed_keys(run.loop_state.get("reference_keys"), run.reference)
        if changed:
            run.log.warn(changed)
        run.log.truncate_metrics(run.start_step)
        run.log.note(f"resumed from {latest} (step {run.start_step})")
    elif run.config.memory_probe and run.engine is not None:
        run.log.note("memory probe: skipped under DeepSpeed (a backward outside its step would enter the gradients "
                     "of step 1)")
    elif run.config.memory_probe:
        run.probe = _memory_probe(run)
        run.log.note(f"memory probe: largest micro-batch {run.probe['probe_tokens']} tokens, peak "
                     f"{run.probe['peak_memory_mb']} MB ({run.probe['memory_kind']})")


def _train_loop(run: _Run) -> tuple[str, str | None, int, dict, dict | None]:
    """(status, reason, last step, its metrics, for a stopped run the checkpoint kept)."""
    monitor = run.monitor = _collapse_monitor(run)
    status, reason, metrics, step, kept = "completed", None, {}, run.start_step, None
    done, rng = run.start_step, None  # the last optimizer step that finished; the RNG state as the current began
    try:
        run.log.start(run.total_steps, run.start_step)
        for step in range(run.start_step + 1, run.total_steps + 1):
            rng = ckpt.rng_state()  # what a checkpoint of step - 1 records, should this step stop the run
            metrics = _optimizer_step(run, step)
            done = step
            if _after_step(run, step, metrics, monitor):
                break
    except TrainingAborted as err:
        status, reason = "aborted", str(err)
        run.log.note(f"stopped: {reason}")
        kept = _keep_checkpoint(run, done, rng if done < step else None,  # never the weights after a collapse
                                may_write=not isinstance(err, (ckpt.CheckpointNotWritten, CollapseStop)))
        if isinstance(err, CollapseStop):
            kept = _before_collapse(run, kept, step)
    finally:
        run.log.stop()
    return status, reason, step, metrics, kept


def _after_step(run: _Run, step: int, metrics: dict, monitor: CollapseMonitor) -> bool:
    """Probe, monitor, evaluate, log and checkpoint after optimizer step `step`; True when early stopping says
    stop. Before a checkpoint and after the last step, the weights are checked: a model with a NaN or inf is
    never checkpointed, saved or reported as trained."""
    config, log = run.config, run.log
    if run.shift_probe is not None and (step % config.probe_every == 0 or step == run.total_steps):
        metrics.update(run.shift_probe.measure(run.unwrapped))
    warning = monitor.update(step, metrics)
    if warning:
        _collapse_fired(run, step, warning)  # stops the run with `on_collapse: stop`
    stop = _maybe_evaluate(step, run, metrics)
    last = stop or step == run.total_steps
    if step % config.log_every == 0 or last:
        log.metrics(step, metrics)
    log.advance(step, metrics)
    every = config.checkpoint_every or _guard_every(config)
    due = bool(every) and (step % every == 0 or step == run.total_steps)
    if due or last:
        _check_weights(run, step)
    if due:
        _write_checkpoint(run, step)
    if stop:
        log.note(f"early stopping at step {step}: no better eval accuracy for "
                 f"{config.eval.early_stopping_patience} evaluations")
    return stop


def _optimizer_step(run: _Run, step: int) -> dict:
    """One optimizer step over the global batch; returns its metrics (mean over the global batch)."""
    t0 = time.perf_counter()
    skipped = run.engine.skipped_steps if run.engine is not None else 0
    sums = _reduce(run.accelerator, _train_step(run, step))
    if run.engine is not None:  # DeepSpeed has clipped and stepped, or skipped a non-finite step untouched
        grad_norm = float(run.engine.get_global_grad_norm() or 0.0)
        check_finite(step, grad_norm=grad_norm if run.engine.skipped_steps == skipped else math.inf)
    else:
        grad_norm = _clip(run.accelerator, run.model, run.config.optim.max_grad_norm)
        check_finite(step, grad_norm=grad_norm)  # before the optimizer touches the weights
    lr = run.scheduler.get_last_lr()[0]  # the rate this step uses
    if run.engine is None:
        run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t0
    return {**means({k: v for k, v in sums.items() if not k.startswith("_")}), "grad_norm": grad_norm,
            "lr": lr, "pairs_per_s": run.schedule.global_batch / seconds,
            "tokens_per_s": sums["_tokens"][0] / seconds, "epoch": (step - 1) // run.schedule.steps_per_epoch}


def _clip(accelerator, model, max_norm: float | None) -> float:
    if max_norm is None and is_fsdp(accelerator):  # the norm of sharded gradients: clipping at inf changes nothing
        return float(accelerator.clip_grad_norm_(model.parameters(), math.inf))
    if max_norm is None:
        params = [p for p in model.parameters() if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))) if params else 0.0
    return float(accelerator.clip_grad_norm_(model.parameters(), max_norm))


def _maybe_evaluate(step: int, run: _Run, metrics: dict) -> bool:
    """Evaluate every `eval.every` steps and at the end; True when early stopping says stop."""
    every, config = run.config.eval.every, run.config
    if not (every and (step % every == 0 or step == run.total_steps)):
        return False
    if run.gate is not None:
        _gate_evaluation(run, step, metrics)
    if run.eval_data is None:
        return False
    result = _evaluate(run)
    metrics.update(result)
    accuracy = result.get("eval/rewards/accuracies")
    patience, state = config.eval.early_stopping_patience, run.loop_state
    if accuracy is None or patience is None:
        return False
    if state.get("best_eval_accuracy") is None or accuracy > state["best_eval_accuracy"]:
        state.update(best_eval_accuracy=accuracy, evals_without_improvement=0)
        return False
    state["evals_without_improvement"] = state.get("evals_without_improvement", 0) + 1
    return state["evals_without_improvement"] >= patience


# -- the collapse monitor and the in-training gate -----------------------------------------------------------


def _collapse_monitor(run: _Run) -> CollapseMonitor:
    """The monitor on the configured signal; `after_diff` falls back to the whole-answer mean where the shift
    probe cannot run (unpaired rows, no live reference, no pair whose answers differ), and the log says so."""
    config = run.config
    signal, why = config.monitor_signal
    if signal == "after_diff" and run.shift_probe is None:
        signal, why = "mean", "no training pair has chosen and rejected answers that differ"
    if why and config.monitor.signal != signal and config.loss.type.paired:
        run.log.note(f"collapse monitor: reading logps/chosen_shift (the whole answer), since {why}")
    monitor = CollapseMonitor(config.monitor.threshold(signal), config.monitor.collapse_window, signal=signal,
                              start_step=run.start_step)
    monitor.fallback = why
    return monitor


def _guard_every(config: TrainConfig) -> int | None:
    """`on_collapse: stop` without `checkpoint_every`: checkpoint every half window, so that a checkpoint from
    before the signal crossed exists when it does."""
    return max(1, config.monitor.collapse_window // 2) if config.monitor.on_collapse == "stop" else None


def _collapse_fired(run: _Run, step: int, warning: str) -> None:
    """Keep the model of the step the monitor fired at (`snapshots/collapse-step-N`), then warn, or stop."""
    _check_weights(run, step)
    name = snap.collapse_name(step)
    _write_snapshot(run, name, step, f"the collapse monitor fired: {warning}")
    run.monitor.fired[-1]["snapshot"] = f"snapshots/{name}"
    if run.config.monitor.on_collapse == "stop":
        raise CollapseStop(warning)
    run.log.warn(f"{warning} (the model of step {step}: snapshots/{name})")


def _before_collapse(run: _Run, kept: dict, step: int) -> dict:
    """The checkpoint kept at a collapse stop is the newest on disk, all of which predate the crossing."""
    if kept.get("path") is None:
        kept["why_none"] = (f"the collapse signal crossed at step {step}, before any checkpoint was written; the "
                            f"weights after the crossing are not kept as one")
        return kept
    kept["before_collapse"] = f"the last checkpoint before the collapse signal crossed at step {step}"
    run.log.note(f"{kept['path']} (step {kept['step']}) is {kept['before_collapse']}")
    return kept


def _write_snapshot(run: _Run, name: str, step: int, why: str) -> None:
    """`snapshots/NAME` from the model in memory (the main process writes it; under FSDP every process first
    gathers the weights); a refused write stops the run."""
    failed = None
    whole = _gathered(run)
    if run.accelerator.is_main_process:
        try:
            with original_dropout_config(run.unwrapped):  # config.json with the dropout values as loaded
                snap.save_snapshot(run.unwrapped, run.tokenizer, run.run_dir / "snapshots" / name, step=step,
                                   why=why, state_dict=whole)
        except ckpt.CheckpointNotWritten as err:
            failed = err
    if _any_process(run, failed is not None):
        raise failed or ckpt.CheckpointNotWritten(step, run.run_dir / "snapshots" / name,
                                                  OSError("the main process could not write it"))


def _start_gate(run: _Run, settings) -> None:
    """The in-training gate's baseline (before step 1) and, on a fresh run, the verdict of step 0."""
    run.gate = InTrainingGate(run.config, settings, run.run_dir, run.tokenizer, progress=run.log.show)
    accelerator = run.accelerator
    if accelerator.is_main_process:
        run.seconds["baseline"] = run.gate.prepare_baseline(run.unwrapped)
        run.log.note(f"in-training gate: {len(settings.suite)} items of {settings.suite.path} every "
                     f"{run.config.eval.every} steps, against {run.gate.baseline_source['source']} "
                     f"({run.gate.baseline_path})")
    accelerator.wait_for_everyone()
    if run.start_step == 0:
        metrics: dict = {}
        _gate_evaluation(run, 0, metrics)
        run.log.metrics(0, metrics)


def _gate_evaluation(run: _Run, step: int, metrics: dict) -> None:
    """Evaluate the suite and gate it (the main process; the others read its verdict); record the verdict, log
    it, keep the model it promoted (`on_block: stop | keep_best`), and stop at a block with `on_block: stop`."""
    accelerator, on_block = run.accelerator, run.config.eval.on_block
    verdict = run.gate.evaluate(step, run.unwrapped) if accelerator.is_main_process else None
    if accelerator.num_processes > 1:
        accelerator.wait_for_everyone()
        verdict = verdict or run.gate.read_verdict(step)
    state = run.loop_state
    state.setdefault("gate_verdicts", []).append({k: v for k, v in verdict.items() if k != "metrics"})
    state["gate_seconds"] = state.get("gate_seconds", 0.0) + verdict["seconds"]
    metrics.update(verdict["metrics"])
    grades = ", ".join(f"{name} {c['score']:.2f} ({c['grade']})" for name, c in verdict["categories"].items())
    line = (f"step {step}: in-training gate: {verdict['decision']} (overall {verdict['overall']['score']:.3f} "
            f"({verdict['overall']['grade']}); {grades})")
    if verdict["decision"] == "promote":
        run.log.note(line)
        if on_block in ("stop", "keep_best"):
            _check_weights(run, step)
            _write_snapshot(run, snap.GATE_PASSED, step, f"the in-training gate promoted step {step}")
            state["gate_passed_step"] = step
        return
    reason = verdict["reasons"][0] if verdict["reasons"] else "no reason given"
    passed = state.get("gate_passed_step")
    kept = f"; the latest model it promoted is snapshots/{snap.GATE_PASSED} (step {passed})" if passed is not None \
        else ""
    if on_block == "stop":
        raise TrainingAborted(f"step {step}: the in-training gate blocked: {reason}{kept}")
    tail = "; keep_best: training goes on, and the run ends with the latest model the gate promoted" \
        if on_block == "keep_best" else ""
    run.log.warn(f"{line}: {reason}{tail}")


def _run_output(run: _Run, status: str, reason: str | None, step: int) -> tuple[str, str | None, dict | None]:
    """(status, reason, which model the run ends with): with `on_block: keep_best`, the latest step the gate
    promoted when a later evaluation blocked; a run none of whose evaluations passed ends aborted."""
    if run.gate is None or run.config.eval.on_block != "keep_best" or status != "completed":
        return status, reason, None
    output = output_choice(run.loop_state.get("gate_verdicts", []), run.loop_state.get("gate_passed_step"), step)
    if output["step"] is None:
        reason = f"keep_best: {output['why']}; no model was saved"
        run.log.note(f"stopped: {reason}")
        return "aborted", reason, output
    if output["from"] is not None and output["step"] != step:
        run.log.note(f"keep_best: {output['why']}")
    return status, reason, output


def _save_output(run: _Run, output: dict | None, whole: dict | None = None) -> dict[str, str]:
    """The run's model: the weights in memory (`whole`: gathered under FSDP), or with keep_best the snapshot the
    gate promoted last."""
    if output is None or output["from"] != "snapshots/gate-passed":
        return _save_model(run.unwrapped, run.tokenizer, run.run_dir, run.config, whole)
    from prefgate.train.manifest import hash_tree

    out = run.run_dir / ("adapter" if run.config.lora else "model")
    snap.publish(run.run_dir / "snapshots" / snap.GATE_PASSED, out)
    return hash_tree(run.run_dir, out)


def _watch_blocks(run: _Run, output: dict | None) -> dict:
    """The manifest's `monitor` and `in_training_gate` blocks."""
    monitor = run.monitor
    blocks: dict = {"monitor": None if monitor is None else {
        **monitor.describe(), "on_collapse": run.config.monitor.on_collapse, "fallback": monitor.fallback,
        "probe": None if run.shift_probe is None else {"every": run.config.probe_every,
                                                       "pairs": len(run.shift_probe.prompt_ids)}}}
    if run.gate is None:
        return {**blocks, "in_training_gate": None}
    state = run.loop_state
    total = time.perf_counter() - run.seconds["started"]
    spent = run.seconds.get("baseline", 0.0) + state.get("gate_seconds", 0.0)
    blocks["in_training_gate"] = {
        **run.gate.describe(), "verdicts": state.get("gate_verdicts", []),
        "last_promoted_step": state.get("gate_passed_step"),
        "output": output or {"step": None, "from": "final step", "why": f"on_block: {run.config.eval.on_block}"},
        "seconds": {"baseline": round(run.seconds.get("baseline", 0.0), 2),
                    "evaluations": round(state.get("gate_seconds", 0.0), 2), "run": round(total, 2),
                    "share": round(spent / total, 4) if total > 0 else None},
        "promotes_nothing": "in-training verdicts move no alias: `prefgate registry promote` needs a final gate report"}
    return blocks


# -- checkpoints and the checks around them ------------------------------------------------------------------


def _any_process(run: _Run, flag: bool) -> bool:
    """True on every process when `flag` is True on at least one (a collective call on several processes)."""
    if run.accelerator.num_processes == 1:
        return flag
    total = run.accelerator.reduce(torch.tensor([float(flag)], device=run.accelerator.device), reduction="sum")
    return bool(total.item() > 0)


def _nonfinite_weights(run: _Run) -> tuple[int, list[str]]:
    """(trainable tensors, names of those holding a NaN or inf) of the model in memory, agreed by every process."""
    n, bad = nonfinite_tensors((name, local(p)) for name, p in run.unwrapped.named_parameters() if p.requires_grad)
    if _any_process(run, bool(bad)) and not bad:
        bad = ["a tensor on another process"]
    return n, bad


def _check_weights(run: _Run, step: int) -> None:
    n, bad = _nonfinite_weights(run)
    if bad:
        raise TrainingAborted(nonfinite_weights_message(step, n, bad))


def _gathered(run: _Run) -> dict[str, torch.Tensor] | None:
    """The whole state dict on the main process when the weights live in shards (FSDP) or partitions (DeepSpeed;
    every process must call this), else None: the model in memory is whole."""
    if is_fsdp(run.accelerator):
        return ckpt.full_state_dict(run.unwrapped)
    if run.engine is not None:
        return run.accelerator.get_state_dict(run.model)
    return None


def _write_checkpoint(run: _Run, step: int, rng: dict | None = None) -> None:
    """Checkpoint `step` (`rng`: the RNG state to record, default the current one): the main process writes it,
    then the others add their RNG state. A write the file system refuses stops the run on every process."""
    run.loop_state["step"] = step
    accelerator = run.accelerator
    path = run.run_dir / "checkpoints" / f"{ckpt.PREFIX}{step:07d}"
    accelerator.wait_for_everyone()
    failed, state = None, None
    if is_fsdp(accelerator):
        state = ckpt.training_state(run.unwrapped, run.optimizer, sharded=True)  # every process
    elif run.engine is not None:
        state, failed = _deepspeed_state(run, step, path)  # every process
    if accelerator.is_main_process and failed is None:
        try:
            state = state or ckpt.training_state(run.unwrapped, run.optimizer)
            ckpt.save_checkpoint(run.run_dir, step, state=state, scheduler=run.scheduler, loop_state=run.loop_state,
                                 keep=run.config.checkpoint_keep, rng=rng, fresh=run.engine is None)
        except ckpt.CheckpointNotWritten as err:
            failed = err
    if _any_process(run, failed is not None):  # on several processes, also the barrier before `save_rng`
        if accelerator.is_main_process:  # what DeepSpeed's engine wrote before the failure
            shutil.rmtree(ckpt.temporary_dir(run.run_dir, step), ignore_errors=True)
        raise failed or ckpt.CheckpointNotWritten(step, path, OSError("the main process could not write it"))
    if not accelerator.is_main_process:
        ckpt.save_rng(path, accelerator.process_index, rng)


def _deepspeed_state(run: _Run, step: int, path: Path) -> tuple[tuple[dict, None] | None, Exception | None]:
    """Under DeepSpeed, on every process: the engine writes its partitioned state (weights and optimizer, each
    process its part) into the checkpoint's temporary folder; returns ((the whole trainable weights, None) on the
    main process, else None; the error if this process's write failed)."""
    tmp, failed = ckpt.temporary_dir(run.run_dir, step), None
    if run.accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
    run.accelerator.wait_for_everyone()
    try:
        run.engine.save_checkpoint(str(tmp / ckpt.DEEPSPEED), tag=ckpt.DEEPSPEED_TAG, save_latest=False)
    except OSError as err:
        failed = ckpt.CheckpointNotWritten(step, path, err)
    whole = _gathered(run)
    return ((ckpt.trainable_of(run.unwrapped, whole), None) if run.accelerator.is_main_process else None), failed


def _keep_checkpoint(run: _Run, done: int, rng: dict | None, *, may_write: bool) -> dict:
    """After a stop: the checkpoint `--resume` continues from, with its trainable weights checked finite. When
    no checkpoint on disk has finite weights, one of step `done` (the last finished optimizer step) is written
    from the weights in memory if they are finite. Returns the manifest's `checkpoint` block."""
    main = run.accelerator.is_main_process
    path, n, passed = ckpt.latest_finite_checkpoint(run.run_dir) if main else (None, 0, [])
    n_memory, bad = _nonfinite_weights(run)
    written = _any_process(run, main and path is None and may_write and done > 0 and not bad)
    why = None
    if written:
        try:
            _write_checkpoint(run, done, rng)
            path, n = run.run_dir / "checkpoints" / f"{ckpt.PREFIX}{done:07d}", n_memory
        except ckpt.CheckpointNotWritten as err:
            written, why = False, str(err)
    if path is None:
        why = why or ("the run stopped before its first optimizer step finished" if done == 0 else
                      f"none on disk has finite weights, and those in memory are not finite either ({len(bad)} "
                      f"of {n_memory} tensors)" if bad else
                      "no checkpoint could be written (above)")
    block = {"path": None if path is None else str(path.relative_to(run.run_dir)),
             "step": None if path is None else ckpt.checkpoint_step(path), "written_at_stop": written,
             "checked": None if path is None else f"trainable weights: all {n} tensors finite",
             "passed_over": passed, "why_none": why}
    if main:
        run.log.note(_checkpoint_line(block))
    return block


def _checkpoint_line(block: dict) -> str:
    passed = f"; passed over {', '.join(block['passed_over'])}" if block["passed_over"] else ""
    if block["path"] is None:
        return f"no checkpoint kept: {block['why_none']}{passed}"
    how = "written at the stop" if block["written_at_stop"] else "on disk"
    return (f"checkpoint kept: {block['path']} (step {block['step']}, {how}; {block['checked']}){passed}; "
            "--resume continues from it")


def _save_model(unwrapped, tokenizer, run_dir: Path, config: TrainConfig, whole: dict | None = None) -> dict[str, str]:
    """Adapter (PEFT format) or full model (transformers format), with the tokenizer; returns sha256s. `whole`:
    the weights to write (under FSDP, gathered from the shards). config.json holds the dropout values the model
    was loaded with, not the zeros it trained with."""
    from prefgate.train.manifest import hash_tree

    out = run_dir / ("adapter" if config.lora else "model")
    with original_dropout_config(unwrapped):
        unwrapped.save_pretrained(str(out), **({} if whole is None else {"state_dict": whole}))
    tokenizer.save_pretrained(str(out))
    return hash_tree(run_dir, out)


class _Logger:
    """metrics.jsonl, trackers, and a rich progress bar with pairs/s, on the main process only."""

    def __init__(self, run_dir: Path, accelerator, show_progress: bool):
        self.path = run_dir / "metrics.jsonl"
        self.accelerator = accelerator
        self.main = accelerator.is_main_process
        self.show = show_progress and self.main
        self._bar = None  # the console.progress context while training
        self._advance = None
        self._shown = 0
        if self.main:
            run_dir.mkdir(parents=True, exist_ok=True)

    def note(self, message: str) -> None:
        if self.main:
            note(message)

    def warn(self, message: str) -> None:
        if self.main:
            note(f"warning: {message}")

    def truncate_metrics(self, step: int) -> None:
        if not self.main or not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def metrics(self, step: int, metrics: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        if self.main:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": step, **clean}) + "\n")
        self.accelerator.log(clean, step=step)

    def start(self, total: int, done: int) -> None:
        if not self.show:
            return
        self._bar = progress(total, "train", completed=done, postfix="{task.fields[rate]}", transient=False)
        self._advance, self._shown = self._bar.__enter__(), done

    def advance(self, step: int, metrics: dict) -> None:
        if self._advance is not None:
            rate = f"{metrics['pairs_per_s']:.1f} pairs/s  loss {metrics['loss']:.4f}"
            self._advance(step - self._shown, rate=rate)
            self._shown = step

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = self._advance = None
