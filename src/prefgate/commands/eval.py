"""`prefgate eval ...`: run a suite on a model, or import lm-eval-harness results, into an eval report.

`prefgate eval --model M --suite S.jsonl --out EVAL.json` runs the eval (the group's own callback);
`prefgate eval import-lm-eval RESULTS.json [SAMPLES.jsonl ...] --out EVAL.json` imports;
`prefgate eval plan --baseline EVAL.json [--json PLAN.json | -]` sizes the suite against the gate's promise.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from prefgate.commands.common import console, guarded, note, say, write_json
from prefgate.commands.jsonout import JsonCommand, emit, json_option, to_stdout
from prefgate.errors import InputError

if TYPE_CHECKING:  # the grades import numpy and pydantic: not at start-up
    from prefgate.eval.grades import GradeBands

app = typer.Typer(help="Evaluate a model on a suite (per-category scores and grades), or import lm-eval results.",
                  invoke_without_command=True)


def parse_bands(text: str | None) -> GradeBands:
    """`A=0.9,B=0.8,C=0.7,D=0.6` (any subset; the rest keep their defaults) as GradeBands."""
    from prefgate.eval.grades import GradeBands

    if not text:
        return GradeBands()
    values: dict[str, float] = {}
    for part in text.split(","):
        letter, _, number = part.partition("=")
        try:
            values[letter.strip().upper()] = float(number)
        except ValueError:
            raise InputError(f"expected LETTER=NUMBER pairs like A=0.9,B=0.8, got {part!r}", field="--bands") from None
    try:
        return GradeBands(**values)
    except ValueError as err:  # pydantic's ValidationError is a ValueError
        first = err.errors()[0]["msg"] if hasattr(err, "errors") else str(err)
        raise InputError(first, field="--bands") from None


def print_report(report: dict[str, Any]) -> None:
    """The per-category table and the overall line, on stdout."""
    table = Table(title=f"eval: {report['model'].get('path')}")
    for col in ("category", "n", "score", "95% CI", "grade", "A-rate"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for name, cat in report["categories"].items():
        lo, hi = cat.get("ci") or [None, None]
        ci = f"{lo:.3f}-{hi:.3f}" if lo is not None else "-"
        a_rate = f"{cat['a_rate']:.1%}" if cat.get("a_rate") is not None else "-"
        score = f"{cat['score']:.3f}" if cat.get("score") is not None else "-"
        table.add_row(name, str(cat["n"] if cat["n"] is not None else "-"), score, ci, cat["grade"] or "-", a_rate)
    console.print(table)
    ov = report["overall"]
    score = f"{ov['score']:.3f}" if ov.get("score") is not None else "-"
    failed = f" failed={ov['n_failed']}" if ov.get("n_failed") else ""
    say(f"overall: n={ov['n']} score={score} grade={ov['grade'] or '-'}{failed}")
    for block, key in (("preference", "accuracy"), ("kl", "mean_per_token")):
        if report.get(block) and report[block].get(key) is not None:
            say(f"{block}: {key}={report[block][key]:.4f}")


@app.callback()
@guarded
def run(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", help="Model folder, hub id, or run directory (adapter/ or model/)."),
    suite: Path = typer.Option(None, "--suite", help="Suite JSONL: one item a line (see docs/eval.md)."),
    out: Path = typer.Option(None, "--out", help="Where to write the eval report (JSON)."),
    reference: str = typer.Option(None, "--reference", help="Reference model: adds KL on the suite's prompts."),
    pairs: str = typer.Option(None, "--pairs", help="Held-out preference pairs for preference accuracy "
                                                    "(needs --reference)."),
    beta: float = typer.Option(0.1, "--beta", help="Beta of the implicit reward margin (preference accuracy)."),
    system_prompt: str = typer.Option(None, "--system-prompt", help="Evaluate with this system prompt "
                                                                    "(a prompting baseline)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Generation length limit."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Prompts per generation batch."),
    stop: list[str] = typer.Option(None, "--stop", help="Stop string (repeatable); items may add their own."),
    bands: str = typer.Option(None, "--bands", help="Grade bands, e.g. A=0.9,B=0.8,C=0.7,D=0.6 (the default)."),
    judge_url: str = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL, e.g. "
                                                            "http://127.0.0.1:8000/v1."),
    judge_model: str = typer.Option(None, "--judge-model", help="Model name to send to the judge endpoint."),
    judge_api_key_env: str = typer.Option(None, "--judge-api-key-env",
                                          help="Environment variable holding the judge's API key."),
    judge_local: str = typer.Option(None, "--judge-local", help="A local model folder to use as the judge."),
    stop_on_judge_failure: bool = typer.Option(False, "--stop-on-judge-failure",
                                               help="Stop the eval (exit 2) at the first item the judge cannot "
                                                    "grade. Default: record the item under 'failed' in the report "
                                                    "(not scored) and go on."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap confidence intervals."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (float32 on CPU, bfloat16 on GPU), float32, ..."),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)."),
) -> None:
    """Evaluate a model on a suite: per-item scores, per-category score, grade, A-rate and 95% CI."""
    if ctx.invoked_subcommand is not None:
        return
    missing = [name for name, value in (("--model", model), ("--suite", suite), ("--out", out)) if value is None]
    if missing:
        raise InputError(f"missing option {missing[0]} (usage: prefgate eval --model M --suite S.jsonl "
                         "--out EVAL.json)")
    from prefgate.eval.judge import make_judge
    from prefgate.eval.runner import EvalOptions, run_eval
    from prefgate.eval.suite import load_suite
    from prefgate.lm.generate import GenerationConfig

    load_suite(suite)  # validate before the (slow) model and judge loads
    options = EvalOptions(
        generation=GenerationConfig(max_new_tokens=max_new_tokens, batch_size=batch_size, stop=tuple(stop or ()),
                                    system_prompt=system_prompt),
        bands=parse_bands(bands), seed=seed, beta=beta, dtype=dtype, device=device,
        stop_on_judge_failure=stop_on_judge_failure)
    judge = make_judge(judge_url, judge_model, judge_api_key_env, judge_local)
    report = run_eval(model, str(suite), options=options, judge=judge, reference=reference, pairs=pairs)
    write_json(report, out)
    print_report(report)
    note_failed(report)
    note(f"wrote {out}")


def note_failed(report: dict[str, Any], shown: int = 3) -> None:
    """On stderr: how many items the judge could not grade, the first few with their reasons."""
    failed = report.get("failed") or []
    if not failed:
        return
    note(f"warning: the judge could not grade {len(failed)} of {len(failed) + len(report['items'])} items; they are "
         "not scored (listed under 'failed' in the report), and `prefgate gate` needs every item: rerun the eval "
         "(or pass --stop-on-judge-failure to stop at the first)")
    for row in failed[:shown]:
        note(f"  {row['id']} ({row['category']}): {row['error']}")
    if len(failed) > shown:
        note(f"  ... and {len(failed) - shown} more")


@app.command("import-lm-eval")
@guarded
def import_lm_eval(
    results: Path = typer.Argument(..., help="lm-eval results JSON (results_<timestamp>.json)."),
    samples: list[Path] = typer.Argument(None, help="samples_<task>_<timestamp>.jsonl files (--log_samples)."),
    out: Path = typer.Option(..., "--out", help="Where to write the eval report (JSON)."),
    metric: str = typer.Option(None, "--metric", help="Metric to score every task with, e.g. acc_norm or "
                                                      "exact_match,strict-match (default: acc, exact_match, ...)."),
    bands: str = typer.Option(None, "--bands", help="Grade bands, e.g. A=0.9,B=0.8,C=0.7,D=0.6 (the default)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap confidence intervals."),
) -> None:
    """Turn lm-eval-harness outputs into an eval report: one category per task."""
    from prefgate.eval.lm_eval import import_lm_eval as do_import

    report = do_import(results, samples or [], metric=metric, bands=parse_bands(bands), seed=seed)
    write_json(report, out)
    print_report(report)
    for skipped in report["skipped"]:
        note(f"skipped task {skipped['task']}: {skipped['reason']}")
    for warning in report["warnings"]:
        note(f"warning: {warning}")
    if not report["items"]:
        note("no samples files: the report has no per-item scores, so `prefgate gate` cannot pair it "
             "(run lm-eval with --log_samples)")
    note(f"wrote {out}")


def _drop(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_plan(plan: dict[str, Any]) -> None:
    """The sizing table and how to read it, on stdout."""
    width, power, alpha = plan["grade_width"], plan["power"], plan["alpha"]
    table = Table(title=f"eval plan: {plan['baseline'].get('path')}")
    # detects: the smallest drop found with `power`; 1 grade: is a drop of one grade width found that often;
    # needs: items for that at the same accuracy; gate: below min_items the gate only warns
    for col in ("category", "n", "baseline", f"detects@{power:.0%}", f"1 grade ({width:.2f})", "needs", "gate"):
        table.add_column(col, justify="left" if col in ("category", "gate") else "right")
    for row in plan["categories"]:
        detects = {True: "yes", False: "no", None: "-"}[row["one_grade_detectable"]]
        need = "-" if row["items_for_one_grade"] is None else str(row["items_for_one_grade"])
        table.add_row(row["name"], str(row["n"]), f"{row['baseline']:.3f}", _drop(row["detectable_drop"]), detects,
                      need, "warns only" if row["enforced"] is False else "decides")
    console.print(table)
    say(f"detects@{power:.0%}: the smallest drop the gate's test finds {power:.0%} of the time at alpha={alpha}; "
        f"needs: the items that would find a one-grade drop ({width:.2f}) that often")
    say(f"power model: {plan['model']}")
    short = [r["name"] for r in plan["categories"] if r["one_grade_detectable"] is False]
    if short:
        say(f"{len(short)} of {len(plan['categories'])} categories cannot detect a one-grade drop: {', '.join(short)}")


@app.command("plan", cls=JsonCommand)
@guarded
def plan(
    baseline: Path = typer.Option(..., "--baseline", help="Eval report of the baseline (the model the gate "
                                                          "compares against) on the suite to size."),
    json_out: Path = json_option("the plan"),
    alpha: float = typer.Option(None, "--alpha", help="Significance level of the gate's test (default: the gate "
                                                      "policy's, 0.05)."),
    power: float = typer.Option(None, "--power", help="Power a category needs (default: the gate policy's, 0.8)."),
    policy: Path = typer.Option(None, "--policy", help="Gate policy YAML: its bands (grade width), alpha, power "
                                                       "and min_items (default: the gate's defaults)."),
) -> None:
    """Per category: the smallest drop the gate's test detects with 80% power, whether a one-grade drop is
    detectable, and the items that would need."""
    from prefgate.eval.plan import plan_file
    from prefgate.gate import load_policy

    settings = load_policy(policy)
    result = plan_file(baseline, alpha=settings.alpha if alpha is None else alpha,
                       power=settings.power if power is None else power, bands=settings.bands,
                       min_items=settings.min_items)
    if not to_stdout(json_out):
        print_plan(result)
    emit(result, json_out)
