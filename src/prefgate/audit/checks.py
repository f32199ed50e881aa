"""The audit checks on single records and pairs: one small pure function per check id.

Each takes the records (a `RecordView`, or any list of records) and the `AuditPolicy`, and returns a
`CheckResult`. Checks that compare prompts across records live in `duplicates.py`; the surface-feature
classifier in `shortcut.py`; human-label agreement in `labels.py`. docs/audit.md says why each matters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from prefgate.audit.families import model_family
from prefgate.audit.filters import over_length_ratio
from prefgate.audit.policy import AuditPolicy
from prefgate.audit.result import MAX_EXAMPLES, CheckResult, grade, pct, pick, share, skip
from prefgate.audit.view import RecordView, as_view, key_present, pair_keys, style_norm
from prefgate.data.records import Record

DEFAULT_POLICY = AuditPolicy()
Data = RecordView | Sequence[Record]


UNPAIRED = "needs paired records (chosen and rejected); this dataset is unpaired (KTO)."


def unpaired_skip(check_id: str, threshold: dict[str, Any] | None = None) -> CheckResult:
    return skip(check_id, UNPAIRED, threshold)


def check_schema(dataset: Any, policy: AuditPolicy = DEFAULT_POLICY, *,
                 skip_invalid: bool = True) -> CheckResult:
    """Rows that failed validation. `dataset` is a PreferenceDataset (its `.records` and `.rejected`).

    skip_invalid: the rows were skipped on purpose (warn); False fails instead (the CLI without
    --skip-invalid, which reads leniently only so that it can report every invalid row).
    """
    p = policy.schema_
    rejected = list(getattr(dataset, "rejected", []))
    n_bad, total = len(rejected), len(dataset.records) + len(rejected)
    value = share(n_bad, total)
    if skip_invalid:
        threshold, status = {"warn_above": p.warn_above}, grade(value, warn_above=p.warn_above)
    else:
        threshold, status = {"fail_above": p.fail_above}, grade(value, fail_above=p.fail_above)
    sidecar = getattr(dataset, "rejected_path", None)
    where = f" (each, with its reason, is in {sidecar})" if sidecar else ""
    if n_bad == 0:
        message = f"all {total} rows are valid records."
    elif skip_invalid:
        message = f"{n_bad} of {total} rows ({pct(value)}) failed validation and were skipped{where}."
    else:
        message = (f"{n_bad} of {total} rows ({pct(value)}) failed validation{where}; fix them, or pass "
                   "--skip-invalid to accept training without them.")
    examples = [row.where for row in rejected]  # invalid rows have no record id: their file:line instead
    details = {"n_invalid": n_bad, "n_rows": total}
    return CheckResult("schema", status, value, threshold, message, examples, details)


def check_identical(data: Data, policy: AuditPolicy = DEFAULT_POLICY) -> CheckResult:
    """Pairs whose chosen and rejected texts are equal after whitespace normalisation."""
    threshold = {"fail_above": policy.identical.fail_above}
    view = as_view(data)
    if not view.paired:
        return unpaired_skip("identical", threshold)
    same = view.identical
    value = share(int(same.sum()), len(view))
    status = grade(value, **threshold)
    message = (f"{int(same.sum())} pairs ({pct(value)}) have the same text on both sides (up to whitespace): "
               "they carry no preference, and DPO's gradient on them is pure noise." if same.any()
               else "no pair has the same text on both sides.")
    return CheckResult("identical", status, value, threshold, message, pick(view.ids, same),
                       {"n_identical": int(same.sum())})


def check_style_only(data: Data, policy: AuditPolicy = DEFAULT_POLICY) -> CheckResult:
    """Pairs that differ only in whitespace, punctuation, letter case or markdown markup."""
    p = policy.style_only
    threshold = {"warn_above": p.warn_above, "fail_above": p.fail_above}
    view = as_view(data)
    if not view.paired:
        return unpaired_skip("style_only", threshold)
    pairs = zip(view.chosen, view.rejected, view.identical, strict=True)  # identical pairs are not counted
    style = np.fromiter((not same and style_norm(c) == style_norm(r) for c, r, same in pairs), bool, len(view))
    n = int(style.sum())
    value = share(n, len(view))
    status = grade(value, **threshold)
    message = (f"{n} pairs ({pct(value)}) differ only in punctuation, letter case, whitespace or markdown: "
               "the same answer with a stylistic change, so the model learns the style, not what is right."
               if n else "no pair differs only in style.")
    return CheckResult("style_only", status, value, threshold, message, pick(view.ids, style),
                       {"n_style_only": n})


def _token_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _distances(view: RecordView, tokenizer: Any) -> np.ndarray:
    """Normalised Levenshtein distance of each pair, a chunk of pairs at a time (no text is kept)."""
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cpdist

    dist = np.empty(len(view), np.float64)
    for start, chosen_ws, rejected_ws in view.ws_chunks():
        stop = start + len(chosen_ws)
        if tokenizer is None:
            left, right = chosen_ws, rejected_ws
        else:
            left = _token_ids(tokenizer, view.chosen[start:stop])
            right = _token_ids(tokenizer, view.rejected[start:stop])
        dist[start:stop] = cpdist(left, right, scorer=Levenshtein.normalized_distance, workers=-1)
    return dist


def check_edit_distance(data: Data, policy: AuditPolicy = DEFAULT_POLICY, *,
                        tokenizer: Any = None) -> CheckResult:
    """Normalised Levenshtein distance between chosen and rejected (characters; tokens with a tokenizer)."""
    p = policy.edit_distance
    threshold = {"warn_above": p.warn_above, "low_edit_below": p.low_edit_below}
    view = as_view(data)
    if not view.paired:
        return unpaired_skip("edit_distance", threshold)
    unit = "characters" if tokenizer is None else "tokens"
    dist = _distances(view, tokenizer)
    low = dist < p.low_edit_below
    value = share(int(low.sum()), len(view))
    status = grade(value, warn_above=p.warn_above)
    counts, edges = np.histogram(dist, bins=p.bins, range=(0.0, 1.0))
    details = {"unit": unit, "mean": float(dist.mean()), "median": float(np.median(dist)),
               "n_low_edit": int(low.sum()),
               "histogram": {"edges": edges.round(6).tolist(), "counts": counts.tolist()}}
    message = (f"{pct(value)} of pairs differ in fewer than {pct(p.low_edit_below)} of their {unit} "
               f"(median distance {details['median']:.2f})")
    if status == "warn":
        message += ("; standard DPO is known to lower the likelihood of the chosen answer on such "
                    "low-edit pairs (Pal et al. 2024, DPOP), so train with `loss: dpop`.")
    else:
        message += "."
    closest = np.argsort(dist, kind="stable")[: min(5, int(low.sum()))]
    return CheckResult("edit_distance", status, value, threshold, message, [view.ids[i] for i in closest],
                       details)


def _length_sample(view: RecordView, k: int, seed: int) -> dict[str, list[int]]:
    n = len(view)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(n, k), replace=False)) if k else np.arange(0)
    return {"chosen": view.chosen_len[idx].tolist(), "rejected": view.rejected_len[idx].tolist()}


def _by_ratio(view: RecordView, mask: np.ndarray) -> list[str]:
    """Ids under `mask`, the largest chosen/rejected length ratio first."""
    ratio = view.chosen_len / np.maximum(view.rejected_len, 1)
    order = np.argsort(-ratio, kind="stable")
    return [view.ids[i] for i in order if mask[i]][:MAX_EXAMPLES]


def check_length_bias(data: Data, policy: AuditPolicy = DEFAULT_POLICY) -> CheckResult:
    """Share of pairs (of those with unequal lengths) whose chosen side is longer; mean length ratio."""
    p = policy.length_bias
    threshold = {"warn_at_or_above": p.warn_at_or_above}
    view = as_view(data)
    if not view.paired:
        return unpaired_skip("length_bias", threshold)
    c, r = view.chosen_len, view.rejected_len
    longer = c > r
    value = share(int(longer.sum()), int((c != r).sum()))
    status = grade(value, **threshold)
    ratio = c / np.maximum(r, 1)
    details = {"unit": "characters", "mean_ratio": float(ratio.mean()),
               "median_ratio": float(np.median(ratio)), "n_equal": int((c == r).sum()),
               "scatter": _length_sample(view, p.scatter_points, policy.seed)}
    message = (f"the chosen answer is the longer one in {pct(value)} of pairs (median length ratio "
               f"{details['median_ratio']:.2f})")
    message += ("; a model trained on this learns that longer is better, whatever the content."
                if status == "warn" else ".")
    examples = _by_ratio(view, longer) if status != "pass" else []
    return CheckResult("length_bias", status, value, threshold, message, examples, details)


def check_length_ratio(data: Data, policy: AuditPolicy = DEFAULT_POLICY) -> CheckResult:
    """Share of pairs whose chosen side is more than `max_ratio` times the rejected length."""
    p = policy.length_ratio
    threshold = {"warn_above": p.warn_above, "max_ratio": p.max_ratio}
    view = as_view(data)
    if not view.paired:
        return unpaired_skip("length_ratio", threshold)
    over = over_length_ratio(view.chosen_len, view.rejected_len, p.max_ratio)
    n = int(over.sum())
    value = share(n, len(view))
    status = grade(value, warn_above=p.warn_above)
    message = f"{n} pairs ({pct(value)}) have a chosen answer over {p.max_ratio:g}x as long as the rejected"
    message += ("; length alone predicts the preference there: `prefgate data filter IN OUT "
                f"--max-length-ratio {p.max_ratio:g}` removes them (the removed go to a sidecar file)."
                if status == "warn" else ".")
    return CheckResult("length_ratio", status, value, threshold, message, _by_ratio(view, over),
                       {"n_over": n})


def check_truncation(data: Data, policy: AuditPolicy = DEFAULT_POLICY, *, tokenizer: Any = None,
                     max_length: int | None = None) -> CheckResult:
    """Pairs truncated at `max_length` on either side, and on exactly one side (asymmetric)."""
    from prefgate.data.tokenize import PairTokenizer

    threshold = {"fail_above": policy.truncation.fail_above}
    view = as_view(data)
    if not view.paired:
        return unpaired_skip("truncation", threshold)
    if tokenizer is None or max_length is None:
        return skip("truncation", "needs --tokenizer and --max-length to measure truncation.", threshold)
    pair_tokenizer = PairTokenizer(tokenizer, max_length=max_length)
    flags = np.zeros((len(view), 3), dtype=bool)  # chosen cut, rejected cut, prompt cut
    for i, rec in enumerate(view.records):
        tp = pair_tokenizer.pair(rec)
        flags[i] = (tp.chosen_truncated, tp.rejected_truncated, tp.prompt_truncated)
    one_side = flags[:, 0] != flags[:, 1]
    value = share(int(one_side.sum()), len(view))
    status = grade(value, **threshold)
    chosen_cut, rejected_cut = flags[:, 0], flags[:, 1]
    details = {"max_length": max_length, "any_share": float((chosen_cut | rejected_cut).mean()),
               "asymmetric_share": value, "chosen_only": int((chosen_cut & ~rejected_cut).sum()),
               "rejected_only": int((rejected_cut & ~chosen_cut).sum()),
               "prompt_share": float(flags[:, 2].mean())}
    message = (f"{pct(details['any_share'])} of pairs are cut at {max_length} tokens, {pct(value)} on one "
               f"side only ({details['chosen_only']} chosen, {details['rejected_only']} rejected)")
    message += ("; the loss then compares a cut answer with a whole one and learns length, not quality: "
                "raise --max-length or drop these pairs." if status == "fail" else ".")
    return CheckResult("truncation", status, value, threshold, message, pick(view.ids, one_side), details)


def check_contradictions(data: Data, policy: AuditPolicy = DEFAULT_POLICY) -> CheckResult:
    """Records whose (prompt, rejected, chosen) also appears as a (prompt, chosen, rejected)."""
    threshold = {"fail_above": policy.contradictions.fail_above}
    view = as_view(data)
    if not view.paired:
        return unpaired_skip("contradictions", threshold)
    flipped = key_present(pair_keys(view, swap=True), pair_keys(view)) & ~view.identical
    n = int(flipped.sum())
    value = share(n, len(view))
    status = grade(value, **threshold)
    message = (f"{n} records ({pct(value)}) prefer A over B where another record with the same prompt "
               "prefers B over A: their gradients cancel, and they say the labels are noisy." if n
               else "no pair contradicts another.")
    return CheckResult("contradictions", status, value, threshold, message, pick(view.ids, flipped),
                       {"n_contradicting": n})


def check_rejection_diversity(data: Data, policy: AuditPolicy = DEFAULT_POLICY) -> CheckResult:
    """Share of the most common `rejection_type` among records that carry one."""
    threshold = {"warn_above": policy.rejection_diversity.warn_above}
    view = as_view(data)
    types = [r.rejection_type for r in view.records]
    counts = Counter(t for t in types if t is not None)
    if not counts:
        return skip("rejection_diversity", "no record has a rejection_type field.", threshold)
    top, n_top = counts.most_common(1)[0]
    n_typed = sum(counts.values())
    value = share(n_top, n_typed)
    status = grade(value, **threshold)
    details = {"counts": dict(counts.most_common()), "n_typed": n_typed,
               "coverage": share(n_typed, len(view))}
    message = f"the most common rejection type, '{top}', is {pct(value)} of {n_typed} typed records"
    message += ("; the model learns to avoid that one kind of mistake and little else: add other kinds of "
                "wrong answers." if status == "warn" else f", across {len(counts)} types.")
    return CheckResult("rejection_diversity", status, value, threshold, message,
                       pick(view.ids, (t == top for t in types)) if status != "pass" else [], details)


def check_grader_independence(data: Data, policy: AuditPolicy = DEFAULT_POLICY, *,
                              policy_model: str | None = None) -> CheckResult:
    """Share of graded records whose grader is in the same model family as the model being trained."""
    threshold = {"warn_above": policy.grader_independence.warn_above}
    view = as_view(data)
    graders = [r.grader for r in view.records]
    if not any(g is not None for g in graders):
        return skip("grader_independence", "no record has a grader field.", threshold)
    if not policy_model:
        return skip("grader_independence",
                    "records name their grader; give --policy-model to compare families.", threshold)
    family = model_family(policy_model)
    families = {g: model_family(g) for g in set(graders) if g is not None}
    same = [g is not None and families[g] == family for g in graders]
    n_graded = sum(g is not None for g in graders)
    value = share(sum(same), n_graded)
    status = grade(value, **threshold)
    siblings = sorted({g for g, s in zip(graders, same, strict=True) if s})
    details = {"policy_family": family, "grader_families": dict(Counter(families[g] for g in graders
                                                                        if g is not None).most_common()),
               "same_family_graders": siblings}
    if sum(same):
        message = (f"{pct(value)} of graded records were graded by {', '.join(siblings[:3])}, the same "
                   f"family ('{family}') as the policy {policy_model}: a grader tends to prefer its own "
                   "family's answers, so these labels reward the policy's style; use a grader from another "
                   "family.")
    else:
        message = f"no grader is in the policy's family ('{family}')."
    return CheckResult("grader_independence", status, value, threshold, message, pick(view.ids, same),
                       details)
