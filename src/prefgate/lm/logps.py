"""Sequence log-probabilities: the one computation that DPO training, preference accuracy and KL share.

The functions:

- `sequence_logps(logits, labels, loss_mask)`: summed log-probabilities of the masked label tokens, in
  float32 whatever the dtype of `logits`, with the causal shift (the logits at position t predict the
  token at t + 1). A row with no masked token gives 0, never NaN.
- `completion_logps(model, prompt_ids, completion_ids, ...)`: pads a list of (prompt, completion) token
  id lists into batches, runs the model, and returns each example's summed completion log-probability.
- `token_logps(model, prompt_ids, completion_ids, ...)`: every completion token's log-probability (what
  `prefgate diagnose` and the trainer's shift probe split at the first differing token); through the
  prefix-shared layout and a chunked LM head where the model allows (no full-vocabulary logits of the
  batch), else the padded forward above (`padded_token_logps`, (B, T, V) logits a batch).

Shapes: B = batch, T = sequence length, V = vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["completion_logps", "pad_examples", "padded_token_logps", "sequence_logps", "token_logps"]


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor,
                                                                                                torch.Tensor]:
    """Summed log p(label) over the masked tokens of each row.

    Args:
        logits: (B, T, V), any float dtype; `logits[:, t]` is the model's prediction for token t + 1.
        labels: (B, T) token ids, aligned with the model's input ids (position 0 is never scored).
        loss_mask: (B, T) bool (or 0/1), aligned with `labels`: True where a label token is scored.
            Labels at unmasked positions may hold anything (pad, -100).

    Returns:
        (summed_logps, n_tokens): float32 (B,) and int64 (B,). A fully masked row gives 0 and 0.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2] or loss_mask.shape != labels.shape:
        raise ValueError(f"expected logits (B, T, V) with labels and loss_mask (B, T), got logits "
                         f"{tuple(logits.shape)}, labels {tuple(labels.shape)}, loss_mask {tuple(loss_mask.shape)}")
    logits = logits[:, :-1, :].float()  # (B, T-1, V), float32 before log-softmax
    targets = labels[:, 1:]  # (B, T-1)
    mask = loss_mask[:, 1:].bool()  # (B, T-1)
    safe_targets = torch.where(mask, targets, torch.zeros_like(targets))  # -100 or pad cannot be gathered
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)
    token_logps = torch.where(mask, token_logps, torch.zeros_like(token_logps))  # where, not *, so no 0 * -inf
    return token_logps.sum(dim=-1), mask.sum(dim=-1)


def pad_examples(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], *,
                 pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, loss_mask), each (B, T), for prompt + completion rows.

    `loss_mask` is True on the completion tokens only.
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"got {len(prompt_ids)} prompts and {len(completion_ids)} completions")
    rows = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    width = max((len(r) for r in rows), default=0)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    loss_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (p, row) in enumerate(zip(prompt_ids, rows, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
        loss_mask[i, len(p): len(row)] = True
    return input_ids, attention_mask, loss_mask


@torch.no_grad()
def completion_logps(model, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], *,
                     pad_id: int = 0, batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Each example's summed completion log-probability under `model` (eval mode, no gradient).

    Returns (summed_logps float32 (N,), n_tokens int64 (N,)) on the CPU, in the input's order.
    An empty completion gives 0. Prompts must be non-empty (the first token is never scored).
    """
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("every prompt needs at least one token (e.g. BOS)")
    device = next(model.parameters()).device
    out_logps, out_counts = [], []
    for start in range(0, len(prompt_ids), batch_size):
        input_ids, attention_mask, loss_mask = pad_examples(
            prompt_ids[start: start + batch_size], completion_ids[start: start + batch_size], pad_id=pad_id)
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        logps, counts = sequence_logps(logits, input_ids.to(device), loss_mask.to(device))
        out_logps.append(logps.cpu())
        out_counts.append(counts.cpu())
    if not out_logps:
        return torch.zeros(0, dtype=torch.float32), torch.zeros(0, dtype=torch.long)
    return torch.cat(out_logps), torch.cat(out_counts)


def _per_token(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(input_ids[:, t + 1] | input_ids[:, :t + 1]) for every t: float32 (B, T - 1).

    The target's logit minus the log-sum-exp, in float32, one row at a time: the float32 copy (for half
    logits) and the log-sum-exp temporary are (T, V), not (B, T, V).
    """
    rows = []
    for b in range(logits.shape[0]):
        row = logits[b, :-1, :].float()  # (T-1, V), float32 before normalising
        target = row.gather(-1, input_ids[b, 1:].unsqueeze(-1)).squeeze(-1)
        rows.append(target - torch.logsumexp(row, dim=-1))
        del row
    return torch.stack(rows)


@torch.no_grad()
def padded_token_logps(model, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], *,
                       pad_id: int = 0, batch_size: int = 8) -> list[list[float]]:
    """`token_logps` through the model's own forward on `batch_size` right-padded rows at a time: works for any
    causal LM, and holds that batch's full-vocabulary logits (batch_size, T, V) plus a (T, V) temporary."""
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("every prompt needs at least one token (e.g. BOS)")
    device = next(model.parameters()).device
    out: list[list[float]] = []
    for start in range(0, len(prompt_ids), batch_size):
        prompts, completions = prompt_ids[start: start + batch_size], completion_ids[start: start + batch_size]
        input_ids, attention_mask, _ = pad_examples(prompts, completions, pad_id=pad_id)  # checks the lengths
        input_ids = input_ids.to(device)
        logits = model(input_ids=input_ids, attention_mask=attention_mask.to(device), use_cache=False).logits
        per_token = _per_token(logits, input_ids).cpu()  # (B, T-1); column t scores token t + 1
        del logits
        for row, (p, c) in enumerate(zip(prompts, completions, strict=True)):
            out.append(per_token[row, len(p) - 1: len(p) - 1 + len(c)].tolist())
    return out


def token_logps(model, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], *,
                pad_id: int = 0, batch_size: int = 8) -> list[list[float]]:
    """Each completion token's log-probability under `model` given the prompt and the tokens before it.

    Returns one list per example (len(completion_ids[i]) floats, float32 precision), in the input's order;
    an empty completion gives []. Their sums agree with `completion_logps`. Prompts must be non-empty (the
    first token is never scored). The caller chooses the mode (eval, no dropout); no gradient is kept.

    Memory: where the model takes the prefix-shared layout and its LM head is a plain Linear, the head runs
    in chunks on the completion positions only (`prefgate.lm.prefix.token_logps`), so the batch's
    full-vocabulary logits never exist; otherwise `padded_token_logps`.
    """
    from prefgate.lm.prefix import token_logps as dispatch  # here, not at the top: prefix imports this module

    return dispatch(model, prompt_ids, completion_ids, pad_id=pad_id, batch_size=batch_size)
