"""Checks that compare prompts across records: `duplicates` (within the data) and `leakage` (train vs eval).

Near-duplicate prompts are found with MinHash LSH (datasketch) and then confirmed by their exact Jaccard
similarity, so the LSH only proposes candidates and never decides. Choices, for speed on 100k prompts:
- a prompt is the set of its lower-cased word n-grams (`minhash.shingle_words`, default 2: word pairs;
  a one-word prompt is its word), so case and punctuation never make two prompts differ;
- each distinct prompt is hashed once (`zlib.crc32` per shingle, fast and stable across runs; datasketch
  mixes it before permuting), with `minhash.num_perm` = 64 permutations (`MinHash.bulk`);
- the LSH threshold is a little below the Jaccard threshold, so that few true pairs are missed.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prefgate.audit.policy import AuditPolicy, MinHashPolicy
from prefgate.audit.result import CheckResult, grade, pct, pick, share, skip
from prefgate.audit.view import RecordView, as_view, prompt_text
from prefgate.data.records import Record, check_text, content_id, parse_row, prompt_key
from prefgate.errors import InputError

DEFAULT_POLICY = AuditPolicy()
_WORD = re.compile(r"\w+")
LSH_SLACK = 0.1  # the LSH threshold is the Jaccard threshold minus this


def shingles(text: str, n: int) -> frozenset[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return frozenset([" ".join(words).encode()])
    return frozenset(" ".join(words[i:i + n]).encode() for i in range(len(words) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if (a or b) else 1.0


class NearIndex:
    """MinHash LSH over shingle sets; `near_all` confirms each candidate by its exact Jaccard similarity."""

    def __init__(self, threshold: float, params: MinHashPolicy):
        from datasketch import MinHashLSH

        self.threshold = threshold
        self.params = params
        self.lsh = MinHashLSH(threshold=max(0.05, threshold - LSH_SLACK), num_perm=params.num_perm)
        self.sets: dict[Any, frozenset] = {}

    def signatures(self, sets: Sequence[frozenset]) -> list:
        from datasketch import MinHash

        return MinHash.bulk(sets, num_perm=self.params.num_perm, hashfunc=zlib.crc32)

    def add_all(self, keys: Sequence[Any], sets: Sequence[frozenset], sigs: Sequence | None = None) -> None:
        sigs = self.signatures(sets) if sigs is None else sigs
        with self.lsh.insertion_session() as session:
            for key, sig in zip(keys, sigs, strict=True):
                session.insert(key, sig, check_duplication=False)
        self.sets.update(zip(keys, sets, strict=True))

    def near_all(self, sets: Sequence[frozenset], sigs: Sequence | None = None) -> list[list[Any]]:
        """For each set, the indexed keys it is near (exact Jaccard >= threshold)."""
        sigs = self.signatures(sets) if sigs is None else sigs
        return [[k for k in self.lsh.query(sig) if jaccard(s, self.sets[k]) >= self.threshold]
                for s, sig in zip(sets, sigs, strict=True)]


def distinct_prompts(view: RecordView, params: MinHashPolicy) -> tuple[np.ndarray, list[frozenset], list]:
    """(index of each record's prompt among the distinct prompts, their shingle sets, their MinHashes).

    Computed once per view and shared by `duplicates` and `leakage`.
    """
    cache_key = ("distinct_prompts", params.shingle_words, params.num_perm)
    if cache_key not in view.cache:
        index: dict[str, int] = {}
        where = np.fromiter((index.setdefault(k, len(index)) for k in view.prompt_keys), np.int64, len(view))
        first = np.unique(where, return_index=True)[1]  # the first record of each distinct prompt
        sets = [shingles(view.prompts[i], params.shingle_words) for i in first]
        sigs = NearIndex(1.0, params).signatures(sets)
        view.cache[cache_key] = (where, sets, sigs)
    return view.cache[cache_key]


def near_duplicate_prompts(view: RecordView, threshold: float, params: MinHashPolicy) -> np.ndarray:
    """For each record: does another, different prompt have Jaccard >= threshold with its prompt?"""
    where, sets, sigs = distinct_prompts(view, params)
    index = NearIndex(threshold, params)
    index.add_all(range(len(sets)), sets, sigs)
    has_near = np.fromiter((any(k != j for k in near) for j, near in enumerate(index.near_all(sets, sigs))),
                           bool, len(sets))
    return has_near[where]


def _exact_duplicates(view: RecordView) -> np.ndarray:
    """True for every record that repeats an earlier one (same prompt and, up to whitespace, same answers)."""
    if view.paired:
        keys = zip(view.prompt_keys, view.chosen_ws, view.rejected_ws, strict=True)
    else:
        keys = zip(view.prompt_keys, view.completions_ws, (r.label for r in view.records), strict=True)
    seen: set = set()
    out = np.zeros(len(view), dtype=bool)
    for i, key in enumerate(keys):
        out[i] = key in seen
        seen.add(key)
    return out


def check_duplicates(data: RecordView | Sequence[Record],
                     policy: AuditPolicy = DEFAULT_POLICY) -> CheckResult:
    """Exact duplicate records, and records whose prompt nearly (not exactly) repeats another prompt."""
    p = policy.duplicates
    threshold = {"warn_above": p.warn_above, "near_jaccard": p.near_jaccard}
    view = as_view(data)
    exact = _exact_duplicates(view)
    near = near_duplicate_prompts(view, p.near_jaccard, policy.minhash)
    exact_share, near_share = share(int(exact.sum()), len(view)), share(int(near.sum()), len(view))
    value = max(exact_share, near_share)
    status = grade(value, warn_above=p.warn_above)
    where = distinct_prompts(view, policy.minhash)[0]
    details = {"exact_share": exact_share, "n_exact": int(exact.sum()), "near_prompt_share": near_share,
               "n_near_prompt": int(near.sum()), "n_prompts": int(where.max()) + 1 if len(view) else 0,
               "shared_prompt_share": share(int((np.bincount(where)[where] > 1).sum()), len(view))}
    message = (f"{details['n_exact']} records ({pct(exact_share)}) repeat another exactly and "
               f"{details['n_near_prompt']} ({pct(near_share)}) have a near-duplicate prompt "
               f"(Jaccard >= {p.near_jaccard:g})")
    message += ("; duplicates weigh some examples several times and make held-out splits leak."
                if status == "warn" else ".")
    return CheckResult("duplicates", status, value, threshold, message, pick(view.ids, exact | near), details)


# ---------------------------------------------------------------------------------------------------------
# Leakage: the eval data's prompts, from any file whose rows have a prompt.


@dataclass
class PromptSet:
    """The prompts of an eval set: any dataset, or rows that carry at least a `prompt` (an eval suite)."""

    source: str
    ids: list[str]
    prompts: list[Any]
    keys: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = [prompt_key(p) for p in self.prompts]

    def describe(self) -> dict[str, Any]:
        return {"path": self.source, "n_prompts": len(self.prompts), "n_distinct": len(set(self.keys))}


def prompt_set(data: Any) -> PromptSet:
    """A PromptSet from a PromptSet, a PreferenceDataset or a list of records."""
    if isinstance(data, PromptSet):
        return data
    records = getattr(data, "records", data)
    source = str(getattr(data, "source", "<records>"))
    return PromptSet(source, [r.id for r in records], [r.prompt for r in records])


def read_prompts(source: str | Path) -> PromptSet:
    """Read an eval file: preference records, or rows with a `prompt` (str or messages) and maybe an `id`."""
    from prefgate.data.readers import iter_rows

    ids, prompts = [], []
    for raw in iter_rows(source):
        if raw.error is not None:
            raise raw.error
        try:
            rec = parse_row(raw.row, where=raw.where)
            rid, prompt = rec.id, rec.prompt
        except InputError:
            if not isinstance(raw.row, dict) or "prompt" not in raw.row:
                raise
            prompt = check_text(raw.row["prompt"], "prompt")
            rid = str(raw.row.get("id") or content_id(prompt))
        ids.append(rid)
        prompts.append(prompt)
    if not prompts:
        raise InputError("no prompts (empty)", where=str(source))
    return PromptSet(str(source), ids, prompts)


def check_leakage(data: RecordView | Sequence[Record], policy: AuditPolicy = DEFAULT_POLICY, *,
                  eval_prompts: Any = None) -> CheckResult:
    """Training records whose prompt is in the eval data, exactly or nearly (Jaccard >= near_jaccard)."""
    p = policy.leakage
    threshold = {"fail_above": p.fail_above, "warn_near_above": p.warn_near_above,
                 "near_jaccard": p.near_jaccard}
    if eval_prompts is None:
        return skip("leakage", "needs --eval to compare training prompts with the eval prompts.", threshold)
    view, evals = as_view(data), prompt_set(eval_prompts)
    eval_keys = set(evals.keys)
    exact = np.fromiter((k in eval_keys for k in view.prompt_keys), bool, len(view))
    index = NearIndex(p.near_jaccard, policy.minhash)
    index.add_all(range(len(evals.prompts)),
                  [shingles(prompt_text(q), policy.minhash.shingle_words) for q in evals.prompts])
    where, sets, sigs = distinct_prompts(view, policy.minhash)
    near_distinct = index.near_all(sets, sigs)
    near_lists = [near_distinct[w] for w in where]
    near = np.fromiter((bool(lst) for lst in near_lists), bool, len(view)) & ~exact
    exact_share, near_share = share(int(exact.sum()), len(view)), share(int(near.sum()), len(view))
    status = "fail" if exact_share > p.fail_above else grade(near_share, warn_above=p.warn_near_above)
    leaked_keys = {k for k, hit in zip(view.prompt_keys, exact, strict=True) if hit}
    leaked_eval = {j for j, k in enumerate(evals.keys) if k in leaked_keys}
    leaked_eval |= {j for lst, hit in zip(near_lists, near, strict=True) if hit for j in lst}
    details = {"eval": evals.describe(), "n_exact": int(exact.sum()), "n_near": int(near.sum()),
               "near_share": near_share, "eval_leaked_share": share(len(leaked_eval), len(evals.prompts)),
               "eval_examples": [evals.ids[j] for j in sorted(leaked_eval)[:5]]}
    message = (f"{details['n_exact']} training records ({pct(exact_share)}) share their prompt exactly with "
               f"the eval data and {details['n_near']} more nearly; {pct(details['eval_leaked_share'])} of "
               "eval prompts are affected")
    message += ("; scores on those eval items measure memory, not generalisation: remove them from training."
                if status != "pass" else ".")
    return CheckResult("leakage", status, exact_share, threshold, message, pick(view.ids, exact | near),
                       details)
