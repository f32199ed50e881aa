"""Preference pairs with deliberately wrong answers (`construct`) or sampled and graded (`sample`).

>>> from prefgate.pairs import read_gold, construct
>>> pairs = construct(read_gold("gold.jsonl"), ["numeric", "choice", "negation"], seed=0)  # doctest: +SKIP
>>> pairs[0].rejection_type, pairs[0].meta["detail"]                                       # doctest: +SKIP

The model-facing parts are imported from their modules: `prefgate.pairs.editor` (HttpEditor, LocalEditor)
and `prefgate.pairs.sample` (sample_pairs, make_grader). docs/pairs.md describes every strategy.
"""

from prefgate.pairs.construct import (
    DEFAULT_STRATEGIES,
    STRATEGY_NAMES,
    Construction,
    Skipped,
    build_pairs,
    construct,
    item_rng,
    resolve_strategies,
    skipped_path,
)
from prefgate.pairs.entities import BUILTIN_ENTITIES, EntityPool
from prefgate.pairs.gold import GoldItem, parse_gold, read_gold
from prefgate.pairs.strategies import (
    NEGATION_RULES,
    Skip,
    choice,
    drop_step,
    entity_swap,
    negation,
    numeric,
)

__all__ = [
    "BUILTIN_ENTITIES", "DEFAULT_STRATEGIES", "NEGATION_RULES", "STRATEGY_NAMES", "Construction", "EntityPool",
    "GoldItem", "Skip", "Skipped", "build_pairs", "choice", "construct", "drop_step", "entity_swap", "item_rng",
    "negation", "numeric", "parse_gold", "read_gold", "resolve_strategies", "skipped_path",
]
