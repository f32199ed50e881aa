"""`prefgate train CONFIG [key=value ...]` (or `--from-trl RECIPE`) and `prefgate merge RUN_DIR OUT`."""

from __future__ import annotations

from pathlib import Path

import typer

from prefgate.commands.common import EXIT_VERDICT_NO, guarded, note, say
from prefgate.commands.launch import launch_mismatch
from prefgate.errors import InputError


@guarded
def train(
    config: Path = typer.Argument(None, help="Training config (YAML); see examples/*.yaml. Not with --from-trl."),
    overrides: list[str] = typer.Argument(None, help="Overrides such as loss.beta=0.2 lora.r=8 max_steps=100."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output_dir from its last checkpoint."),
    allow_audit_fail: str = typer.Option(None, "--allow-audit-fail", metavar="REASON",
                                         help="Train despite an audit fail; the reason goes in the manifest."),
    from_trl: Path = typer.Option(None, "--from-trl", metavar="RECIPE",
                                  help="Train from a TRL DPO recipe (the YAML `trl dpo --config` reads) instead of a "
                                  "config: each key is converted, TRL's defaults fill what it leaves out, and every "
                                  "key not carried is listed (docs/train.md, 'Coming from TRL')."),
    write_config: Path = typer.Option(None, "--write-config", metavar="PATH",
                                      help="With --from-trl: write the converted prefgate config to PATH ('-': "
                                      "stdout) and stop without training."),
) -> None:
    """Train with DPO or any loss of the family; exit 1 when the pre-training audit fails, a monitor stops the run,
    the weights are not finite, or a checkpoint cannot be written (the manifest says why and what was kept).
    Exit 2 when `accelerate launch` was asked for several processes but started one, under FSDP1, or with settings
    FSDP or DeepSpeed cannot honour. Several processes: `accelerate launch --config_file
    examples/accelerate/{ddp,fsdp,deepspeed_zero3}.yaml -m prefgate train CONFIG` (docs/train.md, "Several
    processes")."""
    mismatch = launch_mismatch()
    if mismatch:
        raise InputError(mismatch)
    from prefgate.train.ingate import check_settings
    from prefgate.train.loop import train as run_training
    from prefgate.train.monitors import TrainingAborted

    cfg = _load_config(config, overrides or [], from_trl, write_config)
    if cfg is None:  # --write-config: converted, written, done
        return
    check_settings(cfg)  # eval.suite, eval.gate and eval.baseline: a bad one is exit 2 before anything loads
    try:
        result = run_training(cfg, resume=resume, allow_audit_fail=allow_audit_fail)
    except TrainingAborted as err:  # raised before the loop starts (audit gate, memory probe)
        note(f"stopped: {err}")
        raise typer.Exit(EXIT_VERDICT_NO) from None
    from accelerate import PartialState

    if not PartialState().is_main_process:  # several processes: the main one reports
        raise typer.Exit(0 if result.status == "completed" else EXIT_VERDICT_NO)
    if result.status != "completed":  # the loop said why and which checkpoint it kept, on stderr
        kept = (result.checkpoint or {}).get("path")
        say(f"run aborted at step {result.steps}; run folder: {result.run_dir} (manifest.json: reason, checkpoint)"
            + (f"; --resume continues from {kept}" if kept else "; no checkpoint kept"))
        raise typer.Exit(EXIT_VERDICT_NO)
    m = result.final_metrics
    summary = ", ".join(f"{k} {m[k]:.4f}" for k in ("loss", "rewards/accuracies", "logps/chosen_shift") if k in m)
    say(f"trained {result.steps} steps -> {result.run_dir}  ({summary})")
    _say_watch(result.run_dir)


def _load_config(config: Path | None, overrides: list[str], from_trl: Path | None, write_config: Path | None):
    """The TrainConfig from CONFIG or from a TRL recipe; None when --write-config wrote the converted one."""
    from prefgate.config import load_train_config

    if from_trl is None:
        if config is None:
            raise InputError("give a training config (YAML), or a TRL recipe with --from-trl RECIPE")
        if write_config is not None:
            raise InputError("--write-config writes the config converted from --from-trl RECIPE")
        return load_train_config(config, overrides)
    if config is not None:
        if "=" not in str(config) or config.exists():
            raise InputError(f"give a config or --from-trl RECIPE, not both (got {config} and {from_trl})")
        overrides = [str(config), *overrides]  # `--from-trl R key=value`: the first argument is an override
    return _from_trl(from_trl, overrides, write_config)


def _from_trl(recipe: Path, overrides: list[str], write_config: Path | None):
    import yaml

    from prefgate.trlconfig import load_trl_recipe

    cfg, conversion = load_trl_recipe(recipe, overrides)
    for key, why in conversion.not_carried:
        note(f"from TRL: {key} not carried: {why}")
    if conversion.defaults_used:
        note("from TRL: TRL's defaults for what the recipe leaves out: " + ", ".join(conversion.defaults_used))
    for line in conversion.notes:
        note(f"from TRL: {line}")
    if write_config is None:
        return cfg
    text = "# converted by prefgate train --from-trl " + str(recipe) + "\n" + yaml.safe_dump(
        cfg.model_dump(mode="json", exclude_unset=True), sort_keys=False)
    if str(write_config) == "-":
        say(text.rstrip("\n"))
    else:
        write_config.write_text(text, encoding="utf-8")
        note(f"wrote {write_config}; train with: prefgate train {write_config}")
    return None


def _say_watch(run_dir: Path) -> None:
    """What the collapse monitor and the in-training gate found, from the manifest."""
    import json

    path = run_dir / "manifest.json"
    if not path.is_file():  # another process than the main one, which writes it
        return
    manifest = json.loads(path.read_text())
    fired = (manifest.get("monitor") or {}).get("fired") or []
    if fired:
        say("collapse monitor fired at step " + ", ".join(str(f["step"]) for f in fired))
    gate = manifest.get("in_training_gate")
    if gate:
        verdicts = gate["verdicts"]
        blocked = [v["step"] for v in verdicts if v["decision"] == "block"]
        say(f"in-training gate: {len(verdicts)} verdicts, {len(blocked)} block"
            + (f" (steps {', '.join(map(str, blocked))})" if blocked else "")
            + ("; keep_best: " + gate["output"]["why"] if gate["output"]["from"] == "snapshots/gate-passed" else
               "; the run's model is the final step's"))


@guarded
def merge(
    run_dir: Path = typer.Argument(..., help="A LoRA run folder (with adapter/)."),
    out: Path = typer.Argument(..., help="Where to write the merged model (transformers format)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
) -> None:
    """Merge a run's LoRA adapter into its base model."""
    from prefgate.lm.load import merge_adapter

    say(f"merged model written to {merge_adapter(run_dir, out, trust_remote_code=trust_remote_code)}")
