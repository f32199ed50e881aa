"""`prefgate registry ...`: register runs with their evals, promote through the gate, roll back, verify.

Exit codes: 0 done; 1 the registry said no (a promotion refused, nothing to roll back to, `verify` found a
missing or modified artifact); 2 bad input (one line on stderr).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.table import Table

from prefgate.commands.common import EXIT_VERDICT_NO, console, guarded, note, say
from prefgate.commands.jsonout import JsonCommand, emit, json_option
from prefgate.errors import InputError
from prefgate.registry import PromotionRefused, Registry
from prefgate.reportio import read_json

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(help="The model registry: runs tied to their data, config, evals and gate verdicts; "
                       "promote through the gate and roll back. Database: $PREFGATE_HOME/registry.db "
                       "(default .prefgate/registry.db).", no_args_is_help=True)



def refusals(fn: F) -> F:
    """Turn `PromotionRefused` into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PromotionRefused as err:
            note(f"refused: {err}")
            raise typer.Exit(EXIT_VERDICT_NO) from None

    return wrapper  # type: ignore[return-value]


def _run_ref(run: str) -> str:
    """RUN as the registry takes it: a run folder (with manifest.json) stands for its run id."""
    manifest = Path(run) / "manifest.json"
    if not manifest.is_file():
        return run
    run_id = read_json(manifest, what="a run manifest").get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise InputError("expected the run's id (a string)", where=str(manifest), field="run_id")
    return run_id


def _id_column(table: Table, name: str, values: list[str | None]) -> None:
    """A column that is never wrapped or cut, so ids stay copyable; the other columns give way."""
    table.add_column(name, no_wrap=True, min_width=max([len(v or "-") for v in values] + [len(name)]))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return "-" if value is None else str(value)


@app.command()
@guarded
def add(
    run_dir: Path = typer.Argument(..., help="A run folder written by `prefgate train` (with manifest.json)."),
    evals: list[Path] = typer.Option([], "--eval", help="An eval report of this run (`prefgate eval`); repeatable."),
) -> None:
    """Register a run (its manifest, datasets and artifact hashes) and attach eval reports to it. Adding a run
    again is a no-op, so this also attaches new evals to a registered run."""
    result = Registry().add(run_dir, evals)
    verb = {"added": "registered", "unchanged": "already registered", "relocated": "relocated"}[result["outcome"]]
    say(f"{verb} {result['run_id']} from {result['run_dir']}")
    for sha in result["evals_added"]:
        say(f"  eval {sha[:12]} attached")
    for sha in result["evals_known"]:
        say(f"  eval {sha[:12]} was already attached")


@app.command("list", cls=JsonCommand)
@guarded
def list_runs(json_out: Path = json_option("the runs")) -> None:
    """Every registered run, oldest first, with the aliases it holds."""
    runs = Registry().list()
    if json_out is not None:
        return emit(runs, json_out)
    table = Table(title=f"{len(runs)} runs")
    _id_column(table, "run", [r["run_id"] for r in runs])
    for col in ("created", "status", "base model", "loss", "train data", "evals", "aliases"):
        table.add_column(col)
    for r in runs:
        loss = r["loss_type"] + (f" beta={_fmt(r['beta'])}" if r["beta"] is not None else "")
        table.add_row(r["run_id"], r["created"][:16], r["status"], r["base_model"], loss,
                      (r["train_fingerprint"] or "-")[:12], str(r["n_evals"]), ", ".join(r["aliases"]) or "-")
    console.print(table)


@app.command(cls=JsonCommand)
@guarded
def show(
    run: str = typer.Argument(..., help="A run id, a unique prefix of one, or a run folder (with manifest.json)."),
    json_out: Path = json_option("everything about the run"),
) -> None:
    """Everything about a run: data fingerprints, every hyperparameter, final metrics, artifacts, evals, gates."""
    d = Registry().show(_run_ref(run))
    if json_out is not None:
        return emit(d, json_out)
    say(f"run          {d['run_id']}  ({d['status']}, created {d['created']})")
    say(f"folder       {d['run_dir']}")
    say(f"base model   {d['base_model']}")
    say(f"code         prefgate {d['code_version']['prefgate']}, git {d['code_version']['git_commit'] or '-'}")
    for role, ds in d["datasets"].items():
        say(f"{role + ' data':<12} {ds['fingerprint']}  {ds['n_records']} records  {ds['path']}")
    audit = d["audit"]
    say(f"audit        {audit['verdict'] or '-'}" + (f" (override: {audit['override_reason']})"
                                                     if audit["override_reason"] else ""))
    say(f"aliases      {', '.join(d['aliases']) or '-'}")
    console.print(_kv_table("hyperparameters", {**_flat(d["loss"], "loss"), **_flat(d["config"], "config")}))
    console.print(_kv_table("final metrics", d["final_metrics"]))
    _print_artifacts(d["artifacts"])
    _print_evals(d["evals"])
    _print_gates(d["gates"])


def _flat(obj: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or not obj:
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out.update(_flat(value, f"{prefix}.{key}"))
    return out


def _kv_table(title: str, values: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("name")
    table.add_column("value", overflow="fold")
    for key, value in values.items():
        table.add_row(key, _fmt(value))
    return table


def _print_artifacts(artifacts: list[dict[str, Any]]) -> None:
    say(f"artifacts ({len(artifacts)}):")  # as `sha256sum` prints them: whole hashes, copyable
    for a in artifacts:
        say(f"  {a['sha256']}  {a['name']}  ({a['size']} bytes)")


def _print_evals(evals: list[dict[str, Any]]) -> None:
    say(f"evals ({len(evals)}):")
    for e in evals:
        overall = e["overall"]
        say(f"  {e['sha256'][:12]}  score {_fmt(overall.get('score'))} ({_fmt(overall.get('grade'))})  "
            f"suite {e['suite_fingerprint'][:12]}  model {e['model']}  file {e['path']}")


def _print_gates(gates: list[dict[str, Any]]) -> None:
    say(f"gate verdicts ({len(gates)}):")
    for g in gates:
        say(f"  #{g['id']} {g['decision']} (this run as {g['role']})  file {g['path']}")
        for reason in g["reasons"]:
            say(f"      {reason}")


@app.command()
@guarded
@refusals
def promote(
    run: str = typer.Argument(..., help="A run id, a unique prefix of one, or a run folder (with manifest.json)."),
    alias: str = typer.Option(..., "--alias", help="The alias to move, e.g. prod."),
    gate: Path = typer.Option(None, "--gate", help="Gate report (`prefgate gate --json`) comparing this run's eval "
                                                   "with the current holder's."),
    force: bool = typer.Option(False, "--force", help="Promote even though the gate check refuses (needs --reason); "
                                                      "the override is recorded."),
    reason: str = typer.Option(None, "--reason", help="Why (required with --force)."),
) -> None:
    """Move ALIAS to RUN if the gate promoted this run's eval over the current holder's (exit 1 if refused). The
    gate report is recomputed from the eval files it names; an edited one, or a policy laxer than the registry's
    minimum ($PREFGATE_HOME/gate-minimum.yaml), is refused."""
    entry = Registry().promote(_run_ref(run), alias, gate, force=force, reason=reason)
    previous = entry["previous_run_id"] or "no previous holder"
    say(f"{alias} -> {entry['run_id']}  (was: {previous})")
    if entry["forced"]:
        say(f"  FORCED by {entry['actor']}: {entry['reason']}")
        say(f"  overrode: {entry['overridden']}")


@app.command()
@guarded
@refusals
def rollback(
    alias: str = typer.Argument(..., help="The alias to move back, e.g. prod."),
    reason: str = typer.Option(None, "--reason", help="Why (recorded)."),
) -> None:
    """Move ALIAS back to the holder before the current one (recorded in its history)."""
    entry = Registry().rollback(alias, reason=reason)
    say(f"{alias} -> {entry['run_id']}  (rolled back from {entry['previous_run_id']})")


@app.command(cls=JsonCommand)
@guarded
def history(
    alias: str = typer.Argument(..., help="The alias, e.g. prod."),
    json_out: Path = json_option("the alias's history"),
) -> None:
    """Every change of ALIAS, oldest first: who, when, which gate, and any override."""
    rows = Registry().history(alias)
    if json_out is not None:
        return emit(rows, json_out)
    table = Table(title=f"{alias}: held by {rows[-1]['run_id']}")
    for col in ("#", "at (UTC)", "action"):
        table.add_column(col, no_wrap=True)
    _id_column(table, "run", [r["run_id"] for r in rows])
    _id_column(table, "previous", [r["previous_run_id"] for r in rows])
    for col in ("gate", "forced", "by"):
        table.add_column(col)
    for r in rows:
        gate = f"#{r['gate']['id']} {r['gate']['decision']}" if r["gate"] else "-"
        table.add_row(str(r["seq"]), r["at"][:16].replace("T", " "), r["action"], r["run_id"],
                      r["previous_run_id"] or "-", gate, "FORCED" if r["forced"] else "-", r["actor"])
    console.print(table)
    for r in rows:  # free text below the table, one unwrapped line each
        if r["forced"]:
            say(f"#{r['seq']} forced by {r['actor']}: {r['reason']} (overrode: {r['overridden']})")
        elif r["reason"]:
            say(f"#{r['seq']} reason: {r['reason']}")


@app.command(cls=JsonCommand)
@guarded
def verify(json_out: Path = json_option("the result")) -> None:
    """Re-hash every artifact of every run; exit 1 if one is missing or modified."""
    result = Registry().verify()
    if json_out is not None:
        emit(result, json_out)
    else:
        for p in result["problems"]:
            detail = "" if p["actual"] is None else f" (sha256 {p['actual'][:12]}, registered {p['expected'][:12]})"
            say(f"{p['status'].upper()}  {p['run_id']}  {p['name']}  {p['path']}{detail}")
        say(f"checked {result['checked']} artifacts of {result['runs']} runs: "
            + ("all match" if result["ok"] else f"{len(result['problems'])} missing or modified"))
    if not result["ok"]:
        raise typer.Exit(EXIT_VERDICT_NO)
