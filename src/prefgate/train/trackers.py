"""Experiment trackers (`trackers:` in the train config, through accelerate's `log_with`): what they receive
and where they write.

- `tracker_params(config)`: the resolved train config as flat `section.key` hyperparameters of type bool, int,
  float or str. TensorBoard's `add_hparams` refuses a nested dict, None or a list (the crash before step 1
  when the whole config was passed); MLflow keeps every param as a string and would store a nested section as
  one dict repr. So every tracker gets the same flat, typed dict: None is "null", a list or a dict its JSON.
- `run_name(config)`: `<run folder> (<loss>, <model>)`, e.g. `dpo-1 (dpo, Qwen/Qwen2.5-0.5B)`, the MLflow run's
  name (accelerate would leave MLflow to make one up).
- `log_with(config)`: the list for `Accelerator(log_with=...)`: the tracker names, with `mlflow` replaced by a
  `RunFolderMLflow`, which keeps MLflow's store in the run folder unless the user chose one
  (`MLFLOW_TRACKING_URI`, or `mlflow.set_tracking_uri` in the same process). MLflow 3's own default is
  `sqlite:///mlflow.db` in the current directory (`./mlruns` where that already holds experiments), with
  artifacts under `./mlruns`: files left wherever `prefgate train` happened to run, unasked. The run gets the
  same SQLite store as `RUN/mlflow.db`, artifacts in `RUN/mlartifacts/` (MLflow 3 refuses a new file store
  unless `MLFLOW_ALLOW_FILE_STORE` is set; SQLite needs `sqlalchemy` and `alembic`, which `pip install mlflow`
  brings): `mlflow ui --backend-store-uri sqlite:///RUN/mlflow.db` shows it.

TensorBoard writes under `RUN/prefgate/` (accelerate's folder for the project "prefgate"): the per-step scalars
beside metrics.jsonl, and the hyperparameters (`tracker_params`) in a timestamped sub-folder with an
`hparams.yml`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from accelerate.tracking import MLflowTracker, on_main_process

from prefgate.config import TrainConfig

PROJECT = "prefgate"  # accelerate's project name: TensorBoard's folder in the run, MLflow's experiment

Param = bool | int | float | str


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Param]:
    """`{"loss": {"type": "dpo", "beta": 0.1}, "lora": None}` -> `{"loss.type": "dpo", "loss.beta": 0.1,
    "lora": "null"}`: nested sections joined with dots; None is "null", a list or an empty dict its JSON.

    >>> flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": {}})
    {'a.b': 1, 'a.c': '[1, 2]', 'd': 'null', 'e': '{}'}
    """
    out: dict[str, Param] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value)
    return out


def tracker_params(config: TrainConfig) -> dict[str, Param]:
    """The resolved config as flat hyperparameters (see the module docstring), every default filled in: the
    loss's own (`loss.beta` when the config leaves it out) too, as the manifest records them."""
    values = json.loads(config.model_dump_json())
    values["loss"] = {"type": config.loss.type.value, **config.loss.hyperparameters}
    return flatten(values)


def run_name(config: TrainConfig) -> str:
    """`<run folder> (<loss>, <model>)`; a local model path is shortened to its folder name."""
    model = config.model.name_or_path.rstrip("/")
    if Path(model).exists():
        model = Path(model).name
    return f"{Path(config.output_dir).resolve().name} ({config.loss.type.value}, {model})"


class RunFolderMLflow(MLflowTracker):
    """accelerate's MLflow tracker with a run name, tags, and its store in the run folder unless the user set a
    tracking URI; the URI it set is unset again when the run ends, so a Python caller's MLflow is as it was."""

    def __init__(self, config: TrainConfig):
        run_dir = Path(config.output_dir).resolve()
        super().__init__(experiment_name=PROJECT, run_name=run_name(config),
                         tags={"prefgate.run_dir": str(run_dir), "prefgate.loss": config.loss.type.value,
                               "prefgate.model": config.model.name_or_path})
        self.store = f"sqlite:///{run_dir / 'mlflow.db'}"
        self.logging_dir = str(run_dir / "mlartifacts")  # the experiment's artifact location, if it creates one
        self.owns_uri = False

    def uri_to_set(self) -> str | None:
        """The run folder's store, or None when the user chose one (MLFLOW_TRACKING_URI or set_tracking_uri)."""
        import mlflow

        return None if mlflow.is_tracking_uri_set() else self.store

    @on_main_process
    def start(self):
        import mlflow

        uri = self.uri_to_set()
        if uri is not None:
            mlflow.set_tracking_uri(uri)
            self.owns_uri = True
        super().start()

    @on_main_process
    def finish(self):
        import mlflow

        super().finish()
        if self.owns_uri:
            mlflow.set_tracking_uri(None)  # also unsets the MLFLOW_TRACKING_URI that set_tracking_uri exported
            self.owns_uri = False


def log_with(config: TrainConfig) -> list[Any] | None:
    """What `Accelerator(log_with=...)` gets: None without trackers."""
    if not config.trackers:
        return None
    return [RunFolderMLflow(config) if name == "mlflow" else name for name in config.trackers]
