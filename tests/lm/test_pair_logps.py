"""Held-out preference log-probs: each prompt computed once where the model allows, the same numbers."""

from __future__ import annotations

import torch

from prefgate.lm.logps import completion_logps
from prefgate.lm.prefix import pair_logps, supports_prefix_sharing


def _pairs(n: int, vocab: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)

    def ids(k: int) -> list[int]:
        return torch.randint(3, vocab, (k,), generator=gen).tolist()

    lengths = torch.randint(1, 12, (n, 3), generator=gen).tolist()
    return [ids(p) for p, _, _ in lengths], [ids(c) for _, c, _ in lengths], [ids(r) for _, _, r in lengths]


def _concatenated(model, prompts, chosen, rejected):
    return (completion_logps(model, prompts, chosen, batch_size=3)[0],
            completion_logps(model, prompts, rejected, batch_size=3)[0])


@torch.no_grad()
def test_prefix_shared_pair_logps_equal_the_concatenated_ones():
    from prefgate.tiny import tiny_llama

    model = tiny_llama(seed=3).eval()
    assert supports_prefix_sharing(model)[0]
    prompts, chosen, rejected = _pairs(7, model.config.vocab_size)
    chosen[2] = []  # an empty completion scores 0 either way
    got = pair_logps(model, prompts, chosen, rejected, batch_size=3)
    want = _concatenated(model, prompts, chosen, rejected)
    for g, w in zip(got, want, strict=True):
        assert g.shape == (7,) and torch.allclose(g, w, atol=1e-5, rtol=0)
    assert got[0][2] == 0.0


@torch.no_grad()
def test_a_model_without_prefix_sharing_takes_the_concatenated_path():
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=4, num_key_value_heads=2, sliding_window=8)).eval()
    assert not supports_prefix_sharing(model)[0]
    prompts, chosen, rejected = _pairs(4, 64)
    got = pair_logps(model, prompts, chosen, rejected, batch_size=3)
    want = _concatenated(model, prompts, chosen, rejected)
    assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
