"""Build preference pairs from gold items: chosen = the gold answer, rejected = a deliberately wrong one.

`construct(items, strategies, seed)` runs every strategy on every item and returns the pairs;
`build_pairs` (same arguments) also returns what was skipped and why. Each pair carries
`rejection_type` (the strategy's name), the item's `category`, `meta = {"source_id": gold id, "detail": what
the strategy changed}` and an id derived from its content (`content_id(prompt, chosen, rejected)`).

Determinism: each (strategy, item) gets its own `random.Random`, seeded from sha256(seed, strategy name,
item id), so the same seed and items give the same pairs whatever the order of the strategies, and adding
an item or a strategy changes no other pair.

Nothing is dropped silently: an item a strategy cannot corrupt, a rejected answer equal to the chosen one,
and a pair that another strategy already produced are each a `Skipped` row with the reason.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from prefgate.data.records import PreferencePair, Text, content_id
from prefgate.errors import InputError
from prefgate.pairs.entities import EntityPool
from prefgate.pairs.gold import GoldItem
from prefgate.pairs.strategies import BUILTIN, NUMERIC_TARGETS, Skip, Strategy, entity_swap, numeric_for

STRATEGY_NAMES = (*BUILTIN, "editor")
DEFAULT_STRATEGIES = tuple(BUILTIN)  # every strategy that needs no model


@dataclass(frozen=True, slots=True)
class Skipped:
    id: str  # the gold item's id
    strategy: str
    reason: str
    where: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "strategy": self.strategy, "reason": self.reason, "where": self.where}


@dataclass
class Construction:
    pairs: list[PreferencePair] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def summary(self, strategies: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Per strategy: pairs made, items skipped, and the skip reasons with their counts."""
        made = Counter(p.rejection_type for p in self.pairs)
        out = {}
        for name in strategies:
            reasons = Counter(s.reason for s in self.skipped if s.strategy == name)
            out[name] = {"pairs": made.get(name, 0), "skipped": sum(reasons.values()),
                         "reasons": dict(reasons.most_common())}
        return out


def item_rng(seed: int, strategy: str, item_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\0{strategy}\0{item_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def as_answer(prompt: Text, text: str) -> Text:
    """An answer shaped like the prompt: a string, or one assistant message for a message-list prompt."""
    return text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]


def resolve_strategies(names: Sequence[str], items: Sequence[GoldItem], *, numeric_target: str = "any",
                       entities: Mapping[str, Sequence[str]] | None = None,
                       editor: Strategy | None = None) -> list[tuple[str, Strategy]]:
    """Strategy names as (name, callable): `numeric` with its target, `entity_swap` with the pool of the
    items' entities (plus `entities`), `editor` with the given editor."""
    if numeric_target not in NUMERIC_TARGETS:
        raise InputError(f"expected one of {', '.join(NUMERIC_TARGETS)}, got {numeric_target!r}",
                         field="numeric_target")
    out: list[tuple[str, Strategy]] = []
    for name in dict.fromkeys(names):
        if name not in STRATEGY_NAMES:
            raise InputError(f"unknown strategy {name!r}; expected some of {', '.join(STRATEGY_NAMES)}",
                             field="strategies")
        if name == "numeric":
            out.append((name, numeric_for(numeric_target)))
        elif name == "entity_swap":
            texts = [t for it in items for t in (it.prompt_text, it.answer, *(it.choices or []))]
            out.append((name, partial(entity_swap, pool=EntityPool.from_texts(texts, entities))))
        elif name == "editor":
            if editor is None:
                raise InputError("the editor strategy needs an editor model (--editor-url and --editor-model, "
                                 "or --editor-local)", field="strategies")
            out.append((name, editor))
        else:
            out.append((name, BUILTIN[name]))
    if not out:
        raise InputError("no strategies given", field="strategies")
    return out


def build_pairs(items: Sequence[GoldItem], strategies: Sequence[str | tuple[str, Strategy]], seed: int = 0, *,
                progress: Callable[[int], None] | None = None) -> Construction:
    """Every strategy on every item: the pairs and the skipped (see the module docstring).

    `strategies`: names of built-in strategies, or (name, strategy) pairs (see `resolve_strategies`).
    A strategy object with a `prepare(items)` method (the local editor) gets all items first, to batch.
    `progress(n)` is called after each item with the number of items done.
    """
    named = [s if isinstance(s, tuple) else resolve_strategies([s], items)[0] for s in strategies]
    for _, strategy in named:
        if hasattr(strategy, "prepare"):
            strategy.prepare(items)
    result = Construction()
    seen: dict[str, str] = {}  # pair id -> the strategy that made it
    for done, item in enumerate(items, start=1):
        for name, strategy in named:
            _apply(item, name, strategy, seed, result, seen)
        if progress is not None:
            progress(done)
    return result


def _apply(item: GoldItem, name: str, strategy: Strategy, seed: int, result: Construction,
           seen: dict[str, str]) -> None:
    try:
        rejections = strategy(item, item_rng(seed, name, item.id))
    except Skip as why:
        result.skipped.append(Skipped(item.id, name, str(why), item.where))
        return
    if not rejections:
        result.skipped.append(Skipped(item.id, name, "the strategy made no change", item.where))
    chosen = as_answer(item.prompt, item.answer)
    for text, detail in rejections:
        rejected = as_answer(item.prompt, text)
        if " ".join(text.split()) == " ".join(item.answer.split()):
            result.skipped.append(Skipped(item.id, name, "the rejected answer equals the chosen one", item.where))
            continue
        pid = content_id(item.prompt, chosen, rejected)
        if pid in seen:
            result.skipped.append(Skipped(item.id, name, f"same pair as strategy {seen[pid]!r} made", item.where))
            continue
        seen[pid] = name
        result.pairs.append(PreferencePair(id=pid, prompt=item.prompt, chosen=chosen, rejected=rejected,
                                           category=item.category, rejection_type=name,
                                           meta={"source_id": item.id, "detail": detail}))


def construct(items: Sequence[GoldItem], strategies: Sequence[str | tuple[str, Strategy]],
              seed: int = 0) -> list[PreferencePair]:
    """The pairs of `build_pairs` (skips dropped; use `build_pairs` to see them)."""
    return build_pairs(items, strategies, seed).pairs


def skipped_path(output: str | Path) -> Path:
    """The sidecar for skipped items, next to the output: `pairs.jsonl` -> `pairs.skipped.jsonl`."""
    output = Path(output)
    name = output.name
    for ext in (".gz", ".jsonl", ".parquet"):
        name = name.removesuffix(ext)
    return output.with_name(f"{name or 'pairs'}.skipped.jsonl")


def write_skipped(rows: Sequence[Any], path: str | Path) -> Path:
    """Write skipped rows (objects with `to_dict`) as JSONL; an empty list still writes an empty file, so a
    stale sidecar from an earlier run never survives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
    return path
