"""The three preference sets of the story, each built with prefgate's own `pairs` package.

- v6 (the postmortem's way): the SFT model samples 4 answers per prompt (`pairs.sample`) and the biased
  grader `looks_bigger` picks chosen and rejected: low contrast (answers a digit apart), and the one that
  looks bigger wins whether or not it is right. A prompt gives a pair only when its samples differ, which
  for a confident SFT model is rare, so v6 samples on the whole preference pool.
- v7: a constructed wrong answer with high contrast (`pairs.construct`, strategy `far_wrong`): a number that
  shares no character position with the right one ("46" against "713").
- v8, in the DPOP paper's style: the right answer against the same answer with one digit changed
  (`pairs.construct`, strategy `one_digit`): "46" against "49".

v7 and v8 use the same prompts, from the preference pool (never an SFT, dev or test prompt), so they differ
only in how the pairs were made. Every set is a JSONL file of preference records with `category`,
`rejection_type` and `meta`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from prefgate.demo.graders import V6_GRADER
from prefgate.demo.task import CATEGORIES, Problem, Split

SETS = ("v6", "v7", "v8")
DESCRIPTIONS = {
    "v6": "sampled by the SFT model (4 per prompt), graded by an auto-grader biased to bigger-looking answers",
    "v7": "constructed: a far wrong answer (no character in the same place)",
    "v8": "constructed: the same answer with one digit changed (DPOP-style low edit)",
}


@dataclass
class PairSet:
    name: str
    path: Path
    n_pairs: int
    skipped: int
    description: str


def pick_prompts(split: Split, per_category: int, seed: int) -> list[Problem]:
    """`per_category` prompts of each category from the preference pool (seeded; never an SFT prompt)."""
    rng = random.Random(seed + 17)
    return [p for cat in CATEGORIES for p in rng.sample(split.pref[cat], per_category)]


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- construction strategies (prefgate.pairs strategy signature: (item, rng) -> [(rejected, detail)]) -------


def one_digit(item, rng: random.Random) -> list[tuple[str, dict]]:
    """The answer with one digit replaced by another (no new leading zero)."""
    answer = item.answer
    i = rng.randrange(len(answer))
    digits = [d for d in "0123456789" if d != answer[i] and not (i == 0 and d == "0" and len(answer) > 1)]
    new = rng.choice(digits)
    return [(answer[:i] + new + answer[i + 1:], {"position": i, "original": answer[i], "replacement": new})]


def far_wrong(item, rng: random.Random) -> list[tuple[str, dict]]:
    """A wrong number in 0..999 sharing no character position with the answer (normalised edit distance 1)."""
    from rapidfuzz.distance import Levenshtein

    while True:
        text = str(rng.randrange(1000))
        if Levenshtein.normalized_distance(text, item.answer) == 1.0:
            return [(text, {"original": item.answer})]


# -- building the sets ------------------------------------------------------------------------------------


def construct_set(name: str, strategy, gold_path: Path, out: Path, seed: int) -> PairSet:
    from prefgate.data import write_records
    from prefgate.pairs import build_pairs, read_gold

    result = build_pairs(read_gold(gold_path), [(strategy.__name__, strategy)], seed=seed)
    write_records(result.pairs, out)
    return PairSet(name, out, len(result.pairs), len(result.skipped), DESCRIPTIONS[name])


def sample_set(model_dir: Path, prompts_path: Path, out: Path, seed: int, k: int = 4) -> PairSet:
    from prefgate.data import write_records
    from prefgate.pairs.sample import SampleOptions, make_grader, read_prompts, sample_pairs

    grader = make_grader(V6_GRADER)
    options = SampleOptions(k=k, temperature=1.0, max_new_tokens=6, batch_size=64, min_gap=0.0, seed=seed,
                            dtype="float32", device="cpu", progress=False)
    result = sample_pairs(str(model_dir), read_prompts(prompts_path, grader.scorer), grader, options)
    write_records(result.pairs, out)
    return PairSet("v6", out, len(result.pairs), len(result.skipped), DESCRIPTIONS["v6"])


def gold_rows(problems: list[Problem]) -> list[dict]:
    return [{"id": p.id, "prompt": p.prompt, "answer": p.answer, "category": p.category} for p in problems]


def build_sets(problems: list[Problem], pool: list[Problem], sft_model: Path, folder: Path,
               seed: int) -> dict[str, PairSet]:
    """Write gold.jsonl (`problems`, for v7 and v8) and prompts.jsonl (the whole `pool`, for v6), then the
    three sets; returns them by name."""
    gold = write_jsonl(gold_rows(problems), folder / "gold.jsonl")
    prompts = write_jsonl(gold_rows(pool), folder / "prompts.jsonl")
    return {
        "v6": sample_set(sft_model, prompts, folder / "v6.jsonl", seed),
        "v7": construct_set("v7", far_wrong, gold, folder / "v7.jsonl", seed),
        "v8": construct_set("v8", one_digit, gold, folder / "v8.jsonl", seed),
    }


def repeat_v8(problems: list[Problem], folder: Path, seed: int, k: int) -> PairSet:
    """The v8 set again on another seed's prompts and digits (for the seed repeats), as `v8-s<k>`."""
    gold = write_jsonl(gold_rows(problems), folder / f"gold-s{k}.jsonl")
    pair_set = construct_set("v8", one_digit, gold, folder / f"v8-s{k}.jsonl", seed)
    pair_set.name = f"v8-s{k}"
    return pair_set
