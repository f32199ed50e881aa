"""Trackers: flat typed hyperparameters, TensorBoard's event file read back with its own reader, MLflow's run
name, params and store (in the run folder, not the current directory), and a missing package as a config error."""

from __future__ import annotations

import json
import sys

import pytest

from prefgate.cli import app
from prefgate.config import load_train_config
from prefgate.errors import InputError
from prefgate.train.loop import train
from prefgate.train.trackers import flatten, run_name, tracker_params
from tests.train.conftest import make_config

STEPS = 3


def metrics_by_step(run_dir) -> dict[int, dict]:
    return {row["step"]: row for row in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def test_the_config_goes_to_trackers_flat_and_typed(tiny_dir, pairs_file, tmp_path):
    config = make_config(tiny_dir, pairs_file, tmp_path / "dpo-1", **{"loss.beta": 0.25})
    params = tracker_params(config)
    assert all(isinstance(v, (bool, int, float, str)) for v in params.values())  # what add_hparams accepts
    assert params["loss.type"] == "dpo" and params["loss.beta"] == 0.25 and params["optim.lr"] == 0.001
    assert params["model.name_or_path"] == str(tiny_dir) and params["batch_size"] == 4
    assert params["lora"] == "null" and params["max_steps"] == 5 and params["memory_probe"] is False
    assert params["trackers"] == "[]" and params["data.max_length"] == 64
    assert not any(isinstance(v, dict) for v in params.values()) and "loss" not in params
    assert flatten({"a": {"b": {"c": 1}}, "l": ["q", "v"], "e": {}}) == {"a.b.c": 1, "l": '["q", "v"]', "e": "{}"}
    assert run_name(config) == f"dpo-1 (dpo, {tiny_dir.name})"
    simpo = tracker_params(make_config(tiny_dir, pairs_file, tmp_path / "x", **{"loss.type": "simpo"}))
    assert (simpo["loss.type"], simpo["loss.beta"], simpo["loss.gamma"]) == ("simpo", 2.0, 1.0)  # defaults left out


@pytest.mark.slow  # three training steps with TensorBoard: 5-15 s on two busy cores
def test_tensorboard_event_file_holds_the_per_step_scalars_and_the_hparams(tiny_dir, pairs_file, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    result = train(make_config(tiny_dir, pairs_file, tmp_path / "run", max_steps=STEPS, trackers=["tensorboard"]),
                   show_progress=False)
    logs = result.run_dir / "prefgate"
    events = EventAccumulator(str(logs))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"loss", "rewards/margins", "rewards/accuracies", "logps/chosen", "kl/estimate", "lr"} <= set(scalars)
    logged = metrics_by_step(result.run_dir)
    loss = events.Scalars("loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx([logged[s]["loss"] for s in (1, 2, 3)], rel=1e-6)
    margins = [e.value for e in events.Scalars("rewards/margins")]
    assert margins == pytest.approx([logged[s]["rewards/margins"] for s in (1, 2, 3)], rel=1e-5, abs=1e-7)

    # add_hparams writes a timestamped sub-run; accelerate writes hparams.yml into another timestamped folder
    [hparams_run] = [p.parent for p in logs.glob("*/events.out.tfevents.*")]
    assert len(list(logs.glob("*/hparams.yml"))) == 1
    session = EventAccumulator(str(hparams_run))
    session.Reload()
    content = session.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert start.hparams["loss.type"].string_value == "dpo"
    assert start.hparams["loss.beta"].number_value == pytest.approx(0.1)
    assert start.hparams["lora"].string_value == "null" and start.hparams["memory_probe"].bool_value is False


def test_a_tracker_whose_package_is_missing_is_a_config_error(tiny_dir, pairs_file, tmp_path, monkeypatch, runner):
    for module in ("tensorboard", "tensorboardX"):
        monkeypatch.setitem(sys.modules, module, None)  # importlib.util.find_spec now says: not installed
    with pytest.raises(InputError) as err:
        make_config(tiny_dir, pairs_file, tmp_path / "run", trackers=["tensorboard"])
    assert str(err.value).endswith("field 'trackers': tracker 'tensorboard' needs the tensorboard package, which is "
                                   "not installed: pip install tensorboard")
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {{name_or_path: {tiny_dir}}}\ndata: {{train: {pairs_file}}}\ntrackers: [tensorboard]\n")
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {config}: field 'trackers': tracker 'tensorboard' needs the tensorboard package, which is not "
        "installed: pip install tensorboard"]
    assert not (tmp_path / "runs").exists()  # refused at config load, before anything ran
    assert load_train_config(None, model={"name_or_path": "m"}, data={"train": "t.jsonl"}).trackers == []
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # mlflow-skinny alone: no SQLite store for the run
    with pytest.raises(InputError, match="tracker 'mlflow' needs the sqlalchemy package, which is not installed: "
                                         "pip install mlflow"):
        make_config(tiny_dir, pairs_file, tmp_path / "run", trackers=["mlflow"])


@pytest.mark.needs("mlflow")
def test_mlflow_store_goes_to_the_run_folder_unless_the_user_chose_one(tiny_dir, pairs_file, tmp_path, monkeypatch):
    import mlflow

    from prefgate.train.trackers import RunFolderMLflow, log_with

    config = make_config(tiny_dir, pairs_file, tmp_path / "dpo-1", trackers=["tensorboard", "mlflow"])
    [board, tracker] = log_with(config)
    assert board == "tensorboard" and isinstance(tracker, RunFolderMLflow)
    assert (tracker.experiment_name, tracker.run_name) == ("prefgate", f"dpo-1 (dpo, {tiny_dir.name})")
    assert tracker.tags["prefgate.run_dir"] == str((tmp_path / "dpo-1").resolve())
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert not mlflow.is_tracking_uri_set()
    assert tracker.uri_to_set() == f"sqlite:///{(tmp_path / 'dpo-1').resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")  # the user's store wins
    assert tracker.uri_to_set() is None


@pytest.mark.slow  # MLflow builds its SQLite store by running its migrations: 5-15 s
@pytest.mark.needs("mlflow")
def test_mlflow_run_has_a_name_flat_params_and_no_files_in_the_cwd(tiny_dir, pairs_file, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = train(make_config(tiny_dir, pairs_file, tmp_path / "dpo-1", max_steps=STEPS, trackers=["mlflow"]),
                   show_progress=False)
    assert list(cwd.iterdir()) == []  # no mlflow.db, no mlruns/ where the command ran
    assert not mlflow.is_tracking_uri_set()  # the URI it set for the run is unset again
    assert sorted(p.name for p in result.run_dir.iterdir() if "ml" in p.name) == ["mlflow.db"]
    client = MlflowClient(tracking_uri=f"sqlite:///{result.run_dir.resolve() / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "prefgate"]
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == f"dpo-1 (dpo, {tiny_dir.name})"
    params = run.data.params
    assert params["loss.type"] == "dpo" and params["loss.beta"] == "0.1" and params["lora"] == "null"
    assert params["optim.lr"] == "0.001" and "loss" not in params
    assert run.data.tags["prefgate.run_dir"] == str(result.run_dir.resolve())
    history = client.get_metric_history(run.info.run_id, "loss")
    logged = metrics_by_step(result.run_dir)
    assert sorted((m.step, m.value) for m in history) == [(s, pytest.approx(logged[s]["loss"])) for s in (1, 2, 3)]
