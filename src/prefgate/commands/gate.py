"""`prefgate gate BASELINE.json CANDIDATE.json`: promote (exit 0) or block (exit 1); bad input exits 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table

from prefgate.commands.common import EXIT_VERDICT_NO, console, guarded, say
from prefgate.commands.jsonout import emit, json_option, to_stdout

_STATUS_STYLE = {"pass": "green", "warn": "yellow", "block": "bold red"}


def _p(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


def print_gate(result: dict[str, Any]) -> None:
    """The per-category table, the overall row, then the decision and its reasons, on stdout."""
    rows = [*result["categories"], {"name": "OVERALL", **result["overall"], "p_adjusted": None}]
    table = Table(title="gate: base(line) -> cand(idate)", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                  show_edge=False)
    table.add_column("category", no_wrap=True, min_width=max(len(r["name"]) for r in rows))
    for col in ("n", "base", "cand", "drop", "p", "p Holm"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for row in rows:
        style = _STATUS_STYLE.get(row["status"], "")
        table.add_row(row["name"], str(row["n"]), f"{row['baseline']:.3f} {row['baseline_grade']}",
                      f"{row['candidate']:.3f} {row['candidate_grade']}", f"{row['grade_drop']:+d}",
                      _p(row["p_value"]), _p(row.get("p_adjusted")), f"[{style}]{row['status']}[/]")
    console.print(table)
    tests = sorted({row["test"] for row in rows if row["test"] != "none"})
    if tests:
        say(f"paired tests: {', '.join(tests)} (two-sided p; a rule fires only on a drop)")
    say(f"decision: {result['decision'].upper()}")
    for reason in result["reasons"]:
        say(f"  block: {reason}")
    for warning in result["warnings"]:
        say(f"  warn:  {warning}")
    for warning in result.get("suite_warnings", []):  # the suite's size, not this candidate
        say(f"  warn:  {warning}")


@guarded
def gate(
    baseline: Path = typer.Argument(..., help="Eval report of the model in production (the current holder)."),
    candidate: Path = typer.Argument(..., help="Eval report of the model that wants to replace it."),
    policy: Path = typer.Option(None, "--policy", help="Gate policy YAML (default: the documented defaults; "
                                                       "see examples/gate.yaml)."),
    json_out: Path = json_option("the gate report"),
) -> None:
    """Compare two eval reports of the same suite: promote (exit 0) or block (exit 1), with one reason per
    failing rule."""
    from prefgate.gate import gate_files, load_policy

    result = gate_files(baseline, candidate, load_policy(policy))
    if not to_stdout(json_out):
        print_gate(result)
    emit(result, json_out)
    if result["decision"] == "block":
        raise typer.Exit(EXIT_VERDICT_NO)
