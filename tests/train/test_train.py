"""The training loop on a tiny Llama: invariances, monitors, saved artifacts, reference cache, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from prefgate.cli import app
from prefgate.train.loop import train
from tests.train.conftest import arithmetic_pairs, losses, make_config, write_pairs


def test_batch_4x1_equals_batch_1x4_with_accumulation(tiny_dir, pairs_file, tmp_path):
    a = train(make_config(tiny_dir, pairs_file, tmp_path / "a", batch_size=4, grad_accumulation=1), show_progress=False)
    b = train(make_config(tiny_dir, pairs_file, tmp_path / "b", batch_size=1, grad_accumulation=4), show_progress=False)
    la, lb = losses(a.run_dir), losses(b.run_dir)
    assert len(la) == len(lb) == 5
    assert max(abs(x - y) for x, y in zip(la, lb, strict=True)) < 1e-5
    assert max(abs(x - 0.6931471805599453) for x in la) > 1e-3  # it learns: not stuck at log 2
    wa = load_file(str(a.run_dir / "model" / "model.safetensors"))
    wb = load_file(str(b.run_dir / "model" / "model.safetensors"))
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5


def test_gradient_checkpointing_on_and_off_agree(tiny_dir, pairs_file, tmp_path):
    off = train(make_config(tiny_dir, pairs_file, tmp_path / "off"), show_progress=False)
    on = train(make_config(tiny_dir, pairs_file, tmp_path / "on", **{"model.gradient_checkpointing": True}),
               show_progress=False)
    assert max(abs(x - y) for x, y in zip(losses(off.run_dir), losses(on.run_dir), strict=True)) < 1e-5
    said = [json.loads((r.run_dir / "manifest.json").read_text())["checkpointing"] for r in (off, on)]
    assert said[0]["mode"] == "off" and said[0]["why"].startswith("auto: hidden size")  # the tiny model: auto is off
    assert said[1] == {"mode": "full", "why": "as configured"}  # `true` reads as full


def test_run_folder_manifest_and_metrics(tiny_dir, pairs_file, tmp_path):
    result = train(make_config(tiny_dir, pairs_file, tmp_path / "run", checkpoint_every=2, memory_probe=True),
                   show_progress=False)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["kind"] == "run" and manifest["steps"] == 5
    assert manifest["loss"] == {"type": "dpo", "beta": 0.1}
    assert manifest["datasets"]["train"]["n_records"] == 20 and len(manifest["datasets"]["train"]["fingerprint"]) == 64
    assert set(manifest["artifacts"]) >= {"model/model.safetensors", "model/config.json"}
    assert manifest["memory_probe"]["peak_memory_mb"] > 0
    line = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    for name in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                 "logps/chosen", "logps/rejected", "logps/chosen_shift", "kl/estimate", "grad_norm", "lr",
                 "pairs_per_s", "tokens_per_s"):
        assert name in line, name
    assert line["loss"] == pytest.approx(0.6931471805599453, abs=1e-6)  # policy == reference at step 1
    assert [p.name for p in sorted((result.run_dir / "checkpoints").iterdir())] == ["step-0000004", "step-0000005"]


def test_output_dir_with_a_run_needs_resume(tiny_dir, pairs_file, tmp_path, runner):
    train(make_config(tiny_dir, pairs_file, tmp_path / "run", max_steps=1), show_progress=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(make_config(tiny_dir, pairs_file, tmp_path / "run").model_dump(mode="json")))
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2 and "holds a previous run; pass --resume" in result.stderr


def test_nan_guard_stops_with_exit_1_and_keeps_the_last_good_checkpoint(tiny_dir, pairs_file, tmp_path, runner,
                                                                        monkeypatch):
    import prefgate.train.step as step_module

    calls = {"n": 0}
    real = step_module.Forward.logps

    def poisoned(self, model, batch):  # the 4th policy forward (with gradients) returns a non-finite value
        out = real(self, model, batch)
        if not torch.is_grad_enabled():  # a reference or evaluation pass
            return out
        calls["n"] += 1
        return out * float("nan") if calls["n"] == 4 else out

    monkeypatch.setattr(step_module.Forward, "logps", poisoned)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(make_config(tiny_dir, pairs_file, tmp_path / "run", checkpoint_every=1,
                                          checkpoint_keep=5).model_dump(mode="json")))
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 1
    assert "step 4: non-finite loss" in result.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "aborted" and manifest["steps"] == 4
    last = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    assert last.name == "step-0000003"
    assert all(torch.isfinite(t).all() for t in load_file(str(last / "trainable.safetensors")).values())


def test_huge_learning_rate_trips_the_nan_guard(tiny_dir, pairs_file, tmp_path):
    cfg = make_config(tiny_dir, pairs_file, tmp_path / "run", max_steps=40, checkpoint_every=1,
                      **{"optim.lr": 1e30, "optim.max_grad_norm": None})
    result = train(cfg, show_progress=False)
    assert result.status == "aborted" and "non-finite" in result.reason
    last = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    assert all(torch.isfinite(t).all() for t in load_file(str(last / "trainable.safetensors")).values())


def _shifts(run_dir) -> list[float]:
    return [json.loads(line)["logps/chosen_shift"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def low_contrast_sft(tmp_path_factory, tiny_dir):
    """An SFT'd tiny model and low-contrast pairs (answers differ in one digit): the setting in which DPO
    lowers the likelihood of the preferred answer (Pal et al. 2024)."""
    tmp = tmp_path_factory.mktemp("collapse")
    rows = [{"prompt": f"Q{i}: say a number\nA:", "chosen": f" {i}1 {i}1 {i}1.", "rejected": f" {i}1 {i}1 {i}2."}
            for i in range(12)]
    data = write_pairs(tmp / "low.jsonl", rows)
    sft = train(make_config(tiny_dir, data, tmp / "sft", max_steps=40, **{"optim.lr": 0.01, "loss.type": "sft"}),
                show_progress=False)
    return sft.run_dir / "model", data


def test_collapse_monitor_warns_on_low_contrast_dpo_and_dpop_avoids_it(low_contrast_sft, tmp_path, capsys):
    model, data = low_contrast_sft
    dpo = train(make_config(model, data, tmp_path / "dpo", max_steps=12, **{"optim.lr": 0.01}), show_progress=False)
    assert dpo.status == "completed" and min(_shifts(dpo.run_dir)) < -1.0
    assert "the chosen log-probability is collapsing" in capsys.readouterr().err
    dpop = train(make_config(model, data, tmp_path / "dpop", max_steps=12, **{"optim.lr": 0.01, "loss.type": "dpop"}),
                 show_progress=False)
    assert sum(_shifts(dpop.run_dir)) / 12 > sum(_shifts(dpo.run_dir)) / 12 + 0.5


def test_collapse_monitor_can_stop_the_run(low_contrast_sft, tmp_path, runner):
    model, data = low_contrast_sft
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(make_config(model, data, tmp_path / "stop", max_steps=30, checkpoint_every=1, **{
        "optim.lr": 0.01, "monitor.on_collapse": "stop"}).model_dump(mode="json")))
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 1
    assert "chosen log-probability is collapsing" in result.stderr and "loss.type: dpop" in result.stderr
    manifest = json.loads((tmp_path / "stop" / "manifest.json").read_text())
    assert manifest["status"] == "aborted" and manifest["steps"] < 30
    assert (tmp_path / "stop" / "checkpoints").exists()


def test_lora_adapter_reloads_with_peft_and_reproduces_logits(tiny_dir, pairs_file, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = make_config(tiny_dir, pairs_file, tmp_path / "lora", **{"lora.r": 4, "optim.lr": 0.05, "lora.dropout": 0.1})
    result = train(cfg, show_progress=False)
    said = " ".join(capsys.readouterr().err.split())
    assert "warning: lora.dropout 0.1 has no effect: the policy trains with dropout off" in said  # not silent
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir),
                                         str(result.run_dir / "adapter"))
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    ids = torch.tensor([[1, 300, 33, 228, 79, 80, 81]])
    with torch.no_grad():
        trained_logits = reloaded(input_ids=ids).logits
        base_logits = base(input_ids=ids).logits
    assert not torch.allclose(trained_logits, base_logits, atol=1e-4)  # the adapter learned something
    merged_dir = tmp_path / "merged"
    from prefgate.lm.load import merge_adapter

    merge_adapter(result.run_dir, merged_dir)
    with torch.no_grad():
        merged_logits = AutoModelForCausalLM.from_pretrained(merged_dir)(input_ids=ids).logits
    assert torch.allclose(merged_logits, trained_logits, atol=1e-5)


def test_precomputed_reference_equals_live_and_is_invalidated(tiny_dir, pairs_file, tmp_path):
    live = train(make_config(tiny_dir, pairs_file, tmp_path / "live", **{"reference.strategy": "model",
                                                                         "reference.model": str(tiny_dir)}),
                 show_progress=False)
    cache = tmp_path / "cache"
    kwargs = {"reference.strategy": "precomputed", "reference.cache_dir": str(cache)}
    first = train(make_config(tiny_dir, pairs_file, tmp_path / "pre", **kwargs), show_progress=False)
    assert max(abs(x - y) for x, y in zip(losses(live.run_dir), losses(first.run_dir), strict=True)) < 1e-6
    manifest = json.loads((first.run_dir / "manifest.json").read_text())
    assert manifest["reference"]["cache"]["train"]["reused"] is False
    again = train(make_config(tiny_dir, pairs_file, tmp_path / "again", **kwargs), show_progress=False)
    assert json.loads((again.run_dir / "manifest.json").read_text())["reference"]["cache"]["train"]["reused"] is True
    assert len(list(cache.glob("*.safetensors"))) == 1
    other_length = train(make_config(tiny_dir, pairs_file, tmp_path / "len", **kwargs, **{"data.max_length": 32}),
                         show_progress=False)
    reused = json.loads((other_length.run_dir / "manifest.json").read_text())["reference"]["cache"]["train"]["reused"]
    assert reused is False
    other_data = write_pairs(tmp_path / "other.jsonl", arithmetic_pairs(21)[1:])
    train(make_config(tiny_dir, other_data, tmp_path / "data", **kwargs), show_progress=False)
    assert len(list(cache.glob("*.safetensors"))) == 3


@pytest.mark.parametrize("loss", ["dpop", "ipo", "cdpo", "robust", "hinge", "simpo", "orpo", "rdpo", "rpo", "sft"])
def test_every_paired_loss_trains(tiny_dir, pairs_file, tmp_path, loss):
    result = train(make_config(tiny_dir, pairs_file, tmp_path / loss, max_steps=2, **{"loss.type": loss}),
                   show_progress=False)
    assert result.status == "completed" and all(map(lambda v: v == v, losses(result.run_dir)))


def test_kto_and_sft_on_unpaired_data(tiny_dir, tmp_path):
    rows = [{"prompt": f"Q: {i} plus 1?\nA:", "completion": f" {i + 1}." if i % 2 else f" {i + 2}.",
             "label": bool(i % 2)} for i in range(12)]
    data = write_pairs(tmp_path / "kto.jsonl", rows)
    kto = train(make_config(tiny_dir, data, tmp_path / "kto", max_steps=3, **{"loss.type": "kto"}), show_progress=False)
    assert kto.status == "completed" and "kl/estimate" in kto.final_metrics
    sft = train(make_config(tiny_dir, data, tmp_path / "sft", max_steps=2, batch_size=2, **{"loss.type": "sft"}),
                show_progress=False)
    assert sft.status == "completed"


def test_diagnose_every_logs_the_token_level_shift(tiny_dir, pairs_file, tmp_path):
    result = train(make_config(tiny_dir, pairs_file, tmp_path / "diag", diagnose_every=2, diagnose_pairs=4),
                   show_progress=False)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in rows if "logps/chosen_shift_after_diff" in r or "logps/chosen_shift_at_diff" in r]
    assert logged == [2, 4, 5]


def test_diagnose_every_is_refused_for_single_completion_losses(tiny_dir, pairs_file, tmp_path):
    from prefgate.errors import InputError

    with pytest.raises(InputError, match="diagnose_every needs paired rows"):
        make_config(tiny_dir, pairs_file, tmp_path / "x", diagnose_every=2, **{"loss.type": "sft"})
