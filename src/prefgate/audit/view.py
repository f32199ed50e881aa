"""`RecordView`: the records as the checks see them, text extracted and normalised once.

Checks take a `RecordView` (or a plain list of records, which they wrap); its properties are computed on
first use and shared by every check, so 100k pairs are normalised once, not once per check.
Text of a message list is its contents joined by blank lines (completions) or `role: content` lines
(prompts); all comparisons are on that text.

Memory stays a small multiple of the records themselves (issue 17: a 1M-pair audit in under 4 GB). The
view keeps no copy of any text: `chosen`, `rejected` and `prompts` are lazy sequences over the records,
and the whitespace-normalised answers are made one chunk at a time (`ws_chunks`) and reduced to numpy
columns (lengths, `identical`, and a 128-bit BLAKE2b digest per answer that the checks compare instead of
the text). Prompts are numbered by their `prompt_key` (`prompt_ids`), so one int per record stands for
its prompt.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from prefgate.data.records import PreferencePair, Record, Text, prompt_key

CHUNK = 50_000  # records per chunk when normalised text is made and reduced (about 50 MB of str at a time)


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
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text  # already normal: the only whitespace a printable str can hold is " " (any other is not)
    return " ".join(text.split())


def digests(texts: Sequence[str]) -> np.ndarray:
    """(len(texts), 2) uint64: the 128-bit BLAKE2b digest of each text's UTF-8 bytes.

    Equal texts have equal digests; unequal ones collide with probability 2^-128 per pair (about 1e-26 for
    any pair among 2M answers), far below any other error in an audit, so checks compare these instead of
    keeping the texts. (Prompts are already compared by their sha256 `prompt_key`.)
    """
    raw = b"".join(hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts)
    return np.frombuffer(raw, dtype=np.uint64).reshape(len(texts), 2)


# Style normalisation (the `style_only` check): what is left after case, markdown markup, punctuation and
# all whitespace are removed. Markdown links keep their text; list markers (`-`, `*`, `+`, `1.`, `1)`) go.
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_ORDERED_MARKER = re.compile(r"(?m)^[ \t]*\d{1,3}[.)][ \t]+")
_NOT_ALNUM = re.compile(r"[\W_]+")  # punctuation, symbols (markdown's *_#`~>| among them) and whitespace
# The same on ASCII text, as one C-level bytes.translate: lower-case A-Z, delete every byte that is not a
# letter or digit ([\W_] on ASCII is exactly that). Five times faster than the regex; non-ASCII text takes
# the regex (its lower() and \w are Unicode-aware: the Kelvin sign lower-cases to "k").
_ASCII_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
_ASCII_NOT_ALNUM = bytes(c for c in range(128) if not chr(c).isalnum())


def style_norm(text: str) -> str:
    """Lower-cased letters and digits only, after markdown links keep their text and list numbers go."""
    if "](" in text:  # every markdown link has one
        text = _LINK.sub(r"\1", text)
    text = _ORDERED_MARKER.sub("", text)
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_LOWER, _ASCII_NOT_ALNUM).decode("ascii")
    return _NOT_ALNUM.sub("", text.lower())


class LazyTexts(Sequence[str]):
    """`to_text(getattr(record, field))` for each record, made on access and never stored.

    For string fields this is the record's own str object, so iterating costs no memory.
    """

    def __init__(self, records: Sequence[Record], field: str, to_text: Callable[[Any], str]):
        self.records, self.field, self.to_text = records, field, to_text

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.to_text(getattr(r, self.field)) for r in self.records[i]]
        return self.to_text(getattr(self.records[i], self.field))

    def __iter__(self) -> Iterator[str]:
        get, to_text = operator.attrgetter(self.field), self.to_text
        return (to_text(get(r)) for r in self.records)


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
    def prompts(self) -> LazyTexts:
        return LazyTexts(self.records, "prompt", prompt_text)

    @cached_property
    def _prompt_numbering(self) -> tuple[np.ndarray, list[str], np.ndarray]:
        index: dict[str, int] = {}
        ids = np.fromiter((index.setdefault(prompt_key(r.prompt), len(index)) for r in self.records), np.int64,
                          len(self))
        first = np.unique(ids, return_index=True)[1]
        return ids, list(index), first

    @property
    def prompt_ids(self) -> np.ndarray:
        """For each record, the number of its prompt among the distinct prompts (in order of first use)."""
        return self._prompt_numbering[0]

    @property
    def distinct_prompt_keys(self) -> list[str]:
        """The `prompt_key` of each distinct prompt: `distinct_prompt_keys[prompt_ids[i]]` is record i's."""
        return self._prompt_numbering[1]

    @property
    def prompt_first(self) -> np.ndarray:
        """For each distinct prompt, the index of the first record that has it."""
        return self._prompt_numbering[2]

    # -- paired ---------------------------------------------------------------------------------------------
    @cached_property
    def chosen(self) -> LazyTexts:
        return LazyTexts(self.records, "chosen", completion_text)

    @cached_property
    def rejected(self) -> LazyTexts:
        return LazyTexts(self.records, "rejected", completion_text)

    def ws_chunks(self, size: int = CHUNK) -> Iterator[tuple[int, list[str], list[str]]]:
        """(start, chosen, rejected) whitespace-normalised, `size` pairs at a time."""
        for start in range(0, len(self), size):
            chunk = self.records[start:start + size]
            yield (start, [ws_norm(completion_text(r.chosen)) for r in chunk],
                   [ws_norm(completion_text(r.rejected)) for r in chunk])

    @cached_property
    def _pair_columns(self) -> dict[str, np.ndarray]:
        n = len(self)
        cols = {"chosen_len": np.empty(n, np.int64), "rejected_len": np.empty(n, np.int64),
                "identical": np.empty(n, bool), "chosen_digest": np.empty((n, 2), np.uint64),
                "rejected_digest": np.empty((n, 2), np.uint64)}
        for start, chosen, rejected in self.ws_chunks():
            part = slice(start, start + len(chosen))
            cols["chosen_len"][part] = np.fromiter(map(len, chosen), np.int64, len(chosen))
            cols["rejected_len"][part] = np.fromiter(map(len, rejected), np.int64, len(rejected))
            cols["identical"][part] = np.fromiter(map(operator.eq, chosen, rejected), bool, len(chosen))
            cols["chosen_digest"][part] = digests(chosen)
            cols["rejected_digest"][part] = digests(rejected)
        return cols

    @property
    def identical(self) -> np.ndarray:
        """Chosen equals rejected after whitespace normalisation."""
        return self._pair_columns["identical"]

    @property
    def chosen_len(self) -> np.ndarray:
        """Length in characters of the whitespace-normalised chosen text."""
        return self._pair_columns["chosen_len"]

    @property
    def rejected_len(self) -> np.ndarray:
        return self._pair_columns["rejected_len"]

    @property
    def chosen_digest(self) -> np.ndarray:
        """(n, 2) uint64: the digest (`digests`) of the whitespace-normalised chosen text."""
        return self._pair_columns["chosen_digest"]

    @property
    def rejected_digest(self) -> np.ndarray:
        return self._pair_columns["rejected_digest"]

    # -- unpaired -------------------------------------------------------------------------------------------
    @cached_property
    def completion_digest(self) -> np.ndarray:
        """(n, 2) uint64: the digest of each whitespace-normalised completion."""
        out = np.empty((len(self), 2), np.uint64)
        for start in range(0, len(self), CHUNK):
            chunk = self.records[start:start + CHUNK]
            out[start:start + len(chunk)] = digests([ws_norm(completion_text(r.completion)) for r in chunk])
        return out


# -- records as rows of uint64, for exact matching in numpy ----------------------------------------------------


def pair_keys(view: RecordView, *, swap: bool = False) -> np.ndarray:
    """(n, 5) uint64: (prompt number, chosen digest, rejected digest); with `swap`, the answers swapped."""
    first, second = (view.rejected_digest, view.chosen_digest) if swap else (view.chosen_digest, view.rejected_digest)
    return np.column_stack([view.prompt_ids.astype(np.uint64), first, second])


def key_present(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each row of `queries`, whether an equal row is among `keys` (both 2-D, same width)."""
    inverse = np.unique(np.concatenate([keys, queries]), axis=0, return_inverse=True)[1].ravel()
    present = np.zeros(int(inverse.max(initial=-1)) + 1, dtype=bool)
    present[inverse[:len(keys)]] = True
    return present[inverse[len(keys):]]


def repeats_earlier(keys: np.ndarray) -> np.ndarray:
    """For each row of `keys`, whether an equal row comes before it."""
    if not len(keys):
        return np.zeros(0, dtype=bool)
    first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)[1:]
    return first[inverse.ravel()] != np.arange(len(keys))


def as_view(data: RecordView | Sequence[Record]) -> RecordView:
    if isinstance(data, RecordView):
        return data
    records = getattr(data, "records", data)  # a PreferenceDataset works too
    return RecordView(records)
