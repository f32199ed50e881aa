"""`prefgate pairs ...`: build preference pairs with deliberately wrong answers, or by sampling and grading.

`prefgate pairs construct GOLD.jsonl --strategies numeric,choice --out PAIRS.jsonl`
`prefgate pairs sample PROMPTS.jsonl --model M --k 4 --grader verifier --out PAIRS.jsonl`
Wiring (cli.py): `app.add_typer(pairs.app, name="pairs")`. Exit codes: 0 success, 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from prefgate.commands.common import console, guarded, note, say
from prefgate.console import progress
from prefgate.errors import InputError
from prefgate.jsonio import read_json_file

app = typer.Typer(help="Build preference pairs: constructed wrong answers, or sampled and graded candidates.",
                  no_args_is_help=True)


def _parse_strategies(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise InputError("expected a comma-separated list of strategies", field="--strategies")
    return names


def _read_entities(path: Path | None) -> dict[str, list[str]] | None:
    if path is None:
        return None
    data = read_json_file(path)[0]
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(n, str) and n.strip() for n in v)
            for k, v in data.items()):
        raise InputError('expected an object {"kind": ["Name", ...], ...}', where=str(path))
    return data


def _editor(url: str | None, model: str | None, key_env: str | None, local: str | None, template: Path | None,
            max_new_tokens: int, device: str | None):
    from prefgate.pairs.editor import DEFAULT_TEMPLATE, HttpEditor, LocalEditor

    text = template.read_text(encoding="utf-8") if template is not None else DEFAULT_TEMPLATE
    if url and local:
        raise InputError("give either --editor-url or --editor-local, not both", field="editor")
    if url:
        if not model:
            raise InputError("--editor-url needs --editor-model (the model name the endpoint serves)",
                             field="editor-model")
        return HttpEditor(url, model, api_key_env=key_env, template=text)
    if local:
        return LocalEditor(local, template=text, max_new_tokens=max_new_tokens, device=device)
    return None


def summary_table(summary: dict[str, dict[str, Any]]) -> Table:
    table = Table(header_style="bold")
    for col in ("strategy", "pairs", "skipped", "why skipped"):
        table.add_column(col, justify="right" if col in ("pairs", "skipped") else "left")
    for name, row in summary.items():
        reasons = "; ".join(f"{n} {why}" for why, n in list(row["reasons"].items())[:3])
        table.add_row(name, str(row["pairs"]), str(row["skipped"]), reasons)
    return table


def _write(pairs: list, skipped: list, out: Path) -> Path:
    from prefgate.data import fingerprint, write_records
    from prefgate.pairs.construct import skipped_path, write_skipped

    sidecar = write_skipped(skipped, skipped_path(out))
    if not pairs:
        raise InputError(f"no pairs made: every item was skipped (each, with its reason, is in {sidecar})",
                         where=str(out))
    write_records(pairs, out)
    say(f"wrote {len(pairs)} pairs to {out}  fingerprint {fingerprint(pairs)}")
    if skipped:
        note(f"{len(skipped)} skipped, each with its reason, in {sidecar}")
    return sidecar


@app.command()
@guarded
def construct(
    gold: Path = typer.Argument(..., metavar="GOLD.jsonl",
                                help='Gold items {"id"?, "prompt", "answer", "choices"?, "category"?}.'),
    out: Path = typer.Option(..., "--out", help="Where the pairs go (.jsonl, .jsonl.gz or .parquet)."),
    strategies: str = typer.Option(",".join(("numeric", "choice", "negation", "entity_swap", "drop_step")),
                                   "--strategies", help="Comma-separated: numeric, choice, negation, entity_swap, "
                                                        "drop_step, editor."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice (same seed, same pairs)."),
    numeric_target: str = typer.Option("any", "--numeric-target",
                                       help="Which number `numeric` changes: any, final or intermediate."),
    entities: Path | None = typer.Option(None, "--entities", metavar="FILE.json",
                                         help='More entities for entity_swap: {"kind": ["Name", ...]}.'),
    editor_url: str | None = typer.Option(None, "--editor-url",
                                          help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1."),
    editor_model: str | None = typer.Option(None, "--editor-model", help="Model name the editor endpoint serves."),
    editor_api_key_env: str | None = typer.Option(None, "--editor-api-key-env",
                                                  help="Environment variable holding the editor's API key."),
    editor_local: str | None = typer.Option(None, "--editor-local", help="A local model folder as the editor."),
    editor_template: Path | None = typer.Option(None, "--editor-template", metavar="FILE",
                                                help="Editor prompt template with {prompt} and {answer}."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="Local editor's generation limit."),
    device: str | None = typer.Option(None, "--device", help="Local editor's device (default: cuda if available)."),
) -> None:
    """Pair each gold answer (chosen) with deliberately wrong answers (rejected), one kind per strategy."""
    from prefgate.pairs import build_pairs, read_gold, resolve_strategies

    names = _parse_strategies(strategies)
    items = read_gold(gold)
    note(f"read {len(items)} gold items from {gold}")
    editor = _editor(editor_url, editor_model, editor_api_key_env, editor_local, editor_template, max_new_tokens,
                     device) if "editor" in names else None
    named = resolve_strategies(names, items, numeric_target=numeric_target, entities=_read_entities(entities),
                               editor=editor)
    with progress(len(items), "constructing", enabled=editor is not None) as advance:  # only the editor is slow
        result = build_pairs(items, named, seed, progress=lambda _done: advance(1))  # called once per item
    console.print(summary_table(result.summary([n for n, _ in named])))
    _write(result.pairs, result.skipped, out)


@app.command()
@guarded
def sample(
    prompts: Path = typer.Argument(..., metavar="PROMPTS.jsonl",
                                   help='Prompts {"id"?, "prompt", "answer"?, "category"?, "scorer"?, ...}.'),
    model: str = typer.Option(..., "--model", help="The policy: model folder, hub id or run directory."),
    grader: str = typer.Option(..., "--grader", help="verifier, verifier:NAME (exact, numeric, contains, regex, "
                                                     "refusal), judge, or python:module:function."),
    out: Path = typer.Option(..., "--out", help="Where the pairs go (.jsonl, .jsonl.gz or .parquet)."),
    k: int = typer.Option(4, "--k", min=2, help="Candidates sampled per prompt."),
    min_gap: float = typer.Option(0.5, "--min-gap", help="Keep best vs. worst only when their scores differ "
                                                         "by at least this much (scores are in [0, 1])."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (> 0)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass (1: off)."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1, help="Generation length limit."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Prompts per batch (each brings k sequences)."),
    stop: list[str] = typer.Option(None, "--stop", help="Stop string (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (same seed, same candidates on CPU)."),
    judge_url: str | None = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL of the judge."),
    judge_model: str | None = typer.Option(None, "--judge-model", help="Model name the judge endpoint serves."),
    judge_api_key_env: str | None = typer.Option(None, "--judge-api-key-env",
                                                 help="Environment variable holding the judge's API key."),
    judge_local: str | None = typer.Option(None, "--judge-local", help="A local model folder as the judge."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (float32 on CPU, bfloat16 on GPU), float32, ..."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)."),
) -> None:
    """Sample k candidates per prompt, grade them, and pair the best with the worst."""
    from prefgate.eval.judge import make_judge
    from prefgate.pairs.sample import SampleOptions, make_grader, read_prompts, sample_pairs, scorer_for

    options = SampleOptions(k=k, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                            batch_size=batch_size, min_gap=min_gap, seed=seed, stop=tuple(stop or ()), dtype=dtype,
                            device=device)
    if grader != "judge" and (judge_url or judge_local):
        raise InputError("--judge-url/--judge-local are for --grader judge", field="grader")
    items = read_prompts(prompts, scorer_for(grader))  # validated before any model loads
    note(f"read {len(items)} prompts from {prompts}")
    judge = make_judge(judge_url, judge_model, judge_api_key_env, judge_local) if grader == "judge" else None
    result = sample_pairs(model, items, make_grader(grader, judge=judge), options)
    for warning in result.warnings:
        note(f"warning: {warning}")
    say(f"{len(result.pairs)} of {len(items)} prompts gave a pair (k={k}, min gap {min_gap:g}); "
        f"{len(result.skipped)} skipped")
    _write(result.pairs, result.skipped, out)


if __name__ == "__main__":
    app()
