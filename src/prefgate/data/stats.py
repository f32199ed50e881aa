"""Dataset statistics: counts, and length quantiles in characters and (with a tokenizer) tokens."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from prefgate.data.dataset import PreferenceDataset
from prefgate.data.records import PreferencePair, Record, Text, prompt_key
from prefgate.data.tokenize import PairTokenizer

QUANTILES = (0.5, 0.9, 0.99)


def text_length(text: Text) -> int:
    """Characters of a string, or of all message contents."""
    if isinstance(text, str):
        return len(text)
    return sum(len(m["content"]) for m in text)


def quantiles(values: list[int] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {}
    out = {f"p{round(q * 100)}": float(np.quantile(arr, q)) for q in QUANTILES}
    out.update(min=float(arr.min()), mean=float(arr.mean()), max=float(arr.max()))
    return out


def _sides(rec: Record) -> dict[str, Text]:
    if isinstance(rec, PreferencePair):
        return {"prompt": rec.prompt, "chosen": rec.chosen, "rejected": rec.rejected}
    return {"prompt": rec.prompt, "completion": rec.completion}


def _is_empty(text: Text) -> bool:
    return isinstance(text, str) and not text.strip()


def dataset_stats(ds: PreferenceDataset, *, tokenizer: Any = None, max_length: int | None = None,
                  max_prompt_length: int | None = None) -> dict[str, Any]:
    records = ds.records
    sides = [_sides(r) for r in records]
    names = list(sides[0])
    out: dict[str, Any] = {
        "dataset": ds.describe(),
        "format": ("paired" if ds.paired else "unpaired") + (" conversational" if ds.conversational else ""),
        "n_unique_prompts": len({prompt_key(r.prompt) for r in records}),
        "categories": dict(Counter(r.category for r in records if r.category).most_common()),
        "empty_completions": {n: sum(_is_empty(s[n]) for s in sides) for n in names if n != "prompt"},
        "chars": {n: quantiles([text_length(s[n]) for s in sides]) for n in names},
    }
    if not ds.paired:
        out["n_desirable"] = sum(r.label for r in records)
    if tokenizer is not None:
        out["tokens"] = token_stats(records, tokenizer, max_length=max_length, max_prompt_length=max_prompt_length)
    return out


def token_stats(records: list[Record], tokenizer: Any, *, max_length: int | None,
                max_prompt_length: int | None) -> dict[str, Any]:
    """Token length quantiles before truncation, and what `max_length` would cut."""
    untruncated = PairTokenizer(tokenizer)
    lengths: dict[str, list[int]] = {}
    inexact = 0
    for rec in records:
        for i, (name, text) in enumerate(list(_sides(rec).items())[1:]):
            prompt_ids, completion_ids, exact = untruncated.encode(rec.prompt, text, rec.template_kwargs)
            if i == 0:
                lengths.setdefault("prompt", []).append(len(prompt_ids))
            lengths.setdefault(name, []).append(len(completion_ids))
            lengths.setdefault(f"prompt+{name}", []).append(len(prompt_ids) + len(completion_ids))
            inexact += not exact
    out: dict[str, Any] = {name: quantiles(vals) for name, vals in lengths.items()}
    out["inexact_boundaries"] = inexact
    if max_length is not None and isinstance(records[0], PreferencePair):
        cutter = PairTokenizer(tokenizer, max_length=max_length, max_prompt_length=max_prompt_length)
        pairs = [cutter.pair(r) for r in records]
        out["truncation"] = {
            "max_length": max_length,
            "max_prompt_length": max_prompt_length,
            "prompt": sum(p.prompt_truncated for p in pairs),
            "either_side": sum(p.chosen_truncated or p.rejected_truncated for p in pairs),
            "one_side_only": sum(p.asymmetric_truncation for p in pairs),
        }
    return out
