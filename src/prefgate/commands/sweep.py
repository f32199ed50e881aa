"""`prefgate sweep CONFIG --beta 0.05,0.1 [--loss dpo,dpop] [--suite SUITE]`: beta against KL, with a pick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from prefgate.commands.common import EXIT_VERDICT_NO, guarded, note, say


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def print_sweep(report: dict[str, Any]) -> None:
    """One line per point, then the recommendation and why, on stdout."""
    width = max(len(p["name"]) for p in report["points"])
    say(f"{'point':<{width}}  {'status':<9}  {'pref acc':>8}  {'KL/token':>9}  gate")
    for p in report["points"]:
        acc = _fmt(p["preference"]["accuracy"]) if p["preference"] else "-"
        kl = _fmt(p["kl"]["mean_per_token"], ".4g") if p["kl"] else "-"
        gate = p["gate"]["decision"] if p["gate"] else ("-" if p["status"] == "completed" else p["reason"] or "-")
        say(f"{p['name']:<{width}}  {p['status']:<9}  {acc:>8}  {kl:>9}  {gate}")
    rec = report["recommendation"]
    say(f"recommended: {rec['point'] or 'none'}")
    say(f"  why: {rec['reason']}")


@guarded
def sweep(
    config: Path = typer.Argument(..., help="Training config (YAML) with held-out pairs in data.eval."),
    overrides: list[str] = typer.Argument(None, help="Overrides for every point, such as max_steps=200."),
    beta: str = typer.Option("0.05,0.1,0.3,0.5", "--beta", help="Comma-separated betas."),
    loss: str = typer.Option("dpo", "--loss", help="Comma-separated loss types, e.g. dpo,dpop."),
    suite: Path = typer.Option(None, "--suite", help="Eval suite (JSONL): eval each point and gate it against the "
                                                     "base model."),
    out_dir: Path = typer.Option(None, "--out-dir", help="Where the runs, evals, sweep.json and sweep.html go "
                                                         "(default: sweeps/<config name>)."),
    policy: Path = typer.Option(None, "--policy", help="Gate policy YAML (default: the documented defaults)."),
    kl_prompts: int = typer.Option(256, "--kl-prompts", min=1, help="Held-out prompts the KL is measured on."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Length of the greedy answers (KL, "
                                                                           "suite)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Batch size of the measurements."),
    no_register: bool = typer.Option(False, "--no-register", help="Do not add the runs to the registry."),
    allow_audit_fail: str = typer.Option(None, "--allow-audit-fail", metavar="REASON",
                                         help="Train despite an audit fail; the reason goes in each manifest."),
    device: str = typer.Option(None, "--device", help="Device of the measurements (default: cuda when available)."),
) -> None:
    """Train one run per (loss, beta), measure held-out preference accuracy and KL to the reference (and, with
    a suite, the eval and the gate against the base model), and recommend a point; exit 1 when none qualifies."""
    from prefgate.gate import load_policy
    from prefgate.report.sweep import write_sweep_html
    from prefgate.sweep import SweepOptions, parse_betas, parse_losses
    from prefgate.sweep import sweep as run_sweep

    betas, losses = parse_betas(beta), parse_losses(loss)
    options = SweepOptions(suite=suite, out_dir=out_dir, overrides=overrides or [], policy=load_policy(policy),
                           register=not no_register, allow_audit_fail=allow_audit_fail, kl_prompts=kl_prompts,
                           max_new_tokens=max_new_tokens, batch_size=batch_size, device=device)
    report = run_sweep(config, betas, losses, options)
    out = Path(report["out_dir"])
    write_sweep_html(report, out / "sweep.html")
    print_sweep(report)
    note(f"report written to {out / 'sweep.json'} and {out / 'sweep.html'}")
    if report["recommendation"]["point"] is None:
        raise typer.Exit(EXIT_VERDICT_NO)
