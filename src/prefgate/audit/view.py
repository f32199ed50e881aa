"""`RecordView`: the records as the checks see them, text extracted and normalised once.

Checks take a `RecordView` (or a plain list of records, which they wrap); its properties are computed on
first use and shared by every check, so 100k pairs are normalised once, not once per check.
Text of a message list is its contents joined by blank lines (completions) or `role: content` lines
(prompts); all comparisons are on that text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from prefgate.data.records import PreferencePair, Record, Text, prompt_key


def completion_text(text: Text) -> str:
    if isinstance(text, str):
        return text
    return "\n\n".join(m["content"] for m in text)


def prompt_text(text: Text) -> str:
    if isinstance(text, str):
        return text
    return "\n".join(f"{m['role']}: {m['content']}" for m in text)


def ws_norm(text: str) -> str:
    """Whitespace normalisation: runs of whitespace become one space; ends stripped."""
    return " ".join(text.split())


# Style normalisation (the `style_only` check): what is left after case, markdown markup, punctuation and
# all whitespace are removed. Markdown links keep their text; list markers (`-`, `*`, `+`, `1.`, `1)`) go.
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_ORDERED_MARKER = re.compile(r"(?m)^[ \t]*\d{1,3}[.)][ \t]+")
_NOT_ALNUM = re.compile(r"[\W_]+")  # punctuation, symbols (markdown's *_#`~>| among them) and whitespace


def style_norm(text: str) -> str:
    """Lower-cased letters and digits only, after markdown links keep their text and list numbers go."""
    text = _ORDERED_MARKER.sub("", _LINK.sub(r"\1", text))
    return _NOT_ALNUM.sub("", text.lower())


class RecordView:
    """Lazily computed, shared columns over a list of records (paired or unpaired)."""

    def __init__(self, records: Sequence[Record]):
        self.records = records
        self.paired = bool(records) and isinstance(records[0], PreferencePair)
        self.cache: dict = {}  # for what several checks compute alike (e.g. prompt MinHash signatures)

    def __len__(self) -> int:
        return len(self.records)

    @cached_property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    @cached_property
    def prompt_keys(self) -> list[str]:
        return [prompt_key(r.prompt) for r in self.records]

    @cached_property
    def prompts(self) -> list[str]:
        return [prompt_text(r.prompt) for r in self.records]

    # -- paired ---------------------------------------------------------------------------------------------
    @cached_property
    def chosen(self) -> list[str]:
        return [completion_text(r.chosen) for r in self.records]

    @cached_property
    def rejected(self) -> list[str]:
        return [completion_text(r.rejected) for r in self.records]

    @cached_property
    def chosen_ws(self) -> list[str]:
        return [ws_norm(t) for t in self.chosen]

    @cached_property
    def rejected_ws(self) -> list[str]:
        return [ws_norm(t) for t in self.rejected]

    @cached_property
    def identical(self) -> np.ndarray:
        pairs = zip(self.chosen_ws, self.rejected_ws, strict=True)
        return np.fromiter((c == r for c, r in pairs), bool, len(self))

    @cached_property
    def chosen_len(self) -> np.ndarray:
        """Length in characters of the whitespace-normalised chosen text."""
        return np.fromiter(map(len, self.chosen_ws), np.int64, len(self))

    @cached_property
    def rejected_len(self) -> np.ndarray:
        return np.fromiter(map(len, self.rejected_ws), np.int64, len(self))

    # -- unpaired -------------------------------------------------------------------------------------------
    @cached_property
    def completions_ws(self) -> list[str]:
        return [ws_norm(completion_text(r.completion)) for r in self.records]


def as_view(data: RecordView | Sequence[Record]) -> RecordView:
    if isinstance(data, RecordView):
        return data
    records = getattr(data, "records", data)  # a PreferenceDataset works too
    return RecordView(records)
