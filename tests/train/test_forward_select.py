"""`forward: auto | concatenated | prefix_shared` through the real training loop: the same run either way,
the reference pass and the precomputed cache on the policy's path, a logged fallback, clear config errors."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from prefgate.cli import app
from prefgate.train.loop import train
from tests.train.conftest import losses, make_config


def _manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def _metric(run_dir, name: str) -> list[float]:
    return [json.loads(line)[name] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _close(a: list[float], b: list[float], tol: float) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) < tol


@pytest.mark.parametrize("extra", [{}, {"pack_tokens": 64}], ids=["one-pair-a-row", "packed"])
def test_prefix_shared_run_equals_the_concatenated_run(tiny_dir, ref_dir, pairs_file, tmp_path, extra):
    """Same losses, log-probs and final weights within float32 rounding, with another model as the reference
    so the step-1 loss is not log 2."""
    common = {"reference.model": str(ref_dir), "reference.strategy": "model"}
    concat = train(make_config(tiny_dir, pairs_file, tmp_path / "c", forward="concatenated", **common),
                   show_progress=False)
    shared = train(make_config(tiny_dir, pairs_file, tmp_path / "p", forward="prefix_shared", **common, **extra),
                   show_progress=False)
    assert abs(losses(concat.run_dir)[0] - 0.6931471805599453) > 1e-3
    assert _close(losses(concat.run_dir), losses(shared.run_dir), 1e-5)
    for name in ("logps/chosen", "logps/rejected", "rewards/margins"):
        assert _close(_metric(concat.run_dir, name), _metric(shared.run_dir, name), 1e-4), name
    wc = load_file(str(concat.run_dir / "model" / "model.safetensors"))
    wp = load_file(str(shared.run_dir / "model" / "model.safetensors"))
    # Adam divides by sqrt(v): on near-zero gradients float32 rounding of 1e-7 becomes a few 1e-6 of update per step
    # (lr 1e-3); 5 steps stay far below the 5e-3 the weights moved
    assert max(float((wc[k] - wp[k]).abs().max()) for k in wc) < 1e-4
    forward = _manifest(shared.run_dir)["forward"]
    assert forward["mode"] == "prefix_shared" and forward["pack_tokens"] == extra.get("pack_tokens")
    assert "sdpa" in forward["reason"]
    assert _manifest(shared.run_dir)["reference"]["forward"] == "prefix_shared"
    assert _manifest(concat.run_dir)["forward"]["mode"] == "concatenated"
    # throughput counts the data's tokens (concatenated layout), the same per step whichever forward ran
    per_step = [[t / p for t, p in zip(_metric(r, "tokens_per_s"), _metric(r, "pairs_per_s"), strict=True)]
                for r in (concat.run_dir, shared.run_dir)]
    assert _close(*per_step, 1e-6)


def test_auto_picks_prefix_sharing_and_lora_reference_uses_it(tiny_dir, pairs_file, tmp_path):
    lora = {"lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}}
    auto = train(make_config(tiny_dir, pairs_file, tmp_path / "a", **lora), show_progress=False)
    concat = train(make_config(tiny_dir, pairs_file, tmp_path / "c", forward="concatenated", **lora),
                   show_progress=False)
    manifest = _manifest(auto.run_dir)
    assert manifest["forward"]["mode"] == "prefix_shared"
    assert manifest["reference"]["kind"] == "adapter-disabled" and manifest["reference"]["forward"] == "prefix_shared"
    assert losses(auto.run_dir)[0] == pytest.approx(0.6931471805599453, abs=1e-6)  # adapters start at zero
    assert _close(losses(auto.run_dir), losses(concat.run_dir), 1e-5)


def test_precomputed_cache_is_computed_on_the_policy_path_and_keyed_by_it(tiny_dir, pairs_file, tmp_path):
    cache = tmp_path / "cache"
    pre = {"reference.strategy": "precomputed", "reference.cache_dir": str(cache)}
    live = train(make_config(tiny_dir, pairs_file, tmp_path / "live", forward="prefix_shared",
                             **{"reference.strategy": "model", "reference.model": str(tiny_dir)}), show_progress=False)
    shared = train(make_config(tiny_dir, pairs_file, tmp_path / "p", forward="prefix_shared", **pre),
                   show_progress=False)
    assert _close(losses(live.run_dir), losses(shared.run_dir), 1e-6)
    assert _manifest(shared.run_dir)["reference"]["forward"] == "prefix_shared"
    train(make_config(tiny_dir, pairs_file, tmp_path / "c", forward="concatenated", **pre), show_progress=False)
    assert len(list(cache.glob("*.safetensors"))) == 2  # one table per forward path
    again = train(make_config(tiny_dir, pairs_file, tmp_path / "p2", forward="prefix_shared", **pre),
                  show_progress=False)
    assert _manifest(again.run_dir)["reference"]["cache"]["train"]["reused"] is True


@pytest.fixture(scope="module")
def sliding_dir(tmp_path_factory, tiny_dir):
    """A tiny Mistral with sliding-window attention: it cannot take the prefix-shared mask."""
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_dir))
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=16,
                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    out = tmp_path_factory.mktemp("mistral")
    MistralForCausalLM(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def test_auto_falls_back_with_the_reason_logged_and_recorded(sliding_dir, pairs_file, tmp_path, runner):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(make_config(sliding_dir, pairs_file, tmp_path / "run", max_steps=2)
                              .model_dump(mode="json")))
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 0, result.stderr
    stderr = " ".join(result.stderr.split())
    assert "forward: concatenated forward (prefix sharing unavailable: sliding-window" in stderr
    forward = _manifest(tmp_path / "run")["forward"]
    assert forward["mode"] == "concatenated" and "sliding-window" in forward["reason"]


def test_prefix_shared_on_a_model_that_cannot_take_it_is_a_one_line_error(sliding_dir, pairs_file, tmp_path,
                                                                          runner):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(make_config(sliding_dir, pairs_file, tmp_path / "run", forward="prefix_shared")
                              .model_dump(mode="json")))
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2
    assert "forward" in result.stderr and "sliding-window" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run" / "manifest.json").exists()


def test_pack_tokens_with_the_concatenated_forward_is_a_config_error(tiny_dir, pairs_file, tmp_path, runner):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{name_or_path: {tiny_dir}}}\ndata: {{train: {pairs_file}}}\nforward: concatenated\n"
                   "pack_tokens: 512\n")
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2 and "pack_tokens packs the prefix-shared layout" in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model: {{name_or_path: {tiny_dir}}}\ndata: {{train: {pairs_file}}}\nforward: shared\n")
    result = runner.invoke(app, ["train", str(bad)])
    assert result.exit_code == 2 and "forward" in result.stderr and "prefix_shared" in result.stderr
