"""Checks that compare prompts across records: `duplicates` (within the data) and `leakage` (train vs eval).

Near-duplicate prompts are found with MinHash LSH and then confirmed by their exact Jaccard similarity, so
the LSH only proposes candidates and never decides. Choices, for speed and memory on 1M records:
- a prompt is the set of its lower-cased word n-grams (`minhash.shingle_words`, default 2: word pairs;
  a one-word prompt is its word), so case and punctuation never make two prompts differ;
- each distinct prompt is hashed once into a datasketch `MinHash` (`zlib.crc32` per shingle, fast and
  stable across runs; datasketch mixes it before permuting) with `minhash.num_perm` = 64 permutations, and
  only its signature is kept: one row of a (distinct prompts, num_perm) array, shared by both checks;
- the LSH threshold is a little below the Jaccard threshold, so that few true pairs are missed; datasketch's
  `MinHashLSH` chooses the bands (b x r) for it, and two prompts are candidates when their signatures agree
  on a whole band, exactly as in `MinHashLSH.query`. The bands are matched by sorting the signature array
  (`band_groups`) rather than in MinHashLSH's dict of buckets, which holds a Python bytes object per prompt
  and band (1.6 GB for 530k prompts);
- shingle sets are made again for the candidates only (`functools.lru_cache`), not kept for every prompt.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prefgate.audit.policy import AuditPolicy, MinHashPolicy
from prefgate.audit.result import MAX_EXAMPLES, CheckResult, grade, pct, pick, share, skip
from prefgate.audit.view import RecordView, as_view, pair_keys, prompt_text, repeats_earlier
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


def signatures(sets: Iterable[frozenset], n: int, params: MinHashPolicy) -> np.ndarray:
    """(n, num_perm): the datasketch MinHash signature of each of the `n` shingle sets, made one at a time.

    One MinHash is cleared and refilled for each set (what `MinHash.bulk` gives, a quarter faster than its
    copy per set), and only its hash values are kept.
    """
    from datasketch import MinHash

    minhash = MinHash(num_perm=params.num_perm, hashfunc=zlib.crc32)
    out = np.empty((n, params.num_perm), dtype=minhash.hashvalues.dtype)
    for i, shingle_set in enumerate(sets):
        minhash.clear()
        minhash.update_batch(shingle_set)
        out[i] = minhash.hashvalues
    return out


def lsh_bands(threshold: float, params: MinHashPolicy) -> list[tuple[int, int]]:
    """The signature slices (start, end) that datasketch's MinHashLSH bands by at this Jaccard threshold."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=max(0.05, threshold - LSH_SLACK), num_perm=params.num_perm)
    return list(lsh.hashranges)


def band_groups(sigs: np.ndarray, bands: Sequence[tuple[int, int]]) -> Iterator[list[int]]:
    """Every set of two or more rows of `sigs` equal on a whole band (the candidates MinHashLSH proposes).

    Each band's slice is viewed as one opaque value per row and sorted, so equal slices are neighbours.
    """
    for start, end in bands:
        block = np.ascontiguousarray(sigs[:, start:end])
        keys = block.view(np.dtype((np.void, block.itemsize * (end - start)))).ravel()
        order = np.argsort(keys, kind="stable")
        ranked = keys[order]
        bounds = np.concatenate([[0], np.flatnonzero(ranked[1:] != ranked[:-1]) + 1, [len(keys)]])
        for i in np.flatnonzero(np.diff(bounds) > 1):
            yield order[bounds[i]:bounds[i + 1]].tolist()


def _shingles_of(view: RecordView, params: MinHashPolicy) -> Callable[[int], frozenset]:
    """The shingle set of distinct prompt `d`, made on demand (only LSH candidates need one)."""
    first = view.prompt_first

    @functools.lru_cache(maxsize=1 << 16)
    def of(d: int) -> frozenset:
        return shingles(view.prompts[int(first[d])], params.shingle_words)

    return of


def prompt_signatures(view: RecordView, params: MinHashPolicy) -> np.ndarray:
    """(distinct prompts, num_perm): the MinHash of each distinct prompt (`view.prompt_ids` numbers them).

    Computed once per view and shared by `duplicates` and `leakage`.
    """
    cache_key = ("prompt_signatures", params.shingle_words, params.num_perm)
    if cache_key not in view.cache:
        first = view.prompt_first
        sets = (shingles(view.prompts[int(i)], params.shingle_words) for i in first)
        view.cache[cache_key] = signatures(sets, len(first), params)
    return view.cache[cache_key]


def near_duplicate_prompts(view: RecordView, threshold: float, params: MinHashPolicy) -> np.ndarray:
    """For each record: does another, different prompt have Jaccard >= threshold with its prompt?"""
    sigs = prompt_signatures(view, params)
    shingles_of = _shingles_of(view, params)
    has_near = np.zeros(len(sigs), dtype=bool)
    for group in band_groups(sigs, lsh_bands(threshold, params)):
        for a in group:
            if has_near[a]:
                continue
            for b in group:
                if b != a and jaccard(shingles_of(a), shingles_of(b)) >= threshold:
                    has_near[a] = has_near[b] = True
                    break
    return has_near[view.prompt_ids]


_LABEL_CODE = {False: 0, True: 1, None: 2}


def _exact_duplicates(view: RecordView) -> np.ndarray:
    """True for every record that repeats an earlier one (same prompt and, up to whitespace, same answers)."""
    if view.paired:
        keys = pair_keys(view)
    else:
        labels = np.fromiter((_LABEL_CODE[r.label] for r in view.records), np.uint64, len(view))
        keys = np.column_stack([view.prompt_ids.astype(np.uint64), view.completion_digest, labels])
    return repeats_earlier(keys)


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
    where = view.prompt_ids
    details = {"exact_share": exact_share, "n_exact": int(exact.sum()), "near_prompt_share": near_share,
               "n_near_prompt": int(near.sum()), "n_prompts": len(view.distinct_prompt_keys),
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


def _near_eval_prompts(view: RecordView, evals: PromptSet, threshold: float,
                       params: MinHashPolicy) -> list[list[int]]:
    """For each distinct training prompt, the eval rows whose prompt has Jaccard >= threshold with it."""
    eval_sets = [shingles(prompt_text(q), params.shingle_words) for q in evals.prompts]
    train = prompt_signatures(view, params)
    stacked = np.concatenate([train, signatures(eval_sets, len(eval_sets), params).astype(train.dtype)])
    shingles_of, m = _shingles_of(view, params), len(train)
    near: list[list[int]] = [[] for _ in range(m)]
    tried: set[tuple[int, int]] = set()
    for group in band_groups(stacked, lsh_bands(threshold, params)):
        ours, theirs = [d for d in group if d < m], [e - m for e in group if e >= m]
        for d in ours if theirs else ():
            for e in theirs:
                if (d, e) not in tried:
                    tried.add((d, e))
                    if jaccard(shingles_of(d), eval_sets[e]) >= threshold:
                        near[d].append(e)
    return near


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
    exact_distinct = np.fromiter((k in eval_keys for k in view.distinct_prompt_keys), bool,
                                 len(view.distinct_prompt_keys))
    near_lists = _near_eval_prompts(view, evals, p.near_jaccard, policy.minhash)
    near_distinct = np.fromiter((bool(lst) for lst in near_lists), bool, len(near_lists)) & ~exact_distinct
    exact, near = exact_distinct[view.prompt_ids], near_distinct[view.prompt_ids]
    exact_share, near_share = share(int(exact.sum()), len(view)), share(int(near.sum()), len(view))
    status = "fail" if exact_share > p.fail_above else grade(near_share, warn_above=p.warn_near_above)
    leaked_keys = {view.distinct_prompt_keys[d] for d in np.flatnonzero(exact_distinct)}
    leaked_eval = {j for j, k in enumerate(evals.keys) if k in leaked_keys}
    leaked_eval |= {j for d in np.flatnonzero(near_distinct) for j in near_lists[d]}
    details = {"eval": evals.describe(), "n_exact": int(exact.sum()), "n_near": int(near.sum()),
               "near_share": near_share, "eval_leaked_share": share(len(leaked_eval), len(evals.prompts)),
               "eval_examples": [evals.ids[j] for j in sorted(leaked_eval)[:MAX_EXAMPLES]]}
    message = (f"{details['n_exact']} training records ({pct(exact_share)}) share their prompt exactly with "
               f"the eval data and {details['n_near']} more nearly; {pct(details['eval_leaked_share'])} of "
               "eval prompts are affected")
    message += ("; scores on those eval items measure memory, not generalisation: remove them from training."
                if status != "pass" else ".")
    return CheckResult("leakage", status, exact_share, threshold, message, pick(view.ids, exact | near),
                       details)
