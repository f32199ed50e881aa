"""Gold items: a prompt and its right answer (and, for multiple choice, the options), read from JSONL.

One object a line: `{"id"?, "prompt", "answer", "choices"?, "category"?}`.
- `prompt`: a string or a list of messages (as in preference records).
- `answer`: a non-empty string or a number; with `choices`, the index of the right option or its exact text.
- `choices`: a list of at least two distinct non-empty strings.
- `id`: a string or integer, unique; without one, the first 16 hex digits of the sha256 of the item's content.
Every prompt of a file has one shape (all strings, or all message lists), since the pairs form one dataset.
Other fields are kept in `extra`. A bad line stops the read with one line: `path:line: field 'answer': ...`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefgate.data.readers import iter_rows
from prefgate.data.records import Text, check_text, content_id
from prefgate.errors import InputError

KNOWN_FIELDS = {"id", "prompt", "answer", "choices", "category"}
GOLD_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".json.gz")


@dataclass(slots=True)
class GoldItem:
    """A prompt with its right answer. For multiple choice, `answer` is the right option's text."""

    id: str
    prompt: Text
    answer: str
    choices: list[str] | None = None
    answer_index: int | None = None
    category: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    @property
    def prompt_text(self) -> str:
        """The prompt as plain text (message contents joined by newlines)."""
        if isinstance(self.prompt, str):
            return self.prompt
        return "\n".join(m["content"] for m in self.prompt)


def read_gold(path: str | Path) -> list[GoldItem]:
    """Read and validate a gold file; the first bad line raises InputError naming `path:line` and the field."""
    if not str(path).lower().endswith(GOLD_SUFFIXES):
        raise InputError("expected a .jsonl gold file (one item a line)", where=str(path))
    items: list[GoldItem] = []
    seen: dict[str, str] = {}
    for raw in iter_rows(path):
        if raw.error is not None:
            raise raw.error
        item = parse_gold(raw.row, where=raw.where)
        if items and isinstance(item.prompt, str) != isinstance(items[0].prompt, str):
            shapes = ("a string", "a list of messages")
            raise InputError(f"expected {shapes[isinstance(items[0].prompt, list)]} like the first item's "
                             f"({items[0].where}); one gold file holds one prompt shape, as a dataset holds one "
                             "format", where=raw.where, field="prompt")
        if item.id in seen:
            raise InputError(f"duplicate id {item.id!r} (first at {seen[item.id]})", where=raw.where, field="id")
        seen[item.id] = raw.where
        items.append(item)
    if not items:
        raise InputError("no gold items (empty file)", where=str(path))
    return items


def parse_gold(row: Any, *, where: str = "") -> GoldItem:
    """One raw row as a GoldItem, or InputError with `where` and the field."""
    try:
        item = _parse(row)
    except InputError as err:
        raise InputError(err.message, where=where or None, field=err.field) from None
    item.where = where
    return item


def _parse(row: Any) -> GoldItem:
    if not isinstance(row, dict):
        raise InputError("expected a JSON object with prompt and answer")
    for name in ("prompt", "answer"):
        if name not in row:
            raise InputError("missing (a gold item needs prompt and answer)", field=name)
    prompt = check_text(row["prompt"], "prompt")
    choices = _choices(row.get("choices"))
    answer, index = _answer(row["answer"], choices)
    category = row.get("category")
    if category is not None and (not isinstance(category, str) or not category.strip()):
        raise InputError("expected a non-empty string", field="category")
    rid = _id(row.get("id"), prompt, answer, choices)
    extra = {k: v for k, v in row.items() if k not in KNOWN_FIELDS}
    return GoldItem(rid, prompt, answer, choices, index, category, extra)


def _choices(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(c, str) and c.strip() for c in value):
        raise InputError("expected a list of at least two non-empty strings", field="choices")
    if len(set(value)) != len(value):
        raise InputError("two options are the same text", field="choices")
    return list(value)


def _answer(value: Any, choices: list[str] | None) -> tuple[str, int | None]:
    if choices is not None:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(choices):
                raise InputError(f"index {value} is out of range for {len(choices)} choices", field="answer")
            return choices[value], value
        if isinstance(value, str) and value in choices:
            return value, choices.index(value)
        raise InputError("expected the index of the right choice or its exact text", field="answer")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(f"expected a string or a number, got {type(value).__name__}", field="answer")
    text = str(value)
    if not text.strip():
        raise InputError("is empty", field="answer")
    return text, None


def _id(value: Any, prompt: Text, answer: str, choices: list[str] | None) -> str:
    if value is None:
        return content_id(prompt, answer, *(choices or []))
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise InputError(f"expected a non-empty string or integer, got {value!r}", field="id")
    return str(value)
