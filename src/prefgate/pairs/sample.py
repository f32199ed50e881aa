"""Sample-and-grade pairs: k candidates per prompt from the policy, graded; best vs. worst becomes a pair.

Read top to bottom: read the prompts (validated like eval suite items, so a verifier's needs are checked
before any model loads); build the grader; load the policy; sample k candidates per prompt (batched, with
temperature, seeded); grade each; keep best vs. worst when their score gap is at least `min_gap`.

Graders (`make_grader(spec)`):
- `verifier`: the eval scorer each prompt names in its `scorer` field (exact, numeric, contains, regex,
  refusal); `verifier:NAME` uses that scorer for every prompt. Needs the gold `answer` (not for refusal).
- `judge`: an LLM grades each candidate A-F (`prefgate.eval.judge`, HTTP or local); the score is the
  grade's score. The record's `grader` is the judge's model name, so the audit can check its family.
- `python:module:function`: `(output, item) -> Score | float | bool`, as for eval suites.

A judge from the policy's own model family tends to prefer that family's answers (the seed's sibling-grader
bias): `sample_pairs` returns a warning when the two families match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefgate import console
from prefgate.data.readers import iter_rows
from prefgate.data.records import PreferencePair, Text, content_id
from prefgate.errors import InputError
from prefgate.eval.scorers import BUILTIN as BUILTIN_SCORERS
from prefgate.eval.scorers import score_output
from prefgate.eval.suite import SuiteItem, parse_item
from prefgate.pairs.construct import as_answer

DEFAULT_CATEGORY = "default"  # eval items need a category; records keep the prompt's own (or none)


@dataclass(frozen=True)
class SampleOptions:
    k: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    batch_size: int = 8  # prompts per batch (each brings k sequences)
    min_gap: float = 0.5
    seed: int = 0
    stop: tuple[str, ...] = ()
    dtype: str = "auto"
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.k < 2:
            raise InputError(f"must be at least 2 (best and worst of k), got {self.k}", field="k")
        if self.temperature <= 0:
            raise InputError(f"must be > 0 (sampling), got {self.temperature:g}", field="temperature")
        if not 0 < self.top_p <= 1:
            raise InputError(f"must be in (0, 1], got {self.top_p:g}", field="top_p")
        if not 0 <= self.min_gap <= 1:
            raise InputError(f"must be in [0, 1] (scores are in [0, 1]), got {self.min_gap:g}", field="min_gap")

    def describe(self) -> dict[str, Any]:
        return {"k": self.k, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "min_gap": self.min_gap, "seed": self.seed}


# ---------------------------------------------------------------------------------------------------------
# Graders


@dataclass
class Grader:
    """`spec` as given; `scorer` is the scorer set on every item (None: each item's own); `judge` the judge
    object for `judge`; `model` the model name a judge runs (for the family check and the records)."""

    spec: str
    scorer: str | None = None
    judge: Any = None
    model: str | None = None

    def name_for(self, item: SuiteItem) -> str:
        """The record's `grader` field: the judge's model name, else `verifier:<scorer>` or the python spec."""
        if self.judge is not None:
            return self.model or "judge"
        if item.scorer.startswith("python:"):
            return item.scorer
        return f"verifier:{item.scorer}"

    def score(self, output: str, item: SuiteItem) -> float:
        return score_output(output, item, judge=self.judge).score


def scorer_for(spec: str) -> str | None:
    """The scorer a grader spec sets on every prompt (None: each prompt's own); InputError for a bad spec."""
    if spec == "verifier":
        return None
    if spec.startswith("verifier:"):
        name = spec.split(":", 1)[1]
        if name not in BUILTIN_SCORERS:
            raise InputError(f"unknown verifier {name!r}; expected one of {', '.join(BUILTIN_SCORERS)}",
                             field="grader")
        return name
    if spec == "judge":
        return "judge"
    if spec.startswith("python:"):
        from prefgate.eval.suite import resolve_python_scorer

        resolve_python_scorer(spec)  # fail now on a typo
        return spec
    raise InputError(f"unknown grader {spec!r}; expected verifier, verifier:NAME, judge or python:module:function",
                     field="grader")


def make_grader(spec: str, *, judge: Any = None) -> Grader:
    """A grader from its spec (see the module docstring); `judge` is an `HttpJudge` or `LocalJudge`."""
    scorer = scorer_for(spec)
    if scorer != "judge":
        return Grader(spec, scorer=scorer)
    if judge is None:
        raise InputError("the judge grader needs --judge-url and --judge-model, or --judge-local", field="grader")
    model = getattr(judge, "model", None) or getattr(judge, "path", None)
    return Grader(spec, scorer="judge", judge=judge, model=str(model) if model else None)


# ---------------------------------------------------------------------------------------------------------
# Prompts


@dataclass(slots=True)
class PromptItem:
    """A prompt to sample for, as an eval item (for the scorers), with its own category (or None)."""

    item: SuiteItem
    category: str | None


def read_prompts(path: str | Path, scorer: str | None = None) -> list[PromptItem]:
    """Read a prompts JSONL `{"id"?, "prompt", "answer"?, "category"?, "scorer"?, ...}`; every row is
    validated as an eval item with `scorer` (None: the row's own; see `scorer_for`), so a missing answer is
    an error naming its line."""
    if not str(path).lower().endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        raise InputError("expected a .jsonl prompts file (one prompt a line)", where=str(path))
    out: list[PromptItem] = []
    seen: dict[str, str] = {}
    for raw in iter_rows(path):
        if raw.error is not None:
            raise raw.error
        item, category = _prompt_item(raw.row, raw.where, scorer)
        if item.id in seen:
            raise InputError(f"duplicate id {item.id!r} (first at {seen[item.id]})", where=raw.where, field="id")
        seen[item.id] = raw.where
        out.append(PromptItem(item, category))
    if not out:
        raise InputError("no prompts (empty file)", where=str(path))
    return out


def _prompt_item(row: Any, where: str, scorer: str | None) -> tuple[SuiteItem, str | None]:
    if not isinstance(row, dict):
        raise InputError("expected a JSON object with a prompt", where=where)
    if "prompt" not in row:
        raise InputError("missing", where=where, field="prompt")
    category = row.get("category")
    if category is not None and (not isinstance(category, str) or not category.strip()):
        raise InputError("expected a non-empty string", where=where, field="category")
    scorer = scorer or row.get("scorer")
    if scorer is None:
        raise InputError("missing: grader 'verifier' uses each prompt's scorer (or give --grader verifier:NAME)",
                         where=where, field="scorer")
    if scorer == "choice":
        raise InputError("the choice scorer ranks given options and generates nothing; use the choice "
                         "strategy of `prefgate pairs construct`", where=where, field="scorer")
    suite_row = {**row, "category": category or DEFAULT_CATEGORY, "scorer": scorer}
    if "id" not in row:
        suite_row["id"] = content_id(row["prompt"], *([str(row["answer"])] if "answer" in row else []))
    return parse_item(suite_row, where=where), category


# ---------------------------------------------------------------------------------------------------------
# Sampling


def sample_candidates(model: Any, tokenizer: Any, prompts: Sequence[Text], options: SampleOptions) -> list[list[str]]:
    """k sampled completions per prompt, in prompt order (stop-trimmed); seeded per batch, so the same seed
    gives the same candidates on CPU."""
    import torch

    from prefgate.lm.generate import prompt_ids, trim_stop

    encoded = [prompt_ids(tokenizer, p) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    results: list[list[str]] = [[] for _ in encoded]
    with console.progress(len(encoded), "sampling", enabled=options.progress) as advance:
        for number, start in enumerate(range(0, len(order), options.batch_size)):
            batch = order[start: start + options.batch_size]
            torch.manual_seed(options.seed * 1_000_003 + number)
            outs = _sample_batch(model, tokenizer, [encoded[i] for i in batch], options)
            for j, i in enumerate(batch):
                ids_k = outs[j * options.k: (j + 1) * options.k]
                results[i] = [trim_stop(tokenizer.decode(ids, skip_special_tokens=True), options.stop)
                              for ids in ids_k]
            advance(len(batch))
    return results


def _sample_batch(model: Any, tokenizer: Any, rows: list[list[int]], options: SampleOptions) -> list[list[int]]:
    """k sampled continuations per row (rows x k, row-major), through the runtime's batched generation."""
    from prefgate.lm.generate import generate_batch

    return generate_batch(model, tokenizer, rows, options.max_new_tokens, temperature=options.temperature,
                          top_p=options.top_p, num_return_sequences=options.k)


# ---------------------------------------------------------------------------------------------------------
# Pairs


@dataclass(frozen=True, slots=True)
class SkippedPrompt:
    id: str
    reason: str
    scores: list[float]
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "reason": self.reason, "scores": self.scores, "where": self.where}


@dataclass
class SampleResult:
    pairs: list[PreferencePair] = field(default_factory=list)
    skipped: list[SkippedPrompt] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def best_and_worst(scores: Sequence[float]) -> tuple[int, int]:
    """(index of the best score, index of the worst): the first best and the last worst, so equal scores
    never pair a candidate with itself.

    >>> best_and_worst([0.0, 1.0, 1.0, 0.0])
    (1, 3)
    """
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    worst = min(range(len(scores)), key=lambda i: (scores[i], -i))
    return best, worst


def pick_pair(prompt: PromptItem, candidates: list[str], scores: list[float], grader: Grader,
              options: SampleOptions, policy: str) -> PreferencePair | SkippedPrompt:
    """The best-vs-worst pair of one prompt, or why there is none."""
    item = prompt.item
    best, worst = best_and_worst(scores)
    gap = scores[best] - scores[worst]
    if gap < options.min_gap or gap <= 0:
        return SkippedPrompt(item.id, f"score gap {gap:.3g} is below --min-gap {options.min_gap:g}", scores,
                             item.where)
    if candidates[best].strip() == candidates[worst].strip():
        return SkippedPrompt(item.id, "the best and worst candidates are the same text", scores, item.where)
    chosen, rejected = as_answer(item.prompt, candidates[best]), as_answer(item.prompt, candidates[worst])
    meta = {"source_id": item.id, "scores": scores, "chosen_score": scores[best], "rejected_score": scores[worst],
            "chosen_index": best, "rejected_index": worst, "policy": policy, **options.describe()}
    return PreferencePair(id=content_id(item.prompt, chosen, rejected), prompt=item.prompt, chosen=chosen,
                          rejected=rejected, category=prompt.category, rejection_type="sampled",
                          grader=grader.name_for(item), meta=meta)


def family_warning(policy_names: Sequence[str], grader: Grader, grader_names: Sequence[str] = ()) -> str | None:
    """A warning when the judge comes from the policy's model family (names: model paths, ids, model_type)."""
    from prefgate.audit.families import FAMILIES, model_family

    if grader.judge is None:
        return None
    known = {name for name, _ in FAMILIES}  # an unknown name's fallback family says nothing about siblings
    policy_families = {model_family(n) for n in policy_names if n} & known
    judge_families = {model_family(n) for n in (grader.model, *grader_names) if n} & known
    shared = sorted(policy_families & judge_families)
    if not shared:
        return None
    return (f"the judge ({grader.model}) and the policy come from the same model family ({shared[0]}): a grader "
            "tends to prefer its own family's answers, so these pairs reward the policy's style; use a judge "
            "from another family")


def _model_type(model: Any) -> str:
    return str(getattr(getattr(model, "config", None), "model_type", "") or "")


def sample_pairs(model: str, prompts: Sequence[PromptItem], grader: Grader,
                 options: SampleOptions | None = None) -> SampleResult:
    """Sample, grade and pair (see the module docstring). `model`: a folder, hub id or run directory."""
    from prefgate.lm.load import load_model

    options = options or SampleOptions()
    loaded = load_model(model, dtype=options.dtype, device=options.device)
    result = SampleResult()
    judge_loaded = getattr(grader.judge, "loaded", None)
    warning = family_warning([model, _model_type(loaded.model)], grader,
                             [_model_type(judge_loaded.model)] if judge_loaded is not None else [])
    if warning:
        result.warnings.append(warning)
    candidates = sample_candidates(loaded.model, loaded.tokenizer, [p.item.prompt for p in prompts], options)
    with console.progress(len(prompts), "grading", enabled=options.progress) as advance:
        for prompt, texts in zip(prompts, candidates, strict=True):
            scores = [grader.score(text, prompt.item) for text in texts]
            outcome = pick_pair(prompt, texts, scores, grader, options, model)
            (result.pairs if isinstance(outcome, PreferencePair) else result.skipped).append(outcome)
            advance(1)
    return result
