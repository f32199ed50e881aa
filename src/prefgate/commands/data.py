"""`prefgate data ...`: validate, convert, split and describe preference data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from prefgate.commands.common import (
    REJECTED_OUT,
    SKIP_INVALID,
    SPLIT,
    console,
    guarded,
    load_for_command,
    note,
    say,
)
from prefgate.commands.jsonout import JsonCommand, emit, json_option, to_stdout

app = typer.Typer(help="Validate, convert, split and describe preference data.", no_args_is_help=True)


@app.command()
@guarded
def validate(
    source: str = typer.Argument(..., help="A .jsonl(.gz), .json, .parquet, .csv file, datasets folder or hub id."),
    skip_invalid: bool = SKIP_INVALID,
    rejected_out: Path = REJECTED_OUT,
    split: str = SPLIT,
) -> None:
    """Check every record; print the count and the dataset fingerprint (exit 2 on the first bad row)."""
    ds = load_for_command(source, skip_invalid=skip_invalid, rejected_out=rejected_out, split=split)
    say(f"{len(ds)} valid records  fingerprint {ds.fingerprint}")


@app.command()
@guarded
def convert(
    source: str = typer.Argument(..., help="Any supported input (see `validate`)."),
    out: Path = typer.Argument(..., help="Output: .jsonl, .jsonl.gz or .parquet (canonical explicit-prompt form)."),
    skip_invalid: bool = SKIP_INVALID,
    rejected_out: Path = REJECTED_OUT,
    split: str = SPLIT,
) -> None:
    """Convert to canonical explicit-prompt records, with a stable id on every record."""
    from prefgate.data import write_records

    ds = load_for_command(source, skip_invalid=skip_invalid, rejected_out=rejected_out, split=split)
    write_records(ds.records, out)
    say(f"wrote {len(ds)} records to {out}  fingerprint {ds.fingerprint}")


@app.command()
@guarded
def split(
    source: str = typer.Argument(..., help="Any supported input (see `validate`)."),
    eval_fraction: float = typer.Option(0.1, "--eval-fraction", help="Share of prompts held out for eval."),
    seed: int = typer.Option(0, "--seed", help="Changes which prompts are held out."),
    out_dir: Path = typer.Option(Path("."), "--out-dir", help="Folder for <name>.train.jsonl and <name>.eval.jsonl."),
    skip_invalid: bool = SKIP_INVALID,
    rejected_out: Path = REJECTED_OUT,
) -> None:
    """Split by prompt hash into train and eval: no prompt lands on both sides."""
    from prefgate.data import fingerprint, split_by_prompt, write_records
    from prefgate.data.dataset import default_rejected_path

    ds = load_for_command(source, skip_invalid=skip_invalid, rejected_out=rejected_out)
    train, held_out = split_by_prompt(ds.records, eval_fraction=eval_fraction, seed=seed)
    stem = default_rejected_path(source).name.removesuffix(".rejected.jsonl")
    for name, part in (("train", train), ("eval", held_out)):
        path = write_records(part, out_dir / f"{stem}.{name}.jsonl")
        say(f"{name}: {len(part)} records ({len(part) / len(ds):.1%}) -> {path}  fingerprint {fingerprint(part)}")


@app.command(cls=JsonCommand)
@guarded
def stats(
    source: str = typer.Argument(..., help="Any supported input (see `validate`)."),
    tokenizer: str = typer.Option(None, "--tokenizer", help="Tokenizer path or hub id, for token lengths."),
    max_length: int = typer.Option(None, "--max-length", help="With --tokenizer: count what this length cuts."),
    max_prompt_length: int = typer.Option(None, "--max-prompt-length", help="Prompt limit used with --max-length."),
    json_out: Path = json_option("the statistics"),
    skip_invalid: bool = SKIP_INVALID,
    rejected_out: Path = REJECTED_OUT,
    split: str = SPLIT,
) -> None:
    """Counts and length quantiles (characters; tokens with --tokenizer)."""
    from prefgate.data.stats import dataset_stats
    from prefgate.data.tokenize import load_tokenizer

    ds = load_for_command(source, skip_invalid=skip_invalid, rejected_out=rejected_out, split=split)
    tok = load_tokenizer(tokenizer) if tokenizer else None
    if max_length is not None and tok is None:
        note("note: --max-length needs --tokenizer; ignoring it")
    result = dataset_stats(ds, tokenizer=tok, max_length=max_length, max_prompt_length=max_prompt_length)
    if not to_stdout(json_out):
        _print_stats(result)
    emit(result, json_out)


def _print_stats(result: dict) -> None:
    ds = result["dataset"]
    say(f"{ds['n_records']} records ({result['format']}), {result['n_unique_prompts']} unique prompts, "
        f"fingerprint {ds['fingerprint'][:16]}")
    if result["categories"]:
        say("categories: " + ", ".join(f"{k} {v}" for k, v in result["categories"].items()))
    empty = {k: v for k, v in result["empty_completions"].items() if v}
    if empty:
        say("empty completions: " + ", ".join(f"{k} {v}" for k, v in empty.items()))
    for unit in ("chars", "tokens"):
        if unit in result:
            console.print(_quantile_table(unit, result[unit]))
    trunc = result.get("tokens", {}).get("truncation")
    if trunc:
        say(f"max_length {trunc['max_length']}: prompt cut in {trunc['prompt']}, a completion cut in "
            f"{trunc['either_side']}, exactly one side cut in {trunc['one_side_only']} pairs")


def _quantile_table(unit: str, by_field: dict) -> Table:
    table = Table(title=f"length in {unit}", title_justify="left")
    columns = ("min", "p50", "mean", "p90", "p99", "max")
    table.add_column("field")
    for col in columns:
        table.add_column(col, justify="right")
    for name, q in by_field.items():
        if isinstance(q, dict) and "p50" in q:
            table.add_row(name, *(f"{q[c]:.0f}" for c in columns))
    return table
