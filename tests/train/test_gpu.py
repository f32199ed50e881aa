"""On a CUDA GPU (skipped without one; `bash benchmarks/gpu.sh` runs them): the flex-attention prefix-shared
forward equals the concatenated one, bf16 training agrees with float32 at step 0, and QLoRA trains.

Tolerances: the flex-attention kernel is a Triton template whose float32 dots may run in TF32 (10-bit
significand) on Ampere and later, so log-probs and gradients are compared at 1e-3 instead of the CPU tests'
1e-5; the bf16 step-0 tolerances are test_bf16.py's.
"""

from __future__ import annotations

import json

import pytest
import torch

from prefgate.lm.prefix import prefix_shared_logps, supports_prefix_sharing
from prefgate.train.batches import TokenizedData, collate
from prefgate.train.loop import train
from prefgate.train.step import forward_logps
from tests.lm.test_prefix import PAD, pairs, tiny
from tests.train.conftest import make_config
from tests.train.test_bf16 import LOSS_TOLERANCE

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bash benchmarks/gpu.sh)")]
GPU_TOLERANCE = 1e-3


def _grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("pack_tokens", [None, 64])
def test_flex_attention_prefix_shared_forward_equals_the_concatenated_one(pack_tokens):
    sdpa, flex = tiny("llama").cuda(), tiny("llama", attn="flex_attention").cuda()  # the same seed: same weights
    ok, reason = supports_prefix_sharing(flex)
    assert ok, reason
    rows = pairs(seed=3)
    expected = forward_logps(sdpa, collate(TokenizedData(rows, None, 0, 0), list(range(len(rows))), pad_id=PAD)
                             .to("cuda"))
    got = prefix_shared_logps(flex, rows, pad_id=PAD, pack_tokens=pack_tokens)
    assert got.dtype == torch.float32
    assert torch.allclose(got, expected, rtol=0, atol=GPU_TOLERANCE), (got - expected).abs().max()
    expected.sum().backward()
    got.sum().backward()
    a, b = _grads(sdpa), _grads(flex)
    assert set(a) == set(b)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < GPU_TOLERANCE


def _losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_bf16_training_on_the_gpu_agrees_with_float32_at_step_0(tiny_dir, ref_dir, pairs_file, tmp_path):
    common = {"max_steps": 3, "memory_probe": True, "reference.strategy": "model", "reference.model": str(ref_dir)}
    fp32 = train(make_config(tiny_dir, pairs_file, tmp_path / "fp32", **common), show_progress=False)
    bf16 = train(make_config(tiny_dir, pairs_file, tmp_path / "bf16", precision="bf16", pack_tokens=64,
                             **{"model.dtype": "bfloat16", "model.attn_implementation": "flex_attention"}, **common),
                 show_progress=False)
    assert fp32.status == bf16.status == "completed"
    manifest = json.loads((tmp_path / "bf16" / "manifest.json").read_text())
    assert manifest["memory_probe"]["memory_kind"] == "cuda_max_allocated"
    assert manifest["forward"]["mode"] == "prefix_shared" and manifest["forward"]["pack_tokens"] == 64
    assert abs(_losses(bf16.run_dir)[0] - _losses(fp32.run_dir)[0]) < LOSS_TOLERANCE


def test_qlora_trains_on_the_gpu(tiny_dir, pairs_file, tmp_path):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (benchmarks/gpu.sh tries to install it)")
    result = train(make_config(tiny_dir, pairs_file, tmp_path / "run", max_steps=3,
                               lora={"r": 4, "load_in_4bit": True}), show_progress=False)
    assert result.status == "completed"
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["reference"]["kind"] == "adapter-disabled"
    assert all(torch.isfinite(torch.tensor(x)) for x in _losses(result.run_dir))
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()
