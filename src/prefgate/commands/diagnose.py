"""`prefgate diagnose PAIRS --model RUN_OR_PATH --reference PATH`: where training moved the chosen tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from prefgate.commands.common import guarded, note, say
from prefgate.commands.jsonout import emit, json_option, to_stdout


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def print_diagnosis(report: dict[str, Any]) -> None:
    """The summary and the buckets on stdout: chosen (and rejected) shift per segment."""
    s = report["summary"]
    say(f"{s['n']} pairs; mean change per token (policy - reference), around the first differing token:")
    for seg in ("before", "at", "after"):
        say(f"  {seg:<6}  chosen {_fmt(s[seg])}  rejected {_fmt(s['rejected'][seg])}  ({s['n_' + seg]} pairs)")
    say("by normalised edit distance (characters):  n   chosen before / at / after")
    for b in report["buckets"]:
        if b["n"]:
            lo, hi = b["edit_distance"]
            say(f"  {lo:>4g}-{hi:<4g} {b['n']:>6}   {_fmt(b['before'])} / {_fmt(b['at'])} / {_fmt(b['after'])}")


@guarded
def diagnose(
    pairs: str = typer.Argument(..., help="Preference pairs (JSONL, JSON, Parquet, CSV or a datasets folder)."),
    model: str = typer.Option(..., "--model", help="The trained model: a run directory, model folder or hub id."),
    reference: str = typer.Option(..., "--reference", help="The reference model (e.g. the model it was trained from)."),
    json_out: Path = json_option("the diagnose report"),
    html_out: Path = typer.Option(None, "--html", help="Write the HTML page with plots here."),
    pair: str = typer.Option(None, "--pair", metavar="ID",
                             help="The pair to plot token by token (default: the one whose chosen tokens after "
                                  "the difference fell the most)."),
    max_length: int = typer.Option(1024, "--max-length", min=2, help="Prompt + completion tokens kept per row."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    dtype: str = typer.Option("auto", "--dtype", help="auto (float32 on CPU, bfloat16 on a GPU), float32, ..."),
    device: str = typer.Option(None, "--device", help="Default: cuda when available, else cpu."),
) -> None:
    """Per-token log-probs of both answers under the model and the reference: the mean change of the chosen
    tokens before, at and after the first token where chosen and rejected differ, by edit distance."""
    from prefgate.diagnose import diagnose_paths
    from prefgate.report.diagnose import write_diagnose_html

    report = diagnose_paths(model, reference, pairs, max_length=max_length, batch_size=batch_size, dtype=dtype,
                            device=device)
    if not to_stdout(json_out):
        print_diagnosis(report)
    emit(report, json_out)
    if html_out is not None:
        write_diagnose_html(report, html_out, pair_id=pair)
        note(f"page written to {html_out}")
