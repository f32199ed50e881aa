"""bf16 on CPU: autocast (`precision: bf16`) and pure bf16 weights (`model.dtype: bfloat16`) train, the step-0
loss agrees with float32 within the documented tolerance, and log-probs are float32 sums whatever the weights.

Tolerances (docs/train.md, "Precision"): bf16 keeps 8 significant bits (unit roundoff 2^-9 = 2e-3), so the
logits of a bf16 forward differ from float32 ones in the third digit. On the tiny test model the first batch's
mean summed chosen log-prob then differs from float32's by 5.2e-5 relative and the step-0 loss by 5.2e-5 (pure
bf16; autocast 2.6e-5 and 6.9e-6, BENCHMARKS.md); the tests allow 1e-3 for both. The float32 *accumulation* is
checked separately and tightly: against a float64 sum of the same bf16 logits, to float32 rounding (1e-6
relative), which a bf16 sum would miss by far (bf16's spacing is 0.25 or more past 32 in magnitude).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from prefgate.errors import InputError
from prefgate.train.loop import train
from tests.train.conftest import arithmetic_pairs, make_config, write_pairs

LOSS_TOLERANCE = 1e-3  # absolute, step-0 DPO loss (beta 0.1)
LOGPS_TOLERANCE = 1e-3  # relative, mean summed chosen log-prob of the first batch
MODES = {"autocast": {"precision": "bf16"}, "pure": {"model.dtype": "bfloat16"}}


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _run(tiny_dir, ref_dir, train_file, out, **overrides):
    config = make_config(tiny_dir, train_file, out, max_steps=3, **{"reference.strategy": "model",
                                                                     "reference.model": str(ref_dir)}, **overrides)
    return train(config, show_progress=False)


@pytest.fixture(scope="module")
def float32_run(tiny_dir, ref_dir, tmp_path_factory):
    """The same run in float32, trained once for every mode; a reference model of another seed, so the step-0
    loss is not log 2 by construction."""
    tmp = tmp_path_factory.mktemp("fp32")
    train_file = write_pairs(tmp / "pairs.jsonl", arithmetic_pairs(20))
    result = _run(tiny_dir, ref_dir, train_file, tmp / "run")
    assert result.status == "completed"
    return train_file, _metrics(result.run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_bf16_trains_on_cpu_and_its_step0_loss_agrees_with_float32(mode, tiny_dir, ref_dir, float32_run, tmp_path):
    train_file, fp32 = float32_run
    result = _run(tiny_dir, ref_dir, train_file, tmp_path / "run", **MODES[mode])
    assert result.status == "completed" and result.steps == 3
    bf16 = _metrics(result.run_dir)
    assert abs(bf16[0]["loss"] - fp32[0]["loss"]) < LOSS_TOLERANCE
    assert bf16[0]["loss"] != pytest.approx(0.6931471805599453, abs=1e-3)  # a real margin, not log 2
    chosen, reference = bf16[0]["logps/chosen"], fp32[0]["logps/chosen"]
    assert abs(chosen - reference) / abs(reference) < LOGPS_TOLERANCE
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in bf16)
    assert bf16[2]["loss"] != bf16[0]["loss"]  # it trains: later batches see updated weights
    weights = load_file(str(result.run_dir / "model" / "model.safetensors"))
    initial = load_file(str(tiny_dir / "model.safetensors"))
    name = "model.layers.0.mlp.down_proj.weight"
    assert weights[name].dtype == (torch.bfloat16 if mode == "pure" else torch.float32)
    assert not torch.equal(weights[name].float(), initial[name].float())


def _bf16_model(tiny_dir):
    from prefgate.lm.load import load_causal_lm

    return load_causal_lm(str(tiny_dir), dtype=torch.bfloat16).eval()


@pytest.mark.parametrize("weights", ["bfloat16", "float32 under bf16 autocast"])
def test_log_probs_are_float32_sums_of_the_bf16_logits(weights, tiny_dir, tiny_tok, tmp_path):
    from prefgate.data import read_dataset
    from prefgate.losses import LossType
    from prefgate.train.batches import collate, tokenize_dataset
    from prefgate.train.step import forward_logps

    rows = [{"prompt": f"Question {i}: name some numbers.", "chosen": " " + " ".join(str(j * i) for j in range(9)),
             "rejected": " The quick brown fox jumps over the lazy dog." * (1 + i % 2)} for i in range(1, 5)]
    data = tokenize_dataset(read_dataset(write_pairs(tmp_path / "p.jsonl", rows)), tiny_tok, LossType.DPO,
                            max_length=128, max_prompt_length=None)
    batch = collate(data, list(range(len(rows))), pad_id=tiny_tok.pad_token_id)
    if weights == "bfloat16":
        model, autocast = _bf16_model(tiny_dir), torch.autocast("cpu", enabled=False)
    else:
        from prefgate.lm.load import load_causal_lm

        model, autocast = load_causal_lm(str(tiny_dir)).eval(), torch.autocast("cpu", dtype=torch.bfloat16)
    with torch.no_grad(), autocast:
        logps = forward_logps(model, batch)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    assert logits.dtype == torch.bfloat16 and logps.dtype == torch.float32
    # The same bf16 logits, log-softmax and sum in float64: the trainer's numbers are these to float32 rounding.
    token = torch.log_softmax(logits[:, :-1].double(), -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    mask = batch.loss_mask[:, 1:].bool()
    exact = torch.where(mask, token, torch.zeros_like(token)).sum(-1)
    assert exact.abs().min() > 50  # long enough that a bf16 sum would be visibly off
    assert torch.allclose(logps.double(), exact, rtol=1e-6, atol=0)
    in_bf16 = torch.where(mask, token, torch.zeros_like(token)).bfloat16().sum(-1, dtype=torch.bfloat16)
    assert not torch.allclose(in_bf16.double(), exact, rtol=1e-6, atol=0)  # the check above can fail


def test_bfloat16_weights_with_float16_autocast_are_refused(tiny_dir, pairs_file, tmp_path):
    with pytest.raises(InputError, match="model.dtype bfloat16 with precision fp16"):
        make_config(tiny_dir, pairs_file, tmp_path / "run", precision="fp16", **{"model.dtype": "bfloat16"})
