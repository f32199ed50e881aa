"""Activation checkpointing modes: `selective` keeps matmul outputs and recomputes the element-wise rest, `full`
recomputes whole layers; both leave the gradients unchanged."""

from __future__ import annotations

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from prefgate.lm import checkpointing
from prefgate.tiny import tiny_llama


class _Count(TorchDispatchMode):
    """How many times each aten op runs."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def _step(mode: str):
    model = tiny_llama(seed=0)
    model.config.use_cache = False
    checkpointing.enable(model, mode)
    model.train()  # the tiny Llama has no dropout
    ids = torch.arange(24).reshape(2, 12) % model.config.vocab_size
    with _Count() as count:
        model(input_ids=ids).logits.float().logsumexp(-1).sum().backward()
    return count.counts, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_selective_recomputes_element_wise_ops_only_and_full_recomputes_the_matmuls_too():
    (off, g_off), (sel, g_sel), (full, g_full) = (_step(mode) for mode in checkpointing.MODES)
    layers = tiny_llama(seed=0).config.num_hidden_layers
    assert sel["mm"] == off["mm"]  # every matmul output is kept: none runs again
    # each layer's forward matmuls replayed in the backward: q, k, v, o, gate, up; not down, whose output the
    # backward does not need (torch's non-reentrant checkpoint stops the replay once it has what it needs)
    assert full["mm"] == off["mm"] + 6 * layers
    assert off["silu"] == layers and sel["silu"] == full["silu"] == 2 * layers  # the element-wise ops replayed
    for name, g in g_off.items():
        torch.testing.assert_close(g_sel[name], g, rtol=0, atol=1e-6, msg=name)
        torch.testing.assert_close(g_full[name], g, rtol=0, atol=1e-6, msg=name)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="one of off, selective, full"):
        checkpointing.enable(tiny_llama(seed=0), "some")


def test_auto_takes_selective_from_hidden_size_512_and_off_below():
    from transformers import LlamaConfig

    assert checkpointing.resolve("auto", LlamaConfig(hidden_size=512))[0] == "selective"
    mode, why = checkpointing.resolve("auto", LlamaConfig(hidden_size=128))
    assert mode == "off" and why.startswith("auto: hidden size 128 < 512")
    assert checkpointing.resolve("full", LlamaConfig(hidden_size=128)) == ("full", "as configured")
