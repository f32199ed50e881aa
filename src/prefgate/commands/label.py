"""`prefgate label ...`: blind human labelling of a sample of pairs, and the agreement it measures.

`prefgate label DATA --fraction 0.1 --seed 0 --rater NAME --out labels.jsonl` labels in the terminal;
`prefgate label agreement labels.jsonl [DATA] [--json OUT]` prints inter-rater agreement (Cohen's or Fleiss'
kappa) and agreement with the auto-labels. The labels file is the `--labels` input of `prefgate audit`.
Wiring (cli.py): `app.add_typer(label.app, name="label")`. Run alone: `python -m prefgate.commands.label`.
Exit codes: 0 success (also after quitting early: every answer is saved), 2 bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from prefgate.commands.common import SKIP_INVALID, SPLIT, console, guarded, load_for_command, note, say
from prefgate.commands.jsonout import JsonCommand, emit, json_option, to_stdout
from prefgate.errors import InputError


class LabelGroup(TyperGroup):
    """`prefgate label DATA ...` runs the group's own command; `prefgate label agreement ...` the sub-command.

    click would read the sub-command's name as DATA; when the first word names a sub-command, an empty DATA
    goes before it instead (a data file named like a sub-command is written `./agreement`). Otherwise every
    word is the group's own, so options may follow DATA."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] in self.commands:
            args = ["", *args]
        else:
            ctx.allow_interspersed_args = True
        return super().parse_args(ctx, args)


app = typer.Typer(cls=LabelGroup, invoke_without_command=True, add_completion=False,
                  help="Label a sample of pairs blind in the terminal; measure agreement.")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _check_rater(rater: str | None) -> str:
    if rater is None or not rater.strip():
        raise InputError("missing: name the rater (labels of several raters can share one file)", field="--rater")
    if any(ch in rater for ch in "\r\n\t"):
        raise InputError("must be one line", field="--rater")
    return rater.strip()


def _print_sample(sample: list) -> None:
    table = Table(header_style="bold")
    for col in ("position", "id", "category"):
        table.add_column(col)
    for position, rec in enumerate(sample, start=1):
        table.add_row(str(position), rec.id, rec.category or "-")
    console.print(table)


@app.callback()
@guarded
def label(
    ctx: typer.Context,
    data: str = typer.Argument(None, metavar="DATA", help="Preference pairs (any format `prefgate data` reads)."),
    fraction: float = typer.Option(0.1, "--fraction", help="Share of the pairs to label (stratified by category)."),
    seed: int = typer.Option(0, "--seed", help="Sample seed: the same seed gives every rater the same pairs."),
    rater: str = typer.Option(None, "--rater", help="Your name, written on every label."),
    out: Path = typer.Option(None, "--out", help="Labels file (JSONL), appended to; rerun to resume."),
    print_sample: bool = typer.Option(False, "--print-sample", help="Print the sample (position, id, category) "
                                                                    "and exit."),
    skip_invalid: bool = SKIP_INVALID,
    split: str = SPLIT,
) -> None:
    """Label a seeded, stratified sample of pairs blind: A and B in random order, the auto-label hidden."""
    if ctx.invoked_subcommand is not None:
        return
    from prefgate.label import LabelSession, LabelStore, label_sample

    if not data:
        raise InputError("missing DATA (usage: prefgate label DATA --rater NAME --out labels.jsonl)")
    ds = load_for_command(data, skip_invalid=skip_invalid, split=split)
    sample = label_sample(ds.records, fraction, seed)
    if print_sample:
        _print_sample(sample)
        return
    rater = _check_rater(rater)
    if out is None:
        raise InputError("missing: where the labels go", field="--out")
    store = LabelStore(out)
    store.compact()  # a crashed session may have left a re-label or a torn last line
    session = LabelSession(sample, rater, seed, store.read())
    if not session.finished:
        _run_terminal(session, store)
    _report_session(session, out)


def _run_terminal(session: Any, store: Any) -> None:
    from prefgate.label.tui import run_tui

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InputError("labelling needs an interactive terminal (stdin and stdout are not a tty)")
    try:
        run_tui(session, store)
    except KeyboardInterrupt:
        pass  # every answer is already saved
    finally:
        store.compact()


def _report_session(session: Any, out: Path) -> None:
    n = len(session.items)
    say(f"{session.rater}: gave {session.labelled_now} answers this session; {len(session.answers)} of {n} pairs in "
        f"the sample are done; labels in {out}")
    if not session.done:
        note("rerun the same command to continue where you stopped")


def agreement_table(report: dict[str, Any]) -> Table:
    table = Table(title="agreement with the auto-labels (chosen is better)", header_style="bold")
    for col in ("rater", "judgements", "chosen", "rejected", "tie", "agreement", "kappa"):
        table.add_column(col, justify="left" if col == "rater" else "right")
    rows = list(report["auto"]["raters"].items()) + [("all raters", report["auto"]["overall"])]
    for name, row in rows:
        table.add_row(name, str(row["n"]), str(row["chosen"]), str(row["rejected"]), str(row["tie"]),
                      _pct(row["agreement"]), _num(row["kappa"]))
    return table


def _print_inter_rater(inter: dict[str, Any]) -> None:
    if inter["method"] is None:
        say(f"inter-rater: {inter['message']}")
        return
    name = {"cohen": "Cohen's", "fleiss": "Fleiss'"}[inter["method"]]
    say(f"inter-rater: {name} kappa {_num(inter['kappa'])} on {inter['n_overlap']} pairs labelled by all "
        f"{len(inter['raters'])} raters (all agree on {_pct(inter['observed_agreement'])})")
    if inter["method"] == "fleiss":
        for pair in inter["pairwise"]:
            say(f"  {pair['raters'][0]} vs {pair['raters'][1]}: Cohen's kappa {_num(pair['kappa'])} on "
                f"{pair['n_overlap']} pairs (agree on {_pct(pair['observed_agreement'])})")


@app.command("agreement", cls=JsonCommand)
@guarded
def agreement(
    labels: Path = typer.Argument(..., metavar="LABELS.jsonl", help="Labels written by `prefgate label`."),
    data: str = typer.Argument(None, metavar="[DATA]", help="The labelled pairs: checks ids, adds categories."),
    json_out: Path = json_option("the agreement report"),
    skip_invalid: bool = SKIP_INVALID,
    split: str = SPLIT,
) -> None:
    """Inter-rater agreement (Cohen's or Fleiss' kappa) and each rater's agreement with the auto-labels."""
    from prefgate.label.agreement import agreement_report
    from prefgate.label.store import read_labels_file

    if not labels.exists():
        raise InputError("no such file", where=str(labels))
    found = read_labels_file(labels)
    ds = load_for_command(data, skip_invalid=skip_invalid, split=split) if data else None
    report = agreement_report(found, records=ds.records if ds else None, labels_path=str(labels),
                              dataset=ds.describe() if ds else None)
    if not to_stdout(json_out):
        console.print(agreement_table(report))
        _print_inter_rater(report["inter_rater"])
    overall = report["auto"]["overall"]["agreement"]
    if overall is not None and overall < 0.8:
        note(f"warning: humans prefer the chosen side in only {overall:.1%} of judgements, below the 80% the "
             "audit's label_agreement check requires by default: do not train on these auto-labels")
    emit(report, json_out)


if __name__ == "__main__":
    app()
