"""`prefgate eval`: run a model on a suite, score every item, aggregate per category, write the report.

Read top to bottom: load and validate the suite (and the judge) before any model; load the model;
generate for every item that needs an output; score; compute the choice items' log-likelihoods; with a
reference, preference accuracy and KL; assemble the eval report (contract in ../shared/DESIGN.md).

An item the judge cannot grade (`prefgate.eval.judge.GradeFailed`) is not scored: it goes to the report's
`failed` list with the reason, and is counted (`n_failed`) overall and in its category. The eval stops instead
when `EvalOptions.stop_on_judge_failure` asks it to, or when the judge fails on `MAX_FAILED_IN_A_ROW` judge
items in a row (an endpoint that is down would otherwise cost every item its full retries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefgate import console
from prefgate.errors import InputError
from prefgate.eval.grades import DEFAULT_BANDS, GradeBands, aggregate, by_category, summarize
from prefgate.eval.judge import GradeFailed
from prefgate.eval.plan import DEFAULT_ALPHA, DEFAULT_POWER, POWER_MODEL, grade_width, sizing_of_scores
from prefgate.eval.scorers import Score, score_choice, score_output
from prefgate.eval.suite import Suite, SuiteItem, load_suite
from prefgate.lm.generate import Generation, GenerationConfig, generate_ids, prompt_ids
from prefgate.lm.load import LoadedModel, load_model, pad_token_id
from prefgate.lm.logps import completion_logps
from prefgate.reportio import header

EVAL_VERSION = 1
MAX_FAILED_IN_A_ROW = 5


@dataclass
class EvalOptions:
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    bands: GradeBands = DEFAULT_BANDS
    seed: int = 0  # seed of the bootstrap confidence intervals
    beta: float = 0.1  # beta of the implicit reward (preference accuracy)
    dtype: str = "auto"
    device: str | None = None
    progress: bool = True
    stop_on_judge_failure: bool = False  # True: an item the judge cannot grade stops the eval (InputError)


def _stops(item: SuiteItem) -> list[str]:
    stop = item.extra.get("stop") or []
    return [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)]


def _item_row(item: SuiteItem, score: Score, output: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {"id": item.id, "category": item.category, "score": score.score}
    if score.grade is not None:
        row["grade"] = score.grade
    if output is not None:
        row["output"] = output
    if score.details:
        row["details"] = score.details
    return row


def _failed_row(item: SuiteItem, err: GradeFailed, output: str) -> dict[str, Any]:
    return {"id": item.id, "category": item.category, "error": err.message, "output": output}


class _FailureCount:
    """Judge items that failed in a row; enough of them stop the eval."""

    def __init__(self, options: EvalOptions):
        self.options = options
        self.in_a_row = 0

    def success(self, item: SuiteItem) -> None:
        if item.scorer == "judge":
            self.in_a_row = 0

    def failure(self, err: GradeFailed) -> None:
        if self.options.stop_on_judge_failure:
            raise err
        self.in_a_row += 1
        if self.in_a_row >= MAX_FAILED_IN_A_ROW:
            raise InputError(f"the judge failed on {self.in_a_row} items in a row, so it looks down or overloaded; "
                             f"the eval stops (the last: {err})")


def _score_outputs(items: list[SuiteItem], generations: list[Generation], options: EvalOptions,
                   judge) -> dict[str, dict[str, Any]]:
    """Item rows of the generating items; an item the judge cannot grade gets a failed row (`_failed_row`)."""
    rows: dict[str, dict[str, Any]] = {}
    failures = _FailureCount(options)
    with console.progress(len(items), "scoring",
                          enabled=options.progress and any(it.scorer == "judge" for it in items)) as advance:
        for item, gen in zip(items, generations, strict=True):
            try:
                rows[item.id] = _item_row(item, score_output(gen.text, item, judge=judge), gen.text)
                failures.success(item)
            except GradeFailed as err:
                failures.failure(err)
                rows[item.id] = _failed_row(item, err, gen.text)
            advance(1)
    return rows


def choice_logliks(loaded: LoadedModel, items: list[SuiteItem], options: EvalOptions) -> list[list[float]]:
    """Summed log-likelihood of each choice of each item given its prompt (lm-eval's " choice" continuation
    for plain prompts; the bare choice after a chat template's assistant header)."""
    tok = loaded.tokenizer
    prompts, continuations, owners = [], [], []
    for k, item in enumerate(items):
        ids = prompt_ids(tok, item.prompt, options.generation.system_prompt)
        for choice in item.choices or []:
            text = f" {choice}" if isinstance(item.prompt, str) else choice
            prompts.append(ids)
            continuations.append(tok(text, add_special_tokens=False)["input_ids"])
            owners.append(k)
    logps, _ = completion_logps(loaded.model, prompts, continuations, pad_id=pad_token_id(tok),
                                batch_size=options.generation.batch_size)
    out: list[list[float]] = [[] for _ in items]
    for k, value in zip(owners, logps.tolist(), strict=True):
        out[k].append(value)
    return out


def score_suite(loaded: LoadedModel, suite: Suite, options: EvalOptions, *, judge=None) -> tuple[
        list[dict[str, Any]], list[Generation]]:
    """(item rows in suite order, the generations) for every item of the suite; the row of an item the judge
    could not grade has an "error" and no "score" (`build_report` lists it under "failed")."""
    generating = [it for it in suite.items if it.generates]
    choosing = [it for it in suite.items if not it.generates]
    generations = generate_ids(loaded.model, loaded.tokenizer, [it.prompt for it in generating], options.generation,
                               stops=[_stops(it) for it in generating], progress=options.progress) \
        if generating else []
    rows = _score_outputs(generating, generations, options, judge)
    if choosing:
        for item, logliks in zip(choosing, choice_logliks(loaded, choosing, options), strict=True):
            rows[item.id] = _item_row(item, score_choice(logliks, item), None)
    return [rows[it.id] for it in suite.items], generations


def build_report(model_info: dict[str, Any], suite: Suite, items: list[dict[str, Any]], options: EvalOptions, *,
                 judge_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The eval report (everything but the reference blocks); rows without a score (failed) go to "failed"."""
    failed = [it for it in items if "score" not in it]
    items = [it for it in items if "score" in it]
    overall, categories = aggregate(items, options.bands, seed=options.seed)
    width = grade_width(options.bands)
    for name, group in by_category(items).items():  # what the gate's test on this category can detect
        categories[name].update(sizing_of_scores([float(it["score"]) for it in group], width=width))
    categories = _count_failed(overall, categories, failed, options.bands)
    return {
        **header("eval", EVAL_VERSION, model={**model_info, "system_prompt": options.generation.system_prompt},
                 suite={"path": suite.path, "fingerprint": suite.fingerprint, "n_items": len(suite)}),
        "generation": options.generation.describe(), "judge": judge_info,
        "bands": options.bands.model_dump(), "seed": options.seed,
        "sizing": {"alpha": DEFAULT_ALPHA, "power": DEFAULT_POWER, "grade_width": width, "model": POWER_MODEL},
        "overall": overall, "categories": categories, "items": items, "failed": failed,
    }


def _count_failed(overall: dict[str, Any], categories: dict[str, dict[str, Any]], failed: list[dict[str, Any]],
                  bands: GradeBands) -> dict[str, dict[str, Any]]:
    """`n_failed` overall and in every category (a category whose items all failed appears with n 0)."""
    overall["n_failed"] = len(failed)
    counts = {name: len(group) for name, group in by_category(failed).items()}
    for name in counts.keys() - categories.keys():
        categories[name] = summarize([], bands)
    for name, block in categories.items():
        block["n_failed"] = counts.get(name, 0)
    return dict(sorted(categories.items()))


def run_eval(model: str, suite_path: str, *, options: EvalOptions | None = None, judge=None,
             reference: str | None = None, pairs: str | None = None) -> dict[str, Any]:
    """Evaluate `model` on the suite at `suite_path`; returns the eval report."""
    options = options or EvalOptions()
    suite = load_suite(suite_path)
    if judge is None and any(it.scorer == "judge" for it in suite.items):
        raise InputError("the suite has judge items but no judge is configured (--judge-url and --judge-model, "
                         "or --judge-local)", where=suite_path)
    if pairs and not reference:
        raise InputError("preference accuracy needs a reference model (--reference)", field="pairs")
    loaded = load_model(model, dtype=options.dtype, device=options.device)
    items, generations = score_suite(loaded, suite, options, judge=judge)
    report = build_report(loaded.info, suite, items, options,
                          judge_info=judge.describe() if hasattr(judge, "describe") else None)
    if reference:
        report.update(reference_blocks(loaded, reference, generations, options, pairs))
    return report


def reference_blocks(loaded: LoadedModel, reference: str, generations: list[Generation], options: EvalOptions,
                     pairs: str | None) -> dict[str, Any]:
    """The "reference", "kl" and (with `pairs`) "preference" blocks."""
    from prefgate.eval.reference import mean_kl, preference_accuracy

    ref = load_model(reference, dtype=options.dtype, device=options.device)
    tok = loaded.tokenizer
    pad_id = pad_token_id(tok)
    batch = options.generation.batch_size
    out: dict[str, Any] = {"reference": ref.info}
    out["kl"] = mean_kl(loaded.model, ref.model, [g.prompt_ids for g in generations],
                        [g.completion_ids for g in generations], pad_id=pad_id, batch_size=batch)
    if pairs:
        out["preference"] = preference_accuracy(loaded.model, ref.model, tok, pairs, beta=options.beta,
                                                batch_size=batch)
    return out
