"""Eval suites: one JSONL item a line, validated on load, fingerprinted.

An item is `{"id", "category", "prompt": str | messages, "scorer", "answer"?, "choices"?, ...}`; the
fields each scorer needs are checked here (see docs/eval.md), so a bad item stops the run before any
model is loaded, with one line `path:line: field 'x': ...`. Ids must be unique; an item without an id gets
the first 16 hex digits of the sha256 of its canonical form. The suite fingerprint is a sha256 over the
canonical form of the items in order: two reports can be compared only when their fingerprints match.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefgate.data.readers import iter_rows
from prefgate.data.records import Text, canonical_json, check_text
from prefgate.errors import InputError

BUILTIN_SCORERS = ("exact", "numeric", "contains", "regex", "choice", "refusal", "judge")
KNOWN_FIELDS = {"id", "category", "prompt", "scorer", "answer", "choices"}


@dataclass(slots=True)
class SuiteItem:
    """One suite item. `extra` holds every other field (tolerance, expect, rubric, stop, metric, ...)."""

    id: str
    category: str
    prompt: Text
    scorer: str
    answer: Any = None
    choices: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "category": self.category, "prompt": self.prompt,
                               "scorer": self.scorer}
        if self.answer is not None:
            out["answer"] = self.answer
        if self.choices is not None:
            out["choices"] = self.choices
        out.update(self.extra)
        return out

    @property
    def generates(self) -> bool:
        """Whether the model must generate an output for this item (every scorer but `choice`)."""
        return self.scorer != "choice"


@dataclass(slots=True)
class Suite:
    path: str
    items: list[SuiteItem]

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for item in self.items:
            h.update(canonical_json(item.to_dict()).encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.items)


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite; the first bad item raises `InputError` naming its line and field."""
    items: list[SuiteItem] = []
    seen: dict[str, str] = {}
    if not str(path).lower().endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        raise InputError("expected a .jsonl suite (one item a line)", where=str(path))
    for raw in iter_rows(path):
        if raw.error is not None:
            raise raw.error
        item = parse_item(raw.row, where=raw.where)
        if item.id in seen:
            raise InputError(f"duplicate id {item.id!r} (first at {seen[item.id]})", where=raw.where, field="id")
        seen[item.id] = raw.where
        items.append(item)
    if not items:
        raise InputError("the suite has no items", where=str(path))
    return Suite(str(path), items)


def parse_item(row: Any, *, where: str = "") -> SuiteItem:
    """Validate one raw suite row (a dict) and build its item."""
    if not isinstance(row, dict):
        raise InputError("expected a JSON object", where=where)
    for name in ("category", "prompt", "scorer"):
        if name not in row:
            raise InputError("missing", where=where, field=name)
    category = row["category"]
    if not isinstance(category, str) or not category.strip():
        raise InputError("expected a non-empty string", where=where, field="category")
    try:
        prompt = check_text(row["prompt"], "prompt")
    except InputError as err:
        raise InputError(err.message, where=where, field=err.field) from None
    scorer = row["scorer"]
    extra = {k: v for k, v in row.items() if k not in KNOWN_FIELDS}
    item = SuiteItem(id="", category=category, prompt=prompt, scorer=scorer, answer=row.get("answer"),
                     choices=row.get("choices"), extra=extra, where=where)
    try:
        check_scorer_fields(item)
    except InputError as err:
        raise InputError(err.message, where=where, field=err.field) from None
    item.id = _item_id(row, item, where)
    return item


def _item_id(row: dict[str, Any], item: SuiteItem, where: str) -> str:
    rid = row.get("id")
    if rid is None:
        return hashlib.sha256(canonical_json(item.to_dict()).encode("utf-8")).hexdigest()[:16]
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid).strip() == "":
        raise InputError(f"expected a non-empty string or integer, got {rid!r}", where=where, field="id")
    return str(rid)


# ---------------------------------------------------------------------------------------------------------
# What each scorer needs


def check_scorer_fields(item: SuiteItem) -> None:
    """Raise InputError (with a field, no place) when `item` lacks what its scorer needs."""
    stop = item.extra.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
        raise InputError("expected a string or a list of non-empty strings", field="stop")
    scorer = item.scorer
    if not isinstance(scorer, str):
        raise InputError(f"expected a string, got {type(scorer).__name__}", field="scorer")
    if scorer.startswith("python:"):
        resolve_python_scorer(scorer)
        return
    check = _CHECKS.get(scorer)
    if check is None:
        raise InputError(f"unknown scorer {scorer!r}; expected one of {', '.join(BUILTIN_SCORERS)} "
                         "or python:module:function", field="scorer")
    check(item)


def _answers(item: SuiteItem) -> list[str]:
    """The answer as a non-empty list of strings (an answer may be a string, a number or a list)."""
    value = item.answer
    values = value if isinstance(value, list) else [value]
    if value is None or not values:
        raise InputError(f"missing (scorer {item.scorer!r} needs an answer)", field="answer")
    if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
        raise InputError("expected a string, a number, or a list of them", field="answer")
    return [str(v) for v in values]


def _check_text_answer(item: SuiteItem) -> None:
    _answers(item)


def _check_regex(item: SuiteItem) -> None:
    for pattern in _answers(item):
        try:
            re.compile(pattern)
        except re.error as err:
            raise InputError(f"not a valid regular expression: {err}", field="answer") from None


def _check_numeric(item: SuiteItem) -> None:
    for value in _answers(item):
        try:
            float(value.replace(",", ""))
        except ValueError:
            raise InputError(f"expected a number, got {value!r}", field="answer") from None
    tol = item.extra.get("tolerance", 0.0)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or tol < 0:
        raise InputError(f"expected a number >= 0, got {tol!r}", field="tolerance")


def _check_choice(item: SuiteItem) -> None:
    choices = item.choices
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise InputError("expected a list of at least two non-empty strings", field="choices")
    answer = item.answer
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(choices):
            raise InputError(f"index {answer} is out of range for {len(choices)} choices", field="answer")
    elif not isinstance(answer, str) or answer not in choices:
        raise InputError("expected the index of the right choice or its exact text", field="answer")
    if item.extra.get("metric", "acc") not in ("acc", "acc_norm"):
        raise InputError("expected 'acc' or 'acc_norm'", field="metric")


def _check_refusal(item: SuiteItem) -> None:
    if item.extra.get("expect", "refuse") not in ("refuse", "comply"):
        raise InputError(f"expected 'refuse' or 'comply', got {item.extra.get('expect')!r}", field="expect")


def _check_judge(item: SuiteItem) -> None:
    rubric = item.extra.get("rubric")
    if rubric is not None and (not isinstance(rubric, str) or not rubric.strip()):
        raise InputError("expected a non-empty string", field="rubric")
    if item.answer is not None:
        _answers(item)


_CHECKS: dict[str, Callable[[SuiteItem], None]] = {
    "exact": _check_text_answer, "contains": _check_text_answer, "regex": _check_regex,
    "numeric": _check_numeric, "choice": _check_choice, "refusal": _check_refusal, "judge": _check_judge,
}


def resolve_python_scorer(spec: str) -> Callable[..., Any]:
    """The function named by `python:module:function` (imported now, so a typo fails at load time)."""
    parts = spec.split(":")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise InputError(f"expected python:module:function, got {spec!r}", field="scorer")
    _, module_name, func_name = parts
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise InputError(f"cannot import module {module_name!r}: {err}", field="scorer") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise InputError(f"module {module_name!r} has no function {func_name!r}", field="scorer")
    return func
