"""Split by prompt hash: every record with a given prompt lands on the same side.

A prompt goes to eval when sha256(seed, prompt) maps below `eval_fraction` in [0, 1). The assignment of a
prompt depends only on the prompt and the seed, never on the rest of the data: adding training data
does not move a single eval prompt. The realised fraction is close to `eval_fraction` for many distinct
prompts and is reported by the CLI.
"""

from __future__ import annotations

import hashlib

from prefgate.data.records import Record, canonical_json
from prefgate.errors import InputError


def eval_side(prompt_text: str, *, eval_fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}\x00{prompt_text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction


def split_by_prompt(records: list[Record], *, eval_fraction: float = 0.1, seed: int = 0
                    ) -> tuple[list[Record], list[Record]]:
    """(train, eval), each in the input order; no prompt appears on both sides."""
    if not 0.0 <= eval_fraction <= 1.0:
        raise InputError(f"must be in [0, 1], got {eval_fraction}", field="eval_fraction")
    train: list[Record] = []
    held_out: list[Record] = []
    memo: dict[str, bool] = {}
    for rec in records:
        key = canonical_json(rec.prompt)
        side = memo.get(key)
        if side is None:
            side = memo[key] = eval_side(key, eval_fraction=eval_fraction, seed=seed)
        (held_out if side else train).append(rec)
    return train, held_out
