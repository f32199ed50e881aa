"""Log p(target) through the LM head in chunks of tokens, never holding the logits of a whole batch.

`chunked_target_logps(hidden, weight, bias, targets)` returns log softmax(hidden @ weight.T + bias)[target] for
each of N tokens, in float32, exactly what `sequence_logps` computes from full logits, but only one chunk of
(chunk, V) logits is alive at a time, forward or backward. The backward recomputes each chunk's logits (one
extra LM-head matmul) instead of saving them: for a 150k vocabulary the logits of a 4 x 1024-token batch are
2.4 GB in float32, the chunk is 128 MB.

Shapes: N = scored tokens, H = hidden size, V = vocabulary.

Precision: under autocast the two matmuls run in the autocast dtype (as the model's own `lm_head` would), the
logits are upcast to float32 before the log-softmax, and the weight gradient accumulates in float32.
"""

from __future__ import annotations

import torch

__all__ = ["chunk_tokens", "chunked_target_logps"]

_CHUNK_ELEMENTS = 2**25  # logits per chunk: 128 MB in float32


def chunk_tokens(vocab_size: int) -> int:
    """Tokens per chunk so one chunk of float32 logits is about 128 MB."""
    return max(16, _CHUNK_ELEMENTS // max(vocab_size, 1))


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    kind = t.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else t.dtype


def _chunk_logits(buffer: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
                  ) -> torch.Tensor:
    """(c, H) x (V, H) -> (c, V) float32 logits, written into `buffer[:c]` (reused: no page faults per chunk);
    `h` and `weight` already in the compute dtype."""
    logits = buffer[: h.shape[0]]
    if h.dtype == torch.float32:
        torch.mm(h, weight.T, out=logits)
    else:
        logits.copy_(h @ weight.T)
    if bias is not None:
        logits += bias.float()
    return logits


class _ChunkedTargetLogProb(torch.autograd.Function):
    """Forward: per chunk, logits -> logsumexp and the target logit. Backward: per chunk, recompute the logits,
    turn them in place into d logp / d logits = 1[v = target] - softmax, and apply the two gradient matmuls."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):
        dtype = _compute_dtype(hidden)
        n = hidden.shape[0]
        logps = torch.empty(n, dtype=torch.float32, device=hidden.device)
        lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
        buffer = torch.empty((min(chunk, n), weight.shape[0]), dtype=torch.float32, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            for s in range(0, n, chunk):
                logits = _chunk_logits(buffer, hidden[s:s + chunk].to(dtype), w, bias)  # (c, V)
                lse[s:s + chunk] = torch.logsumexp(logits, dim=-1)
                logps[s:s + chunk] = logits.gather(1, targets[s:s + chunk, None]).squeeze(1) - lse[s:s + chunk]
        del buffer
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.chunk, ctx.dtype = chunk, dtype
        return logps

    @staticmethod
    def backward(ctx, grad_logps):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        chunk, dtype = ctx.chunk, ctx.dtype
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        buffer = torch.empty((min(chunk, hidden.shape[0]), weight.shape[0]), dtype=torch.float32,
                             device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            for s in range(0, hidden.shape[0], chunk):
                h = hidden[s:s + chunk].to(dtype)
                g = grad_logps[s:s + chunk].float()
                grad_logits = _chunk_logits(buffer, h, w, bias)  # (c, V), overwritten in place below
                grad_logits.sub_(lse[s:s + chunk, None]).exp_().mul_(-g[:, None])  # -g * softmax
                rows = torch.arange(grad_logits.shape[0], device=grad_logits.device)
                grad_logits[rows, targets[s:s + chunk]] += g  # + g * 1[v = target]
                if need_b:
                    grad_b += grad_logits.sum(0)
                grad_logits = grad_logits.to(dtype)
                if need_h:
                    grad_h[s:s + chunk] = (grad_logits @ w).to(hidden.dtype)
                if need_w:
                    grad_w.addmm_(grad_logits.T.float(), h.float())  # float32 accumulation (no copy in fp32)
                del grad_logits
        return (grad_h, None if grad_w is None else grad_w.to(weight.dtype),
                None if grad_b is None else grad_b.to(bias.dtype), None, None)


def chunked_target_logps(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         targets: torch.Tensor, *, chunk: int | None = None) -> torch.Tensor:
    """log softmax(hidden @ weight.T + bias)[targets], float32 (N,), differentiable in hidden, weight and bias.

    Args:
        hidden: (N, H) final hidden states of the positions that predict `targets`.
        weight: (V, H) the LM head's weight; bias: (V,) or None.
        targets: (N,) int64 token ids.
        chunk: tokens per chunk (default: `chunk_tokens(V)`).
    """
    shapes_ok = hidden.dim() == 2 and weight.dim() == 2 and weight.shape[1] == hidden.shape[1]
    if not shapes_ok or targets.shape != hidden.shape[:1]:
        raise ValueError(f"expected hidden (N, H), weight (V, H), targets (N,), got {tuple(hidden.shape)}, "
                         f"{tuple(weight.shape)}, {tuple(targets.shape)}")
    if hidden.shape[0] == 0:  # keep the graph connected so an empty batch still back-propagates (zeros)
        return hidden.sum(-1).float() * 0.0
    return _ChunkedTargetLogProb.apply(hidden, weight, bias, targets, chunk or chunk_tokens(weight.shape[0]))
