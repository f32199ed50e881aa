"""Sequence log-probs: against a naive per-token loop, in float32 from any dtype, masked rows give 0."""

from __future__ import annotations

import math

import pytest
import torch

from prefgate.lm.logps import completion_logps, pad_examples, sequence_logps


def naive_logps(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> list[float]:
    """One position at a time, in float64: sum over t >= 1 with mask[t] of log softmax(logits[t - 1])[labels[t]]."""
    out = []
    for b in range(labels.shape[0]):
        total = 0.0
        for t in range(1, labels.shape[1]):
            if loss_mask[b, t]:
                row = logits[b, t - 1].double()
                total += float(row[labels[b, t]] - torch.logsumexp(row, dim=0))
        out.append(total)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_matches_a_naive_loop(dtype):
    torch.manual_seed(0)
    logits = (torch.randn(3, 7, 11) * 4).to(dtype)
    labels = torch.randint(0, 11, (3, 7))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    logps, counts = sequence_logps(logits, labels, mask)
    assert logps.dtype == torch.float32 and counts.tolist() == [4, 6, 2]
    expected = naive_logps(logits.float(), labels, mask)  # the same rounded logits, computed exactly
    assert logps.tolist() == pytest.approx(expected, abs=1e-4)


def test_fully_masked_row_gives_zero_not_nan_even_with_ignore_labels():
    logits = torch.randn(2, 5, 7)
    logits[1] = float("-inf")  # a row whose logits are garbage must not leak through the mask
    logits[1, :, 0] = 0.0
    labels = torch.tensor([[1, 2, 3, 4, 5], [-100, -100, -100, -100, -100]])
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    logps, counts = sequence_logps(logits, labels, mask)
    assert logps[1].item() == 0.0 and counts[1].item() == 0
    assert not torch.isnan(logps).any()


def test_position_zero_is_never_scored():
    logits = torch.zeros(1, 3, 4)  # uniform: every scored token costs log(1/4)
    labels = torch.tensor([[1, 2, 3]])
    logps, counts = sequence_logps(logits, labels, torch.ones(1, 3, dtype=torch.bool))
    assert counts.item() == 2 and logps.item() == pytest.approx(2 * math.log(1 / 4))


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="expected logits"):
        sequence_logps(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))


def test_pad_examples():
    ids, attn, mask = pad_examples([[1, 2], [3]], [[4], [5, 6, 7]], pad_id=0)
    assert ids.tolist() == [[1, 2, 4, 0], [3, 5, 6, 7]]
    assert attn.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert mask.tolist() == [[False, False, True, False], [False, True, True, True]]


def test_completion_logps_on_a_tiny_model_matches_one_example_at_a_time():
    from prefgate.tiny import tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_llama(tok).eval()
    prompts = [tok("Human: hi")["input_ids"], tok("Question: What is 12 plus 30? Answer:")["input_ids"], [1]]
    completions = [tok(" The capital", add_special_tokens=False)["input_ids"], [tok.eos_token_id], []]
    batched, counts = completion_logps(model, prompts, completions, pad_id=tok.pad_token_id, batch_size=3)
    assert counts.tolist() == [len(c) for c in completions]
    assert batched[2].item() == 0.0  # empty completion
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        with torch.no_grad():
            ids = torch.tensor([p + c])
            logits = model(input_ids=ids).logits[0]
        manual = sum(float(torch.log_softmax(logits[len(p) + j - 1], -1)[tok_id]) for j, tok_id in enumerate(c))
        assert batched[i].item() == pytest.approx(manual, abs=1e-4)
    one_by_one, _ = completion_logps(model, prompts, completions, pad_id=tok.pad_token_id, batch_size=1)
    assert torch.allclose(batched, one_by_one, atol=1e-4)
