"""A run never reports "completed" on non-finite weights, keeps a checkpoint it has checked when it stops, and
survives a disk that fills up while it writes one (issue 18)."""

from __future__ import annotations

import errno
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import prefgate.train.checkpoint as ckpt
import prefgate.train.loop as loop
from prefgate.cli import app
from prefgate.train.loop import train
from tests.train.conftest import losses, make_config


def _config_file(tmp_path, cfg):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg.model_dump(mode="json")))
    return path


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def _assert_bit_identical(a, b) -> None:
    wa, wb = _weights(a), _weights(b)
    assert set(wa) == set(wb) and all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ"
    assert losses(a) == losses(b)


def _poison_weights_from(monkeypatch, from_step: int) -> None:
    """From optimizer step `from_step` on, one weight tensor is NaN after the step (an lr that blew up)."""
    real = loop._optimizer_step

    def poisoned(run, step):
        out = real(run, step)
        if step >= from_step:
            with torch.no_grad():
                next(run.unwrapped.parameters()).fill_(float("nan"))
        return out

    monkeypatch.setattr(loop, "_optimizer_step", poisoned)


def _poison_forward(monkeypatch, call: int) -> None:
    """The `call`-th policy forward with gradients returns NaN log-probs (the NaN guard trips before the step)."""
    import prefgate.train.step as step_module

    calls = {"n": 0}
    real = step_module.Forward.logps

    def poisoned(self, model, batch):
        out = real(self, model, batch)
        if not torch.is_grad_enabled():
            return out
        calls["n"] += 1
        return out * float("nan") if calls["n"] == call else out

    monkeypatch.setattr(step_module.Forward, "logps", poisoned)


def test_nonfinite_weights_after_the_last_step_exit_1_and_nothing_is_saved(tiny_dir, pairs_file, tmp_path, runner,
                                                                           monkeypatch):
    _poison_weights_from(monkeypatch, 3)  # the last step: no later loss would trip the NaN guard
    cfg = _config_file(tmp_path, make_config(tiny_dir, pairs_file, tmp_path / "run", max_steps=3))
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if "not finite" in line]
    assert lines[0].startswith("stopped: step 3: the weights are not finite after the optimizer step (1 of ")
    assert "first model.embed_tokens.weight" in lines[0] and "Traceback" not in result.stderr
    assert "trained" not in result.stdout and "no checkpoint kept" in result.stdout
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "aborted" and manifest["steps"] == 3 and "not finite" in manifest["reason"]
    assert manifest["artifacts"] == {} and not (tmp_path / "run" / "model").exists()
    assert manifest["checkpoint"]["path"] is None and "not finite" in manifest["checkpoint"]["why_none"]


def test_a_nonfinite_model_is_never_checkpointed(tiny_dir, pairs_file, tmp_path, monkeypatch):
    _poison_weights_from(monkeypatch, 3)
    result = train(make_config(tiny_dir, pairs_file, tmp_path / "run", max_steps=4, checkpoint_every=1,
                               checkpoint_keep=5), show_progress=False)
    assert result.status == "aborted" and result.steps == 3 and "not finite" in result.reason
    assert [p.name for p in sorted((tmp_path / "run" / "checkpoints").iterdir())] == ["step-0000001",
                                                                                       "step-0000002"]
    kept = result.checkpoint
    assert kept["path"] == "checkpoints/step-0000002" and kept["step"] == 2 and not kept["written_at_stop"]
    assert kept["checked"] == "trainable weights: all 21 tensors finite"


def test_nan_guard_writes_the_checkpoint_it_promises_and_resume_is_bit_identical(tiny_dir, pairs_file, tmp_path,
                                                                                 runner, monkeypatch):
    """No `checkpoint_every`: the NaN guard at step 4 writes step 3 (the weights in memory, checked finite,
    with the RNG state as step 3 ended), and resuming from it gives the uninterrupted run bit for bit."""
    settings = {"max_steps": 8}
    whole = train(make_config(tiny_dir, pairs_file, tmp_path / "whole", **settings), show_progress=False)
    with monkeypatch.context() as patch:
        _poison_forward(patch, 4)
        cfg = _config_file(tmp_path, make_config(tiny_dir, pairs_file, tmp_path / "run", **settings))
        result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 1
    assert "stopped: step 4: non-finite loss (nan); the run stopped before the optimizer step, so the weights are " \
           "those after step 3" in result.stderr
    assert "checkpoint kept: checkpoints/step-0000003 (step 3, written at the stop; trainable weights: all 21 " \
           "tensors finite)" in result.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "aborted" and manifest["checkpoint"]["written_at_stop"]
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-0000003"]

    resumed = train(make_config(tiny_dir, pairs_file, tmp_path / "run", **settings), resume=True,
                    show_progress=False)
    assert resumed.status == "completed" and resumed.steps == 8
    _assert_bit_identical(whole.run_dir, resumed.run_dir)


def test_nan_guard_at_step_1_keeps_nothing_and_says_so(tiny_dir, pairs_file, tmp_path, monkeypatch):
    _poison_forward(monkeypatch, 1)
    result = train(make_config(tiny_dir, pairs_file, tmp_path / "run"), show_progress=False)
    assert result.status == "aborted" and result.checkpoint["path"] is None
    assert result.checkpoint["why_none"] == "the run stopped before its first optimizer step finished"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_disk_full_while_checkpointing_exits_1_leaves_nothing_partial_and_resumes_bit_identical(
        tiny_dir, pairs_file, tmp_path, runner, monkeypatch):
    settings = {"max_steps": 12, "checkpoint_every": 3, "memory_probe": True, "optim.schedule": "cosine",
                "optim.warmup_steps": 2}
    whole = train(make_config(tiny_dir, pairs_file, tmp_path / "whole", **settings), show_progress=False)

    real_save = ckpt.save_file
    calls = {"n": 0}

    def full_disk(tensors, filename, *args, **kwargs):  # the second checkpoint (step 6) hits a full disk
        calls["n"] += 1
        if calls["n"] == 2:
            with open(filename, "wb") as fh:
                fh.write(b"\0" * 100)  # a partly written file, as a real ENOSPC leaves
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real_save(tensors, filename, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(ckpt, "save_file", full_disk)
        cfg = _config_file(tmp_path, make_config(tiny_dir, pairs_file, tmp_path / "run", **settings))
        result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "No space left on device" in line]
    assert line.startswith("stopped: step 6: could not write checkpoint ")
    assert "No space left on device (ENOSPC); nothing partial was left on disk" in line and "--resume" in line
    root = tmp_path / "run" / "checkpoints"
    assert [p.name for p in root.iterdir()] == ["step-0000003"]  # no .tmp-step-0000006 left
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "aborted" and manifest["steps"] == 6 and "ENOSPC" in manifest["reason"]
    assert manifest["checkpoint"]["path"] == "checkpoints/step-0000003"
    assert not manifest["checkpoint"]["written_at_stop"]

    resumed = train(make_config(tiny_dir, pairs_file, tmp_path / "run", **settings), resume=True,
                    show_progress=False)
    assert resumed.status == "completed" and resumed.steps == 12
    _assert_bit_identical(whole.run_dir, resumed.run_dir)


def test_latest_finite_checkpoint_passes_over_a_blown_up_one(tmp_path):
    for step, value in ((1, 1.0), (2, float("nan"))):
        folder = tmp_path / "checkpoints" / f"step-{step:07d}"
        folder.mkdir(parents=True)
        save_file({"a": torch.ones(3), "b": torch.full((2,), value)}, str(folder / "trainable.safetensors"))
    path, n, passed = ckpt.latest_finite_checkpoint(tmp_path)
    assert path.name == "step-0000001" and n == 2
    assert passed == ["step-0000002: non-finite weights (tensor b)"]


def test_resume_passes_over_a_blown_up_checkpoint(tiny_dir, pairs_file, tmp_path, capsys):
    """A non-finite checkpoint (only an older prefgate could write one) is not resumed from."""
    train(make_config(tiny_dir, pairs_file, tmp_path / "run", max_steps=4, checkpoint_every=2), show_progress=False)
    newest = tmp_path / "run" / "checkpoints" / "step-0000004" / "trainable.safetensors"
    weights = load_file(str(newest))
    first = sorted(weights)[0]
    weights[first] = torch.full_like(weights[first], float("inf"))
    save_file(weights, str(newest))
    capsys.readouterr()
    resumed = train(make_config(tiny_dir, pairs_file, tmp_path / "run", max_steps=6, checkpoint_every=2),
                    resume=True, show_progress=False)
    err = capsys.readouterr().err
    assert f"not resuming from step-0000004: non-finite weights (tensor {first})" in err
    assert "resumed from" in err and "step-0000002 (step 2)" in err
    assert resumed.status == "completed" and len(losses(resumed.run_dir)) == 6


@pytest.mark.parametrize("code, fix", [(errno.ENOSPC, "free some space"), (errno.EACCES, "fix that")])
def test_a_refused_checkpoint_write_removes_its_temporary_folder(tiny_dir, tmp_path, monkeypatch, code, fix):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    def refuse(obj, path, *args, **kwargs):
        raise OSError(code, "refused", str(path))

    monkeypatch.setattr(ckpt.torch, "save", refuse)
    with pytest.raises(ckpt.CheckpointNotWritten, match=fix):
        ckpt.save_checkpoint(tmp_path, 7, state=ckpt.training_state(model, optimizer), scheduler=scheduler,
                             loop_state={}, keep=2)
    assert list((tmp_path / "checkpoints").iterdir()) == []
