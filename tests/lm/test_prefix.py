"""The prefix-shared forward equals the concatenated one: log-probs and gradients within 1e-5 in float32.

Reference: `step.forward_logps(model, collate(...))`, the concatenated, padded forward the loop has always
used. Models are tiny, randomly initialised Llama, Qwen2 (grouped-query attention) and GPT-2 (learned
absolute positions, tied head), in eval mode (GPT-2 has dropout). The pairs have variable prompt and
completion lengths, a chosen that is EOS only, an empty completion and a one-token prompt.
"""

from __future__ import annotations

import logging

import pytest
import torch

from prefgate.errors import InputError
from prefgate.lm import prefix
from prefgate.lm.chunked import chunked_target_logps
from prefgate.lm.prefix import (
    build_layout,
    prefix_shared_logps,
    resolve_forward,
    supports_prefix_sharing,
)
from prefgate.train.batches import TokenizedData, collate
from prefgate.train.step import forward_logps

VOCAB, EOS, PAD = 61, 2, 0
TOL = 1e-5


def tiny(kind: str, attn: str = "sdpa", seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = {"vocab_size": VOCAB, "bos_token_id": 1, "eos_token_id": EOS, "pad_token_id": PAD}
    if kind == "gpt2":
        config, cls = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **common), GPT2LMHeadModel
    else:
        cfg_cls, cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[kind]
        config = cfg_cls(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=128, **common)
    config._attn_implementation = attn
    torch.manual_seed(seed)
    return cls(config).eval()


def pairs(seed: int = 0) -> list[list[tuple[list[int], list[int]]]]:
    """rows[i] = [(prompt, chosen), (prompt, rejected)], completions ending in EOS (but one empty)."""
    gen = torch.Generator().manual_seed(seed)

    def ids(n: int) -> list[int]:
        return torch.randint(3, VOCAB, (n,), generator=gen).tolist()

    rows = []
    for p, c, r in [(6, 5, 3), (1, 4, 9), (11, 1, 6), (4, 7, 7), (3, 0, 2), (9, 12, 1)]:
        prompt = ids(p)
        chosen = ids(c - 1) + [EOS] if c else []  # c == 1: EOS only; c == 0: empty
        rows.append([(prompt, chosen), (prompt, ids(r - 1) + [EOS])])
    return rows


def concatenated(model, rows) -> torch.Tensor:
    return forward_logps(model, collate(TokenizedData(rows, None, 0, 0), list(range(len(rows))), pad_id=PAD))


def grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


# -- equivalence --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_logps_equal_the_concatenated_forward(kind, attn):
    model, rows = tiny(kind, attn), pairs()
    with torch.no_grad():
        expected = concatenated(model, rows)
        for pack_tokens in (None, 24, 1000):  # one pair a row; a few per row; all in one row
            got = prefix_shared_logps(model, rows, pad_id=PAD, pack_tokens=pack_tokens)
            assert got.dtype == torch.float32 and got.shape == (2 * len(rows),)
            torch.testing.assert_close(got, expected, rtol=0, atol=TOL)
    assert expected[4] == 0 and got[4] == 0  # the empty chosen: no scored token, 0 (not NaN)
    assert expected[2] != 0  # EOS-only chosen: one scored token, predicted by the last prompt token


@pytest.mark.parametrize("pack_tokens", [None, 40])
@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_gradients_equal_the_concatenated_forward(kind, pack_tokens):
    model, rows = tiny(kind), pairs(1)
    concatenated(model, rows).sum().backward()
    expected = grads(model)
    prefix_shared_logps(model, rows, pad_id=PAD, pack_tokens=pack_tokens).sum().backward()
    got = grads(model)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=TOL, msg=name)


def test_gradient_checkpointing_in_train_mode_gives_the_same_gradients():
    model, rows = tiny("llama"), pairs(7)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()  # Llama has no dropout: train mode is deterministic
    concatenated(model, rows).sum().backward()
    expected = grads(model)
    prefix_shared_logps(model, rows, pad_id=PAD, pack_tokens=30).sum().backward()
    for name, g in grads(model).items():
        torch.testing.assert_close(g, expected[name], rtol=0, atol=TOL, msg=name)


def test_a_dpo_style_weighting_of_the_outputs_gives_the_same_gradients():
    """Chosen and rejected get different upstream gradients (as in DPO): the branches must not mix."""
    model, rows = tiny("llama"), pairs(2)
    weights = torch.linspace(-1.0, 1.0, 2 * len(rows))
    (concatenated(model, rows) * weights).sum().backward()
    expected = grads(model)
    (prefix_shared_logps(model, rows, pad_id=PAD, pack_tokens=30) * weights).sum().backward()
    for name, g in grads(model).items():
        torch.testing.assert_close(g, expected[name], rtol=0, atol=TOL, msg=name)


def test_roles_with_different_prompts_and_one_role_rows_still_match():
    """KTO-style rows whose second role has another prompt become separate trees; SFT rows have one role."""
    model, rows = tiny("qwen2"), pairs(3)
    mixed = [[rows[i][0], (rows[(i + 1) % len(rows)][0][0], rows[i][1][1])] for i in range(len(rows))]
    single = [[r[0]] for r in rows]
    with torch.no_grad():
        for data in (mixed, single):
            torch.testing.assert_close(prefix_shared_logps(model, data, pad_id=PAD, pack_tokens=50),
                                       concatenated(model, data), rtol=0, atol=TOL)


def test_a_head_that_is_not_a_plain_linear_goes_through_the_models_own_head():
    class HalfHead(torch.nn.Linear):
        def forward(self, x):
            return super().forward(x) * 0.5

    model, rows = tiny("llama"), pairs(4)
    head = HalfHead(32, VOCAB, bias=False)
    head.weight.data.copy_(model.lm_head.weight.data)
    model.lm_head = head
    assert not prefix._plain_head(model)
    with torch.no_grad():
        torch.testing.assert_close(prefix_shared_logps(model, rows, pad_id=PAD), concatenated(model, rows),
                                   rtol=0, atol=TOL)


def test_through_a_peft_lora_wrapper_with_and_without_the_adapter():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny("llama"), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                     init_lora_weights=False))
    rows = pairs(5)
    with torch.no_grad():
        torch.testing.assert_close(prefix_shared_logps(model, rows, pad_id=PAD), concatenated(model, rows),
                                   rtol=0, atol=TOL)
        with model.disable_adapter():
            torch.testing.assert_close(prefix_shared_logps(model, rows, pad_id=PAD), concatenated(model, rows),
                                       rtol=0, atol=TOL)


def test_bf16_autocast_stays_close_and_returns_float32():
    model, rows = tiny("llama"), pairs(6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, expected = prefix_shared_logps(model, rows, pad_id=PAD, pack_tokens=40), concatenated(model, rows)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=0.3)


# -- layout -------------------------------------------------------------------------------------------------


def test_layout_positions_restart_after_the_prompt_and_the_last_token_is_never_fed():
    rows = [[([5, 6, 7], [8, 9, EOS]), ([5, 6, 7], [10, EOS])]]
    lay = build_layout(rows, pad_id=PAD)
    assert lay.input_ids.tolist() == [[5, 6, 7, 8, 9, 10]]
    assert lay.position_ids.tolist() == [[0, 1, 2, 3, 4, 3]]
    assert lay.branch.tolist() == [[0, 0, 0, 1, 1, 2]]
    # chosen 8, 9, EOS predicted from columns 2 (last prompt token), 3, 4; rejected 10, EOS from 2 and 5
    assert lay.pred_col.tolist() == [2, 3, 4, 2, 5] and lay.targets.tolist() == [8, 9, EOS, 10, EOS]
    assert lay.owner.tolist() == [0, 0, 0, 1, 1] and lay.n_outputs == 2


def test_the_mask_hides_the_chosen_branch_from_the_rejected_one_and_trees_from_each_other():
    rows = [[([5, 6], [8, 9, EOS]), ([5, 6], [10, 11, EOS])], [([4], [3, EOS]), ([4], [7, EOS])]]
    lay = build_layout(rows, pad_id=PAD, pack_tokens=100)
    assert lay.input_ids.shape[0] == 1  # both trees in one row
    allowed = prefix._allowed(lay)[0]
    # row: 5 6 | 8 9 | 10 11 || 4 | 3 | 7
    assert allowed[4].tolist() == [True, True, False, False, True, False, False, False, False]  # 10 sees prompt
    assert allowed[5, :6].tolist() == [True, True, False, False, True, True]
    assert not allowed[6, :6].any() and allowed[8].tolist() == [False] * 6 + [True, False, True]
    float_mask = prefix.attention_mask(lay, "eager", torch.float32)
    assert float_mask.shape == (1, 1, 9, 9) and float_mask[0, 0, 4, 2] == torch.finfo(torch.float32).min


def test_packing_is_first_fit_decreasing_and_never_splits_a_tree():
    assert prefix._pack([5, 9, 3, 4], None) == [[0], [1], [2], [3]]
    assert prefix._pack([5, 9, 3, 4], 10) == [[1], [0, 3], [2]]
    assert prefix._pack([5, 9, 3, 4], 4) == [[1], [0, 3], [2]]  # capacity is at least the longest tree


def test_bad_batches_are_rejected():
    with pytest.raises(ValueError, match="same number of roles"):
        build_layout([[([1], [2])], [([1], [2]), ([1], [3])]], pad_id=PAD)
    with pytest.raises(ValueError, match="non-empty"):
        build_layout([], pad_id=PAD)


# -- chunked head -------------------------------------------------------------------------------------------


def test_chunked_head_equals_a_full_log_softmax_in_value_and_gradient():
    torch.manual_seed(0)
    hidden = torch.randn(13, 8, requires_grad=True)
    weight = torch.randn(29, 8, requires_grad=True)
    bias = torch.randn(29, requires_grad=True)
    targets = torch.randint(0, 29, (13,))
    upstream = torch.randn(13)
    full = torch.log_softmax(hidden @ weight.T + bias, dim=-1).gather(1, targets[:, None]).squeeze(1)
    expected = torch.autograd.grad((full * upstream).sum(), (hidden, weight, bias))
    got_value = chunked_target_logps(hidden, weight, bias, targets, chunk=4)  # 4 chunks, the last partial
    got = torch.autograd.grad((got_value * upstream).sum(), (hidden, weight, bias))
    torch.testing.assert_close(got_value, full, rtol=0, atol=TOL)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=TOL)


def test_chunked_head_with_no_tokens_back_propagates_zeros():
    hidden = torch.randn(0, 8, requires_grad=True)
    out = chunked_target_logps(hidden, torch.randn(5, 8), None, torch.zeros(0, dtype=torch.long))
    out.sum().backward()
    assert out.shape == (0,) and hidden.grad.shape == (0, 8)


# -- support detection --------------------------------------------------------------------------------------


def test_supported_models_pass_the_probe():
    for kind in ("llama", "qwen2", "gpt2"):
        ok, reason = supports_prefix_sharing(tiny(kind))
        assert ok, reason


@pytest.mark.parametrize("pack_tokens", [None, 64])
def test_the_flex_attention_block_mask_follows_the_same_rule_as_the_dense_mask(pack_tokens):
    """The GPU path's `BlockMask`, evaluated element by element, equals the sdpa mask the equivalence tests
    use. (Running flex attention itself needs a GPU for the backward, and on CPU goes through inductor's C++
    code generation, so it is not run here.)"""
    from torch.nn.attention.flex_attention import create_mask

    layout = build_layout(pairs(seed=4), pad_id=PAD, pack_tokens=pack_tokens)
    rows, width = layout.segment.shape
    block_mask = prefix.attention_mask(layout, "flex_attention", torch.float32)
    dense = create_mask(block_mask.mask_mod, rows, None, width, width, device="cpu")
    assert torch.equal(dense[:, 0], prefix._allowed(layout))
    model = tiny("llama", attn="flex_attention")
    ok, reason = supports_prefix_sharing(model)
    assert not ok and "flex_attention has no backward on CPU" in reason


def test_unsupported_attention_and_sliding_windows_are_detected():
    model = tiny("llama")
    model.config._attn_implementation = "flash_attention_2"
    ok, reason = supports_prefix_sharing(model)
    assert not ok and "flash_attention_2" in reason
    model = tiny("qwen2")
    model.config.layer_types = ["sliding_attention", "full_attention"]
    ok, reason = supports_prefix_sharing(model)
    assert not ok and "sliding" in reason


def test_the_probe_catches_a_model_that_ignores_the_custom_mask(monkeypatch):
    """If the rejected branch could see the chosen one, the probe's log-probs would differ: fall back."""
    monkeypatch.setattr(prefix, "_allowed", lambda lay: torch.ones(lay.segment.shape[0], lay.segment.shape[1],
                                                                     lay.segment.shape[1], dtype=torch.bool).tril())
    ok, reason = supports_prefix_sharing(tiny("llama", seed=7))
    assert not ok and "differs" in reason


def test_resolve_forward_picks_falls_back_with_a_logged_reason_or_refuses(caplog):
    model = tiny("llama")
    assert resolve_forward(model, "auto")[0] == "prefix_shared"
    assert resolve_forward(model, "concatenated")[0] == "concatenated"
    model.config._attn_implementation = "flash_attention_2"
    with caplog.at_level(logging.WARNING, logger="prefgate.lm.prefix"):
        chosen, reason = resolve_forward(model, "auto")
    assert chosen == "concatenated" and "flash_attention_2" in reason and "flash_attention_2" in caplog.text
    with pytest.raises(InputError, match="forward"):
        resolve_forward(model, "prefix_shared")
    with pytest.raises(InputError, match="expected one of"):
        resolve_forward(model, "fast")
