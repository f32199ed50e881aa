"""Issue 16, part 1: the collapse monitor reads the chosen answer's shift after the first differing token (the
shift probe) by default; `on_collapse: stop` keeps the last checkpoint from before the signal crossed."""

from __future__ import annotations

import json

import pytest

from prefgate.cli import app
from prefgate.train.loop import train
from prefgate.train.monitors import CollapseMonitor
from tests.train.conftest import make_config, write_pairs

AFTER = "logps/chosen_shift_after_diff"


def test_the_window_counts_steps_and_readings_may_be_sparse():
    monitor = CollapseMonitor(-0.5, 4, signal="after_diff", start_step=0)
    assert monitor.update(2, {AFTER: -2.0}) is None  # 2 steps run: the window (4 steps) is not full yet
    assert monitor.update(3, {"logps/chosen_shift": -9.0}) is None  # no reading of this signal at step 3
    warning = monitor.update(4, {AFTER: -1.0})
    assert warning.startswith("step 4: the chosen log-probability is collapsing (running mean over the last 4 steps "
                              f"of {AFTER}") and "-1.500 nats/token < -0.5" in warning
    assert monitor.update(6, {AFTER: -1.0}) is None  # still below: warned once per crossing
    assert monitor.update(8, {AFTER: 0.5}) is None and monitor.last_good_step == 8  # readings 6 and 8: -0.25
    assert monitor.update(12, {AFTER: -0.6}) is not None  # only step 12 is in the window (9..12)
    assert [f["step"] for f in monitor.fired] == [4, 12] and monitor.last_good_step == 8


def test_a_resumed_monitor_waits_a_full_window_again():
    monitor = CollapseMonitor(-0.5, 3, signal="mean", start_step=10)
    assert monitor.update(11, {"logps/chosen_shift": -5.0}) is None
    assert monitor.update(12, {"logps/chosen_shift": -5.0}) is None
    assert monitor.update(13, {"logps/chosen_shift": -5.0}) is not None


@pytest.fixture(scope="module")
def low_contrast(tmp_path_factory, tiny_dir):
    """Answers that differ in one digit near the end; SFT'd on the chosen answers (the trainer tests' setting)."""
    tmp = tmp_path_factory.mktemp("watch")
    rows = [{"prompt": f"Q{i}: say a number\nA:", "chosen": f" {i}1 {i}1 {i}1.", "rejected": f" {i}1 {i}1 {i}2."}
            for i in range(12)]
    data = write_pairs(tmp / "low.jsonl", rows)
    sft = train(make_config(tiny_dir, data, tmp / "sft", max_steps=40, **{"optim.lr": 0.01, "loss.type": "sft"}),
                show_progress=False)
    return sft.run_dir / "model", data


def test_dpo_trips_the_token_level_monitor_and_its_model_is_kept(low_contrast, tmp_path):
    model, data = low_contrast
    result = train(make_config(model, data, tmp_path / "dpo", max_steps=12, **{"optim.lr": 0.01}), show_progress=False)
    monitor = json.loads((result.run_dir / "manifest.json").read_text())["monitor"]
    assert monitor["signal"] == "after_diff" and monitor["metric"] == AFTER and monitor["probe"]["every"] == 1
    assert monitor["fired"] and monitor["fired"][0]["value"] < -0.5
    step = monitor["fired"][0]["step"]
    snapshot = result.run_dir / monitor["fired"][0]["snapshot"]
    assert json.loads((snapshot / "snapshot.json").read_text())["step"] == step
    assert (snapshot / "model.safetensors").is_file() and (snapshot / "tokenizer_config.json").is_file()
    # the whole-answer mean stays available: logged every step, and the signal on request
    mean = train(make_config(model, data, tmp_path / "mean", max_steps=12,
                             **{"optim.lr": 0.01, "monitor.signal": "mean"}), show_progress=False)
    described = json.loads((mean.run_dir / "manifest.json").read_text())["monitor"]
    assert described["metric"] == "logps/chosen_shift" and described["probe"] is None


def test_dpop_does_not_trip_it(low_contrast, tmp_path):
    model, data = low_contrast
    result = train(make_config(model, data, tmp_path / "dpop", max_steps=12, **{"optim.lr": 0.01, "loss.type": "dpop"}),
                   show_progress=False)
    assert json.loads((result.run_dir / "manifest.json").read_text())["monitor"]["fired"] == []


def test_stop_keeps_the_last_checkpoint_before_the_signal_crossed_and_says_which(low_contrast, tmp_path, runner):
    model, data = low_contrast
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(make_config(model, data, tmp_path / "stop", max_steps=30, **{
        "optim.lr": 0.01, "monitor.on_collapse": "stop", "monitor.collapse_window": 6}).model_dump(mode="json")))
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 1
    manifest = json.loads((tmp_path / "stop" / "manifest.json").read_text())
    crossed = manifest["monitor"]["fired"][0]["step"]
    kept = manifest["checkpoint"]
    assert manifest["steps"] == crossed and kept["step"] < crossed and not kept["written_at_stop"]
    assert kept["before_collapse"] == f"the last checkpoint before the collapse signal crossed at step {crossed}"
    on_disk = sorted(p.name for p in (tmp_path / "stop" / "checkpoints").iterdir())
    assert on_disk[-1] == kept["path"].split("/")[-1]  # nothing from the crossing step or after it
    stderr = " ".join(result.stderr.split())
    assert f"checkpoint kept: {kept['path']} (step {kept['step']}" in stderr
    assert f"is the last checkpoint before the collapse signal crossed at step {crossed}" in stderr
