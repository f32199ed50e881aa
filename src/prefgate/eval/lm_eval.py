"""`prefgate eval import-lm-eval`: lm-evaluation-harness outputs as a prefgate eval report.

Input, as lm-eval (0.4.x) writes it with `--output_path` (and `--log_samples` for the samples):
- `results_<timestamp>.json`: `"results": {task: {"alias", "acc,none", "acc_stderr,none", ...}}` (metric
  keys are `metric,filter`), `"group_subtasks"`, `"configs"`, `"versions"`, `"n-shot"`,
  `"higher_is_better"`, `"n-samples": {task: {"original", "effective"}}`, `"config": {"model", "model_args"}`.
- `samples_<task>_<timestamp>.jsonl`: one line per document (and per filter, for tasks with several):
  `{"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics", "doc_hash",
  "prompt_hash", "target_hash", <metric>: value}`.

Output: one category per leaf task (groups such as `mmlu` are left out; their subtasks are the
categories), scored with one metric per task: `--metric` when given, else the first of `PREFERRED`
present, else the task's first metric whose higher value is better. Tasks whose metric is not in [0, 1]
(perplexities) are skipped and listed under "skipped". With samples, each document is an item
`{"id": "<task>/<doc_id>", "category": task, "score": its metric}` and the category is aggregated from
the items like any eval; without them a category has only the harness's number (the gate needs items).
The suite fingerprint covers each task's name, version, n-shot, number of documents and, with samples,
each document's id and `doc_hash`: the same tasks on two models give the same fingerprint.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefgate.data.records import canonical_json
from prefgate.errors import InputError
from prefgate.eval.grades import DEFAULT_BANDS, GradeBands, grade, summarize
from prefgate.jsonio import loads
from prefgate.reportio import header, read_json

PREFERRED = ("acc", "exact_match", "acc_norm", "pass@1", "f1", "mc2", "em")
SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+)_(?P<stamp>\d{4}-\d{2}-\d{2}T[0-9:.\-]+)\.jsonl$")


def leaf_tasks(results: dict[str, Any]) -> list[str]:
    """Tasks of the results that are not groups of other tasks."""
    groups = {g for g, subtasks in (results.get("group_subtasks") or {}).items() if subtasks}
    groups |= set(results.get("groups") or {})
    return [task for task in results["results"] if task not in groups]


def _metric_keys(task_results: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, filter) of each numeric `metric,filter` entry, stderrs excluded, in file order."""
    out = []
    for key, value in task_results.items():
        name, _, filt = key.partition(",")
        if name.endswith("_stderr") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out.append((name, filt or "none"))
    return out


def pick_metric(task_results: dict[str, Any], higher_is_better: dict[str, Any],
                metric: str | None = None) -> tuple[str, str] | None:
    """The (metric, filter) that scores a task from its results, or None when it has none in [0, 1] with higher
    better."""
    keys = _metric_keys(task_results)
    if metric:
        name, _, filt = metric.partition(",")
        keys = [k for k in keys if k[0] == name and (not filt or k[1] == filt)]
    else:
        better = [k for k in keys if higher_is_better.get(k[0], True)]
        ranked = sorted(better, key=lambda k: PREFERRED.index(k[0]) if k[0] in PREFERRED else len(PREFERRED))
        keys = ranked
    for name, filt in keys:
        value = task_results.get(f"{name},{filt}", task_results.get(name))
        if isinstance(value, (int, float)) and 0.0 <= value <= 1.0:
            return name, filt
    return None


def _score(value: Any, where: str, metric: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0 or math.isnan(value):
        raise InputError(f"expected a number in [0, 1], got {value!r}", where=where, field=metric)
    return float(value)


def read_samples(path: Path, task: str, metric: str, filt: str) -> list[dict[str, Any]]:
    """The items of one samples file, for one metric and filter, in document order."""
    items: dict[str, dict[str, Any]] = {}
    try:
        lines = Path(path).read_bytes().decode("utf-8-sig").split("\n")  # not splitlines: JSON may hold U+2028
    except UnicodeDecodeError as err:
        raise InputError(f"not valid UTF-8 (byte at offset {err.start})", where=str(path)) from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        row = loads(line, where, line=True)
        if not isinstance(row, dict) or "doc_id" not in row:
            raise InputError("expected a sample object with doc_id", where=where)
        if row.get("filter", filt) != filt:
            continue
        if metric not in row:
            raise InputError(f"the sample has no {metric!r} value", where=where, field=metric)
        item_id = f"{task}/{row['doc_id']}"
        if item_id in items:
            raise InputError(f"duplicate doc_id {row['doc_id']!r} for filter {filt!r}", where=where)
        item: dict[str, Any] = {"id": item_id, "category": task, "score": _score(row[metric], where, metric)}
        resps = row.get("filtered_resps")
        if isinstance(resps, list) and resps and isinstance(resps[0], str):
            item["output"] = resps[0]
        item["doc_hash"] = row.get("doc_hash")
        items[item_id] = item
    return list(items.values())


def _samples_by_task(samples: list[str | Path], tasks: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for raw in samples:
        path = Path(raw)
        match = SAMPLES_NAME.match(path.name)
        if not match:
            raise InputError("cannot tell the task from the name; expected samples_<task>_<timestamp>.jsonl",
                             where=str(path))
        task = match.group("task")
        if task not in tasks:
            raise InputError(f"task {task!r} is not among the results' tasks ({', '.join(tasks)})", where=str(path))
        if task in out:
            raise InputError(f"a second samples file for task {task!r} (first: {out[task]})", where=str(path))
        if not path.exists():
            raise InputError("no such file", where=str(path))
        out[task] = path
    return out


def _model_info(results: dict[str, Any]) -> dict[str, Any]:
    config = results.get("config") or {}
    args = config.get("model_args")
    name = results.get("model_name")
    if not name and isinstance(args, str):
        found = re.search(r"pretrained=([^,]+)", args)
        name = found.group(1) if found else args
    elif not name and isinstance(args, dict):
        name = args.get("pretrained")
    return {"path": name, "base": None, "adapter": None, "source": "lm-eval", "lm_eval_model": config.get("model"),
            "model_args": args}


def _category_without_items(value: float, stderr: Any, n: Any, bands: GradeBands) -> dict[str, Any]:
    ci = [None, None]
    if isinstance(stderr, (int, float)) and not isinstance(stderr, bool):  # normal interval, clipped to [0, 1]
        ci = [max(0.0, value - 1.96 * stderr), min(1.0, value + 1.96 * stderr)]
    return {"n": n if isinstance(n, int) else None, "score": value, "grade": grade(value, bands), "a_rate": None,
            "ci": ci}


def _task_n(results: dict[str, Any], task: str) -> int | None:
    n = (results.get("n-samples") or {}).get(task)
    return n.get("effective") if isinstance(n, dict) else None


def import_lm_eval(results_path: str | Path, samples: list[str | Path] | None = None, *, metric: str | None = None,
                   bands: GradeBands = DEFAULT_BANDS, seed: int = 0) -> dict[str, Any]:
    """The eval report for an lm-eval results file and (optionally) its samples files."""
    path = Path(results_path)
    results = read_json(path, what="an lm-eval results file")
    if not isinstance(results, dict) or not isinstance(results.get("results"), dict) or not results["results"]:
        raise InputError("expected an lm-eval results file with a non-empty \"results\" object", where=str(path))
    tasks = leaf_tasks(results)
    sample_files = _samples_by_task(samples or [], tasks)
    out = _Imported()
    categories, items, skipped, warnings, suite_parts = out.categories, out.items, out.skipped, out.warnings, out.parts
    for task in sorted(tasks):
        task_results = results["results"][task]
        picked = pick_metric(task_results, (results.get("higher_is_better") or {}).get(task) or {}, metric)
        if picked is None:
            skipped.append({"task": task, "reason": "no metric in [0, 1] with higher values better"
                            + (f" named {metric!r}" if metric else "")})
            continue
        name, filt = picked
        value = float(task_results.get(f"{name},{filt}", task_results.get(name)))
        part: dict[str, Any] = {"task": task, "version": (results.get("versions") or {}).get(task),
                                "n_shot": (results.get("n-shot") or {}).get(task), "n": _task_n(results, task),
                                "metric": name, "filter": filt}
        if task in sample_files:
            task_items = read_samples(sample_files[task], task, name, filt)
            part["docs"] = [[it["id"], it.pop("doc_hash")] for it in task_items]
            categories[task] = summarize(task_items, bands, seed=seed)
            if abs(categories[task]["score"] - value) > 1e-6:
                warnings.append(f"{task}: the samples' mean {name} ({categories[task]['score']:.6f}) differs from "
                                f"the results file's ({value:.6f})")
            items.extend(task_items)
        else:
            stderr = task_results.get(f"{name}_stderr,{filt}")
            categories[task] = _category_without_items(value, stderr, part["n"], bands)
        suite_parts.append(part)
    if not categories:
        raise InputError("no task has a metric in [0, 1] to import" + (f" named {metric!r}" if metric else ""),
                         where=str(path))
    return _report(path, results, out, bands, seed)


def _overall(categories: dict[str, dict[str, Any]], items: list[dict[str, Any]], bands: GradeBands,
             seed: int) -> dict[str, Any]:
    if sum(c["n"] or 0 for c in categories.values()) == len(items) and items:
        return summarize(items, bands, seed=seed)
    known = [c for c in categories.values() if c["n"]]
    if len(known) == len(categories):
        n = sum(c["n"] for c in known)
        score = sum(c["score"] * c["n"] for c in known) / n
    else:
        n, score = None, sum(c["score"] for c in categories.values()) / len(categories)
    return {"n": n, "score": score, "grade": grade(score, bands), "a_rate": None, "ci": [None, None]}


@dataclass
class _Imported:
    """What the import collects, task by task, for the report."""

    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    parts: list[dict[str, Any]] = field(default_factory=list)  # per task: what the suite fingerprint covers


def _report(path: Path, results: dict[str, Any], imported: _Imported, bands: GradeBands, seed: int) -> dict[str, Any]:
    categories, items, suite_parts = imported.categories, imported.items, imported.parts
    fingerprint = hashlib.sha256(canonical_json(suite_parts).encode("utf-8")).hexdigest()
    tasks = {p["task"]: {k: p[k] for k in ("version", "n_shot", "metric", "filter")} for p in suite_parts}
    return {
        **header("eval", 1, model=_model_info(results),
                 suite={"path": str(path), "fingerprint": fingerprint, "n_items": len(items), "source": "lm-eval",
                        "tasks": tasks}),
        "bands": bands.model_dump(), "seed": seed, "overall": _overall(categories, items, bands, seed),
        "categories": categories, "items": items, "skipped": imported.skipped, "warnings": imported.warnings,
    }
