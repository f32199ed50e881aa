"""`reference.strategy: auto`: which strategy it takes and why (log and manifest), that a precomputed reference
holds no model while the policy trains, the same step losses as a live reference, and resume by cache key."""

from __future__ import annotations

import gc
import json
import os
import shutil
import weakref

import pytest
import torch

from prefgate.cli import app
from prefgate.train import loop
from prefgate.train.loop import train
from prefgate.train.reference import CachedReference, choose
from tests.train.conftest import losses, make_config, write_pairs

LOG2 = 0.6931471805599453
LORA = {"lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}}


def _manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def _close(a: list[float], b: list[float], tol: float) -> bool:
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b, strict=True)) < tol


def _live(model_dir) -> dict:
    """The live reference a full fine-tuning run had before: a frozen model of the given weights, every step."""
    return {"reference.strategy": "model", "reference.model": str(model_dir)}


@pytest.mark.parametrize(("overrides", "strategy", "because"), [
    ({}, "precomputed", "full fine-tuning on a fixed dataset"),
    ({"loss.type": "kto"}, "precomputed", "full fine-tuning on a fixed dataset"),
    (LORA, "model", "LoRA, so the reference is the policy with its adapters disabled"),
    ({**LORA, "reference.model": "REF"}, "precomputed", "reference.model is a second model in memory"),
    ({"reference.model": "REF"}, "precomputed", "reference.model is a second model in memory"),
    ({"loss.type": "simpo"}, "none", "loss 'simpo' uses no reference"),
    ({"loss.type": "orpo"}, "none", "loss 'orpo' uses no reference"),
    ({"loss.type": "sft", "reference.strategy": "precomputed"}, "none", "loss 'sft' uses no reference"),
    ({"reference.strategy": "model", "reference.model": "REF"}, "model", "reference.strategy: model (configured)"),
    ({"reference.strategy": "precomputed"}, "precomputed", "reference.strategy: precomputed (configured)"),
], ids=["full", "kto", "lora", "lora-with-model", "full-with-model", "simpo", "orpo", "sft", "model", "precomputed"])
def test_auto_resolves_per_loss_lora_and_reference_model(tiny_dir, pairs_file, tmp_path, overrides, strategy,
                                                        because):
    settings = {k: (str(tmp_path) if v == "REF" else v) for k, v in overrides.items()}
    choice = choose(make_config(tiny_dir, pairs_file, tmp_path / "run", **settings))
    assert choice.strategy == strategy and because in choice.why


def _held_modules(root) -> list[torch.nn.Module]:
    """Every nn.Module reachable from `root` through object references (tensors are not followed)."""
    seen, found, todo = set(), [], [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (torch.Tensor, type)):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            found.append(obj)
            continue
        todo.extend(gc.get_referents(obj))
    return found


def _at_step_one(monkeypatch, check) -> dict:
    """Run `check(run)` at the first optimizer step of the next `train`; returns what it recorded."""
    seen: dict = {}
    real = loop._optimizer_step

    def first(run, step):
        if step == run.start_step + 1 and not seen:
            seen.update(check(run) or {"checked": True})
        return real(run, step)

    monkeypatch.setattr(loop, "_optimizer_step", first)
    return seen


def test_full_fine_tuning_auto_precomputes_with_the_policy_itself_and_holds_no_reference(tiny_dir, pairs_file,
                                                                                         tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    before = weakref.WeakSet(o for o in gc.get_objects() if issubclass(type(o), PreTrainedModel))

    def check(run):
        assert run.reference.strategy == "precomputed"
        assert isinstance(run.reference.train, CachedReference)
        assert _held_modules(run.reference) == []
        gc.collect()
        new = [o for o in gc.get_objects() if issubclass(type(o), PreTrainedModel) and o not in before]
        # LlamaForCausalLM holds a LlamaModel (also a PreTrainedModel): count weight storages, not objects
        return {"weights": {o.get_input_embeddings().weight.data_ptr() for o in new},
                "policy": run.unwrapped.get_input_embeddings().weight.data_ptr()}

    seen = _at_step_one(monkeypatch, check)
    auto = train(make_config(tiny_dir, pairs_file, tmp_path / "auto"), show_progress=False)
    assert seen["weights"] == {seen["policy"]}  # no copy of the policy was ever made
    manifest = _manifest(auto.run_dir)["reference"]
    assert manifest["strategy"] == "precomputed" and manifest["configured"] == "auto"
    assert "full fine-tuning on a fixed dataset" in manifest["why"]
    assert manifest["cache"]["train"]["reused"] is False and manifest["cache"]["train"]["rows"] == 20
    assert manifest["forward"] == "prefix_shared"
    monkeypatch.undo()
    live = train(make_config(tiny_dir, pairs_file, tmp_path / "live", **_live(tiny_dir)), show_progress=False)
    assert losses(auto.run_dir)[0] == pytest.approx(LOG2, abs=1e-6)
    assert _close(losses(auto.run_dir), losses(live.run_dir), 1e-6)
    assert _manifest(live.run_dir)["reference"]["strategy"] == "model"


def test_a_loaded_reference_model_is_freed_before_step_one_and_the_probe_read_it(tiny_dir, ref_dir, pairs_file,
                                                                                 tmp_path, monkeypatch):
    """auto with reference.model: the other model's log-probs are cached and the model itself is gone (its
    weakref is dead without the test collecting anything); the shift probe was scored on it before it went."""
    import prefgate.lm.load as load

    loaded = []
    real_load = load.load_causal_lm

    def recording(*args, **kwargs):
        model = real_load(*args, **kwargs)
        if kwargs.get("what") == "reference model":
            loaded.append(weakref.ref(model))
        return model

    monkeypatch.setattr(load, "load_causal_lm", recording)
    seen = _at_step_one(monkeypatch, lambda run: {"alive": [r() is not None for r in loaded],
                                                  "held": _held_modules(run.reference)})
    auto = train(make_config(tiny_dir, pairs_file, tmp_path / "auto", **{"reference.model": str(ref_dir)}),
                 show_progress=False)
    assert seen["alive"] == [False] and seen["held"] == []
    monkeypatch.undo()
    live = train(make_config(tiny_dir, pairs_file, tmp_path / "live", **_live(ref_dir)), show_progress=False)
    assert abs(losses(auto.run_dir)[0] - LOG2) > 1e-3  # another model: the step-1 loss is not log 2
    assert _close(losses(auto.run_dir), losses(live.run_dir), 1e-6)
    probe = [[json.loads(line)["logps/chosen_shift_after_diff"]
              for line in (r / "metrics.jsonl").read_text().splitlines()] for r in (auto.run_dir, live.run_dir)]
    assert _close(*probe, 1e-5)  # the collapse monitor's probe against the same reference model
    assert _manifest(auto.run_dir)["monitor"]["signal"] == "after_diff"


def test_kto_auto_equals_the_live_reference_with_its_kl_rows(tiny_dir, tmp_path):
    rows = [{"prompt": f"Q: {i} plus 1?\nA:", "completion": f" {i + 1}." if i % 2 else f" {i + 2}.",
             "label": bool(i % 2)} for i in range(12)]
    data = write_pairs(tmp_path / "kto.jsonl", rows)
    common = {"max_steps": 3, "optim.lr": 5e-3, "loss.type": "kto"}
    auto = train(make_config(tiny_dir, data, tmp_path / "auto", **common), show_progress=False)
    live = train(make_config(tiny_dir, data, tmp_path / "live", **common, **_live(tiny_dir)), show_progress=False)
    assert _manifest(auto.run_dir)["reference"]["cache"]["train"]["rows"] == 12
    assert _close(losses(auto.run_dir), losses(live.run_dir), 1e-6)
    kl = [[json.loads(line)["kl/estimate"] for line in (r / "metrics.jsonl").read_text().splitlines()]
          for r in (auto.run_dir, live.run_dir)]
    assert _close(*kl, 1e-6) and max(abs(x) for x in kl[0][1:]) > 0  # the KL rows moved, the same on both


def test_the_run_says_which_strategy_auto_took_and_why(tiny_dir, pairs_file, tmp_path, runner):
    expected = {"full": ({}, "reference: precomputed (auto: full fine-tuning on a fixed dataset"),
                "lora": (LORA, "reference: model (auto: LoRA, so the reference is the policy with its adapters "
                               "disabled"),
                "simpo": ({"loss.type": "simpo"}, "reference: none (loss 'simpo' uses no reference)")}
    stderr = {}
    for name, (overrides, line) in expected.items():
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(json.dumps(make_config(tiny_dir, pairs_file, tmp_path / name, max_steps=1, **overrides)
                                  .model_dump(mode="json")))
        result = runner.invoke(app, ["train", str(cfg)])
        assert result.exit_code == 0, result.stderr
        stderr[name] = " ".join(result.stderr.split())
        assert line in stderr[name], stderr[name]
        manifest = _manifest(tmp_path / name)["reference"]
        assert manifest["configured"] == "auto" and manifest["why"] in stderr[name]
    assert "train: computed 20 rows in" in stderr["full"]
    assert "no reference model is held during training" in stderr["full"]
    assert _manifest(tmp_path / "lora")["reference"]["kind"] == "adapter-disabled"
    assert _manifest(tmp_path / "simpo")["reference"]["strategy"] == "none"


def test_the_weights_dtype_is_part_of_the_key_and_float32_keys_are_unchanged(tiny_dir, pairs_file, tmp_path):
    """A table scored by bfloat16 weights is never reused by a float32 run (or the other way round); a float32
    run's key is the one it had before `model.dtype` existed."""
    from prefgate.train.reference import cache_key

    cache = {"reference.cache_dir": str(tmp_path / "cache")}
    fp32 = train(make_config(tiny_dir, pairs_file, tmp_path / "fp32", max_steps=1, **cache), show_progress=False)
    bf16 = train(make_config(tiny_dir, pairs_file, tmp_path / "bf16", max_steps=1, **cache,
                             **{"model.dtype": "bfloat16"}), show_progress=False)
    keys = [_manifest(r.run_dir)["reference"]["cache"]["train"] for r in (fp32, bf16)]
    assert keys[0]["key"] != keys[1]["key"] and keys[1]["reused"] is False
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    common = {"model": {"path": "m"}, "data_fingerprint": "d", "tokenizer": "t", "max_length": 8,
              "max_prompt_length": None, "loss_rows": "paired:2", "forward": "prefix_shared"}
    assert cache_key(**common) == cache_key(**common, weights="float32") != cache_key(**common, weights="bfloat16")


def test_resume_reuses_the_cache_by_key_and_recomputes_it_from_the_initial_weights(tiny_dir, pairs_file, tmp_path):
    """A resumed run looks the table up by the same key; with the cache gone it scores the initial weights again
    (the checkpoint is loaded only after the pass), so both resumed runs give the uninterrupted run's losses."""
    cache = {"reference.cache_dir": str(tmp_path / "cache")}
    whole = train(make_config(tiny_dir, pairs_file, tmp_path / "whole", **_live(tiny_dir)), show_progress=False)
    for name, drop_cache in (("kept", False), ("dropped", True)):
        run = tmp_path / name
        train(make_config(tiny_dir, pairs_file, run, max_steps=3, checkpoint_every=1, **cache), show_progress=False)
        if drop_cache:
            shutil.rmtree(tmp_path / "cache")
        resumed = train(make_config(tiny_dir, pairs_file, run, **cache), resume=True, show_progress=False)
        assert resumed.steps == 5
        assert _manifest(run)["reference"]["cache"]["train"]["reused"] is (not drop_cache)
        assert _close(losses(run), losses(whole.run_dir), 1e-6), name


def test_resume_warns_when_the_reference_key_changed(tiny_dir, pairs_file, tmp_path, runner):
    model = shutil.copytree(tiny_dir, tmp_path / "model")
    run = tmp_path / "run"
    train(make_config(model, pairs_file, run, max_steps=2, checkpoint_every=1), show_progress=False)
    weights = model / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the weights file looks rewritten
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(make_config(model, pairs_file, run, max_steps=3).model_dump(mode="json")))
    result = runner.invoke(app, ["train", str(cfg), "--resume"])
    assert result.exit_code == 0, result.stderr
    assert "the reference's cache key changed since the checkpoint (train " in " ".join(result.stderr.split())
