"""Per-token completion log-probs: the layout path with a chunked head equals the padded full-logits one.

Reference: `naive`, one unpadded example at a time through the model's own forward, log-softmax of the full
logits in float64; `padded_token_logps` (the full-logits path `token_logps` falls back to) must equal it
too. Models are the tiny Llama, Qwen2 and GPT-2 of test_prefix.py, in eval mode; the examples have prompts of
1 to 11 tokens, completions of 0 to 12 tokens, and there are more of them than `batch_size`.
"""

from __future__ import annotations

import pytest
import torch

from prefgate.lm import logps, prefix
from prefgate.lm.logps import padded_token_logps
from prefgate.lm.prefix import supports_prefix_sharing, token_logps
from tests.lm.test_prefix import VOCAB, tiny

TOL = 1e-5
BATCH = 3


def examples(seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """Eight (prompt, completion) pairs: an empty completion, a one-token one, a one-token prompt."""
    gen = torch.Generator().manual_seed(seed)

    def ids(n: int) -> list[int]:
        return torch.randint(3, VOCAB, (n,), generator=gen).tolist()

    lengths = [(6, 5), (1, 4), (11, 1), (4, 7), (3, 0), (9, 12), (2, 3), (7, 9)]
    return [ids(p) for p, _ in lengths], [ids(c) for _, c in lengths]


@torch.no_grad()
def naive(model, prompts, completions) -> list[list[float]]:
    """log softmax(logits[t - 1])[token t] for every completion token, one unpadded row at a time, float64."""
    out = []
    for p, c in zip(prompts, completions, strict=True):
        row = torch.tensor([p + c])
        logp = torch.log_softmax(model(input_ids=row).logits[0].double(), dim=-1)  # (T, V)
        out.append([float(logp[len(p) + j - 1, token]) for j, token in enumerate(c)])
    return out


def assert_close_per_token(got: list[list[float]], expected: list[list[float]]) -> None:
    assert [len(g) for g in got] == [len(e) for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e, abs=TOL, rel=0)


class HeadSpy:
    """Records the shape of every output of the model's LM head."""

    def __init__(self, model):
        self.shapes: list[tuple[int, ...]] = []
        self.handle = model.get_output_embeddings().register_forward_hook(
            lambda _m, _args, out: self.shapes.append(tuple(out.shape)))

    def full_logits(self) -> list[tuple[int, ...]]:
        """The outputs that hold logits of at least one position (the layout path's head keeps none)."""
        return [s for s in self.shapes if torch.Size(s[:-1]).numel() > 0]


# -- the layout path ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_layout_path_equals_the_full_logits_path_per_token(kind, attn):
    model = tiny(kind, attn)
    prompts, completions = examples()
    assert supports_prefix_sharing(model)[0] and prefix._plain_head(model)
    expected = naive(model, prompts, completions)
    padded = padded_token_logps(model, prompts, completions, pad_id=0, batch_size=BATCH)
    got = token_logps(model, prompts, completions, pad_id=0, batch_size=BATCH)
    assert_close_per_token(padded, expected)
    assert_close_per_token(got, expected)
    assert_close_per_token(got, padded)
    assert got[4] == [] and len(got[2]) == 1 and all(isinstance(v, float) for v in got[0])
    # batching does not matter: one example a forward, or all in one
    for batch_size in (1, len(prompts)):
        assert_close_per_token(token_logps(model, prompts, completions, pad_id=0, batch_size=batch_size), got)


def test_the_layout_path_never_builds_full_vocabulary_logits():
    """The model's head sees no position on the layout path; the padded path's head gives (rows, T, V)."""
    model = tiny("qwen2")
    prompts, completions = examples(1)
    supports_prefix_sharing(model)  # the support probe runs the model's head itself; not what is measured
    spy = HeadSpy(model)
    token_logps(model, prompts, completions, pad_id=0, batch_size=BATCH)
    assert spy.shapes and spy.full_logits() == []  # called (logits_to_keep selects nothing), never with a position
    padded_token_logps(model, prompts, completions, pad_id=0, batch_size=BATCH)
    widths = [len(p) + len(c) for p, c in zip(prompts, completions, strict=True)]
    assert spy.full_logits() == [(BATCH, max(widths[:3]), VOCAB), (BATCH, max(widths[3:6]), VOCAB),
                                 (2, max(widths[6:]), VOCAB)]
    spy.handle.remove()


def test_the_public_name_in_lm_logps_takes_the_same_path():
    model = tiny("llama")
    prompts, completions = examples(2)
    supports_prefix_sharing(model)
    spy = HeadSpy(model)
    got = logps.token_logps(model, prompts, completions, pad_id=0, batch_size=BATCH)
    assert spy.shapes and spy.full_logits() == []
    spy.handle.remove()
    assert got == token_logps(model, prompts, completions, pad_id=0, batch_size=BATCH)
    assert_close_per_token(got, naive(model, prompts, completions))


def test_sums_equal_the_layout_sums():
    """`layout_logps` is `layout_token_logps` summed per output slot."""
    model = tiny("gpt2")
    prompts, completions = examples(3)
    rows = [[(p, c)] for p, c in zip(prompts, completions, strict=True)]
    with torch.no_grad():
        sums = prefix.layout_logps(model, prefix.build_layout(rows, pad_id=0))
    per_token = token_logps(model, prompts, completions, pad_id=0, batch_size=len(prompts))
    torch.testing.assert_close(sums, torch.tensor([sum(t) for t in per_token]), rtol=0, atol=TOL)


# -- fallback -----------------------------------------------------------------------------------------------


def test_a_model_without_prefix_sharing_falls_back_and_agrees():
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             sliding_window=8)).eval()
    assert not supports_prefix_sharing(model)[0]
    prompts, completions = examples(4)
    spy = HeadSpy(model)
    got = token_logps(model, prompts, completions, pad_id=0, batch_size=BATCH)
    assert len(spy.full_logits()) == 3  # the padded path: three batches of full logits
    spy.handle.remove()
    assert got == padded_token_logps(model, prompts, completions, pad_id=0, batch_size=BATCH)
    assert_close_per_token(got, naive(model, prompts, completions))


def test_a_model_that_fails_the_probe_falls_back(monkeypatch):
    """A mask the model would ignore fails the probe; the layout would then be wrong, so agreement with the
    naive forward shows the padded path ran."""
    monkeypatch.setattr(prefix, "_allowed", lambda lay: torch.ones(lay.segment.shape[0], lay.segment.shape[1],
                                                                     lay.segment.shape[1], dtype=torch.bool).tril())
    model = tiny("llama", seed=11)
    prompts, completions = examples(5)
    assert not supports_prefix_sharing(model)[0]
    assert_close_per_token(token_logps(model, prompts, completions, pad_id=0, batch_size=BATCH),
                           naive(model, prompts, completions))


def test_a_head_that_is_not_a_plain_linear_takes_the_padded_path():
    class HalfHead(torch.nn.Linear):
        def forward(self, x):
            return super().forward(x) * 0.5

    model = tiny("llama", seed=12)
    head = HalfHead(32, VOCAB, bias=False)
    head.weight.data.copy_(model.lm_head.weight.data)
    model.lm_head = head
    prompts, completions = examples(6)
    spy = HeadSpy(model)
    got = token_logps(model, prompts, completions, pad_id=0, batch_size=BATCH)
    assert (BATCH, max(len(p) + len(c) for p, c in zip(prompts[:3], completions[:3], strict=True)), VOCAB) \
        in spy.full_logits()
    spy.handle.remove()
    assert_close_per_token(got, naive(model, prompts, completions))


# -- contract -----------------------------------------------------------------------------------------------


def test_inputs_are_checked_and_no_gradient_is_kept():
    model = tiny("llama")
    assert token_logps(model, [], []) == []
    assert token_logps(model, [[5], [6, 7]], [[], []]) == [[], []]
    with pytest.raises(ValueError, match="at least one token"):
        token_logps(model, [[5], []], [[6], [7]])
    with pytest.raises(ValueError, match="prompts and"):
        token_logps(model, [[5]], [[6], [7]])
    with pytest.raises(ValueError, match="at least one token"):
        padded_token_logps(model, [[]], [[5]])
    model.train()  # the caller chooses the mode; Llama has no dropout, so train mode gives the same numbers
    prompts, completions = examples(7)
    got = token_logps(model, prompts, completions, pad_id=0, batch_size=BATCH)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert_close_per_token(got, naive(model, prompts, completions))
