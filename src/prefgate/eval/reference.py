"""Comparisons with a reference model: held-out preference accuracy and KL on the suite's prompts.

- Preference accuracy: for each held-out pair, the implicit DPO reward margin
  `beta * ((policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps))`;
  the accuracy is the share of pairs whose margin is > 0 (a tie counts as wrong).
- KL: for each suite prompt that the policy generated an answer for, the exact token-level
  KL(policy || reference) = sum over the vocabulary of p log(p / q), computed in float32 at every position
  of the policy's greedy answer (prompt tokens excluded), given the same prefix. Reported as the mean over
  all answer tokens (`mean_per_token`) and the mean over prompts of the per-answer sum
  (`mean_per_sequence`). The answers are greedy, not samples, so this is the divergence along the
  policy's own most likely path, not an unbiased estimate of the sequence-level KL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from prefgate.errors import InputError
from prefgate.lm.load import check_same_vocab, pad_token_id
from prefgate.lm.logps import pad_examples
from prefgate.lm.prefix import pair_logps

KL_ESTIMATOR = "exact token-level KL(policy || reference) over the vocabulary, on the policy's greedy answers"


@torch.no_grad()
def _token_kl(policy: Any, reference: Any, input_ids, attention_mask, loss_mask) -> tuple[torch.Tensor,
                                                                                         torch.Tensor]:
    """(summed KL per row float32 (B,), n tokens per row (B,)) over the masked label positions."""
    device = next(policy.parameters()).device
    ids, attn = input_ids.to(device), attention_mask.to(device)
    logp = torch.log_softmax(policy(input_ids=ids, attention_mask=attn).logits[:, :-1].float(), dim=-1)
    ref_device = next(reference.parameters()).device
    ref_logits = reference(input_ids=ids.to(ref_device), attention_mask=attn.to(ref_device)).logits
    logq = torch.log_softmax(ref_logits[:, :-1].float().to(device), dim=-1)
    kl = (logp.exp() * (logp - logq)).sum(-1)  # (B, T-1)
    mask = loss_mask[:, 1:].to(device)
    kl = torch.where(mask, kl, torch.zeros_like(kl))
    return kl.sum(-1).cpu(), mask.sum(-1).cpu()


def mean_kl(policy: Any, reference: Any, prompts: Sequence[list[int]], completions: Sequence[list[int]], *,
            pad_id: int = 0, batch_size: int = 8) -> dict[str, Any]:
    """The `kl` block of an eval report (see the module docstring)."""
    check_same_vocab(policy, reference)
    rows = [(p, c) for p, c in zip(prompts, completions, strict=True) if c]
    sums, counts = [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start: start + batch_size]
        ids, attn, mask = pad_examples([p for p, _ in chunk], [c for _, c in chunk], pad_id=pad_id)
        s, n = _token_kl(policy, reference, ids, attn, mask)
        sums.append(s)
        counts.append(n)
    if not rows:
        return {"estimator": KL_ESTIMATOR, "n_prompts": 0, "n_tokens": 0, "mean_per_token": None,
                "mean_per_sequence": None}
    total, n_tokens = torch.cat(sums), torch.cat(counts)
    return {"estimator": KL_ESTIMATOR, "n_prompts": len(rows), "n_tokens": int(n_tokens.sum()),
            "mean_per_token": float(total.sum() / n_tokens.sum().clamp(min=1)),
            "mean_per_sequence": float(total.mean())}


def preference_accuracy(policy: Any, reference: Any, tokenizer: Any, pairs_path: str, *, beta: float = 0.1,
                        batch_size: int = 8, max_length: int | None = None) -> dict[str, Any]:
    """The `preference` block of an eval report: implicit-reward accuracy on a held-out pairs file."""
    from prefgate.data import PairTokenizer, read_dataset

    check_same_vocab(policy, reference)
    dataset = read_dataset(pairs_path)
    if not dataset.paired:
        raise InputError("expected paired preference records (prompt, chosen, rejected)", where=pairs_path)
    pair_tok = PairTokenizer(tokenizer, max_length=max_length)
    pairs = [pair_tok.pair(rec) for rec in dataset.records]
    prompts = [p.prompt_ids for p in pairs]
    chosen, rejected = [p.chosen_ids for p in pairs], [p.rejected_ids for p in pairs]
    kwargs = {"pad_id": pad_token_id(tokenizer), "batch_size": batch_size}
    policy_chosen_logps, policy_rejected_logps = pair_logps(policy, prompts, chosen, rejected, **kwargs)
    reference_chosen_logps, reference_rejected_logps = pair_logps(reference, prompts, chosen, rejected, **kwargs)
    chosen_logratios = policy_chosen_logps - reference_chosen_logps
    rejected_logratios = policy_rejected_logps - reference_rejected_logps
    margins = beta * (chosen_logratios - rejected_logratios)
    return {"path": pairs_path, "fingerprint": dataset.fingerprint, "n": len(pairs), "beta": beta,
            "accuracy": float((margins > 0).float().mean()), "mean_margin": float(margins.mean())}
