"""`prefgate train CONFIG [key=value ...]` and `prefgate merge RUN_DIR OUT`."""

from __future__ import annotations

from pathlib import Path

import typer

from prefgate.commands.common import EXIT_VERDICT_NO, guarded, note, say


@guarded
def train(
    config: Path = typer.Argument(..., help="Training config (YAML); see examples/*.yaml."),
    overrides: list[str] = typer.Argument(None, help="Overrides such as loss.beta=0.2 lora.r=8 max_steps=100."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output_dir from its last checkpoint."),
    allow_audit_fail: str = typer.Option(None, "--allow-audit-fail", metavar="REASON",
                                         help="Train despite an audit fail; the reason goes in the manifest."),
) -> None:
    """Train with DPO or any loss of the family; exit 1 when the pre-training audit fails, a monitor stops the run,
    the weights are not finite, or a checkpoint cannot be written (the manifest says why and what was kept)."""
    from prefgate.config import load_train_config
    from prefgate.train.ingate import check_settings
    from prefgate.train.loop import train as run_training
    from prefgate.train.monitors import TrainingAborted

    cfg = load_train_config(config, overrides or [])
    check_settings(cfg)  # eval.suite, eval.gate and eval.baseline: a bad one is exit 2 before anything loads
    try:
        result = run_training(cfg, resume=resume, allow_audit_fail=allow_audit_fail)
    except TrainingAborted as err:  # raised before the loop starts (audit gate, memory probe)
        note(f"stopped: {err}")
        raise typer.Exit(EXIT_VERDICT_NO) from None
    if result.status != "completed":  # the loop said why and which checkpoint it kept, on stderr
        kept = (result.checkpoint or {}).get("path")
        say(f"run aborted at step {result.steps}; run folder: {result.run_dir} (manifest.json: reason, checkpoint)"
            + (f"; --resume continues from {kept}" if kept else "; no checkpoint kept"))
        raise typer.Exit(EXIT_VERDICT_NO)
    m = result.final_metrics
    summary = ", ".join(f"{k} {m[k]:.4f}" for k in ("loss", "rewards/accuracies", "logps/chosen_shift") if k in m)
    say(f"trained {result.steps} steps -> {result.run_dir}  ({summary})")
    _say_watch(result.run_dir)


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
