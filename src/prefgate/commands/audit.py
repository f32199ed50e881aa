"""`prefgate audit` and `prefgate data filter`: thin shells over `prefgate.audit`.

Wiring (cli.py): `app.command("audit")(audit.audit)` and, under the data group,
`data.app.command("filter")(audit.data_filter)`.
Exit codes: 0 audit pass or warn, 1 audit fail, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from prefgate.commands.common import (
    EXIT_VERDICT_NO,
    REJECTED_OUT,
    SKIP_INVALID,
    SPLIT,
    console,
    err_console,
    guarded,
    load_for_command,
)
from prefgate.commands.jsonout import emit, json_option, to_stdout
from prefgate.errors import InputError

STYLES = {"pass": "bold green", "warn": "bold yellow", "fail": "bold red", "skip": "dim"}


def summary_table(report: dict[str, Any]) -> Table:
    """The terminal summary: one row per check."""
    from prefgate.audit.result import describe_threshold, pct

    table = Table(show_lines=False, header_style="bold", expand=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("threshold", max_width=24)
    table.add_column("finding", ratio=1, min_width=30)
    for check in report["checks"]:
        finding = Text(check["message"])
        if check["examples"] and check["status"] != "pass":
            finding.append("\ne.g. " + ", ".join(check["examples"][:3]), style="dim")
        style = STYLES[check["status"]]
        table.add_row(check["id"], Text(check["status"].upper(), style=style), pct(check["value"]),
                      describe_threshold(check["threshold"]), finding,
                      style="dim" if check["status"] == "skip" else None)
    return table


def print_summary(report: dict[str, Any]) -> None:
    console.print(summary_table(report))
    counts = {s: sum(c["status"] == s for c in report["checks"]) for s in ("fail", "warn", "pass", "skip")}
    verdict = Text("verdict: ")
    verdict.append(report["verdict"].upper(), style=STYLES[report["verdict"]])
    verdict.append(f"  ({', '.join(f'{n} {s}' for s, n in counts.items() if n)})")
    console.print(verdict)


@guarded
def audit(
    data: str = typer.Argument(..., metavar="DATA",
                               help="Preference data: JSONL(.gz), JSON, Parquet, CSV or a datasets folder."),
    eval_data: str | None = typer.Option(None, "--eval", metavar="EVAL_DATA",
                                         help="Eval data (records, or rows with a prompt): checks leakage."),
    labels: Path | None = typer.Option(None, "--labels", metavar="HUMAN_LABELS.jsonl",
                                       help="Human labels {id, preferred, rater}: checks label agreement."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", metavar="PATH",
                                         help="Tokenizer (path or hub id): token edit distance, truncation."),
    max_length: int | None = typer.Option(None, "--max-length", min=2, metavar="N",
                                          help="Training max length in tokens (needs --tokenizer)."),
    policy_model: str | None = typer.Option(None, "--policy-model", metavar="NAME",
                                            help="The model to be trained: checks grader independence."),
    config: Path | None = typer.Option(None, "--config", metavar="audit.yaml",
                                       help="Audit policy overriding default thresholds (see examples/)."),
    json_out: Path | None = json_option("the audit report"),
    html_out: Path | None = typer.Option(None, "--html", metavar="OUT.html", help="Write the HTML report."),
    record: bool = typer.Option(False, "--record", help="Record the verdict in the registry ($PREFGATE_HOME, by the "
                                "data's fingerprint): `prefgate train` then refuses data whose recorded audit failed, "
                                "and `registry promote` a run trained on it (needs --json)."),
    skip_invalid: bool = SKIP_INVALID,
    rejected_out: Path | None = REJECTED_OUT,
    split: str | None = SPLIT,
) -> None:
    """Measure a preference dataset before training, and say pass, warn or fail."""
    from prefgate.audit import load_policy, run_audit

    policy = load_policy(config)  # a bad policy fails before any data is read
    if max_length is not None and tokenizer is None:
        raise InputError("needs --tokenizer (truncation is measured in tokens)", field="--max-length")
    if record and (json_out is None or to_stdout(json_out)):
        raise InputError("needs --json OUT.json, a file (the registry records the report file)", field="--record")
    start = time.perf_counter()
    # Always read leniently: invalid rows are reported by the `schema` check (fail unless --skip-invalid).
    # Their sidecar is written only when asked for (--skip-invalid or --rejected-out); otherwise the first
    # few go to stderr: an audit writes nothing into the current directory on its own.
    ds = load_for_command(data, skip_invalid=True, rejected_out=rejected_out, split=split,
                          sidecar=skip_invalid or rejected_out is not None)
    report = run_audit(ds, eval_dataset=eval_data, labels=labels, tokenizer=tokenizer, max_length=max_length,
                       policy_model=policy_model, policy=policy, skip_invalid=skip_invalid)
    if not to_stdout(json_out):
        print_summary(report)
    err_console.print(f"audited {len(ds)} records in {time.perf_counter() - start:.1f} s", highlight=False)
    emit(report, json_out)
    if html_out is not None:
        from prefgate.report import write_audit_html

        write_audit_html(report, html_out)
        err_console.print(f"wrote {html_out}", markup=False, highlight=False)
    if record:
        from prefgate.registry.api import default_home
        from prefgate.registry.audits import record_audit

        kept = record_audit(default_home(), json_out)
        err_console.print(f"recorded the {kept['verdict']} verdict for data {kept['fingerprint'][:16]} in "
                          f"{kept['path']}", markup=False, highlight=False)
    if report["verdict"] == "fail":
        raise typer.Exit(EXIT_VERDICT_NO)


@guarded
def data_filter(
    source: str = typer.Argument(..., metavar="IN", help="Preference data to filter."),
    output: Path = typer.Argument(..., metavar="OUT",
                                  help="Where the kept records go (.jsonl, .jsonl.gz or .parquet)."),
    max_length_ratio: float | None = typer.Option(
        None, "--max-length-ratio", metavar="R",
        help="Remove pairs whose chosen answer is more than R times as long as the rejected one."),
    skip_invalid: bool = SKIP_INVALID,
    rejected_out: Path | None = REJECTED_OUT,
    split: str | None = SPLIT,
) -> None:
    """Remove the pairs an audit check flags; the removed go to <OUT name>.removed.jsonl."""
    from prefgate.audit.filters import removed_path, split_by_length_ratio
    from prefgate.data.writers import write_records

    if max_length_ratio is None:
        raise InputError("nothing to filter: give --max-length-ratio", field="--max-length-ratio")
    ds = load_for_command(source, skip_invalid=skip_invalid, rejected_out=rejected_out, split=split)
    kept, removed = split_by_length_ratio(ds.records, max_length_ratio)
    sidecar = removed_path(output)
    write_records(kept, output)
    write_records(removed, sidecar)
    console.print(f"removed {len(removed)} of {len(ds)} records (chosen over {max_length_ratio:g}x the "
                  f"rejected length) to {sidecar}; kept {len(kept)} in {output}",
                  markup=False, highlight=False)
