"""Every shipped example loads with the loader its kind uses: no config names something that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefgate.config import load_train_config
from prefgate.data import read_dataset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _loader(path: Path):
    if path.name.startswith("train_"):
        return load_train_config
    if path.name == "gate.yaml":
        from prefgate.gate import load_policy

        return load_policy
    if path.name == "audit.yaml":
        from prefgate.audit.policy import load_policy

        return load_policy
    if path.name.startswith("sweep"):
        return None  # loaded by tests/test_sweep.py
    raise AssertionError(f"{path.name}: no loader known; add it here")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_loads(path):
    loader = _loader(path)
    if loader is not None:
        loader(path)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("train_*.yaml")), ids=lambda p: p.name)
def test_train_examples_point_at_data_that_loads(path, monkeypatch):
    monkeypatch.chdir(EXAMPLES.parent)
    cfg = load_train_config(path)
    assert len(read_dataset(cfg.data.train)) > 0
    for key, value in cfg.loss.hyperparameters.items():
        assert key in cfg.loss.type.defaults and value is not None


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("train_*.yaml")), ids=lambda p: p.name)
def test_train_examples_data_holds_two_global_batches(path, monkeypatch):
    """`prefgate train examples/train_X.yaml` must train as shipped: fewer examples than one global batch
    (batch_size x grad_accumulation, one process) is an error (tests/e2e/test_docs_commands.py trains them)."""
    monkeypatch.chdir(EXAMPLES.parent)
    cfg = load_train_config(path)
    assert len(read_dataset(cfg.data.train)) >= 2 * cfg.batch_size * cfg.grad_accumulation


@pytest.mark.parametrize("path", sorted((EXAMPLES / "data").glob("*.jsonl")), ids=lambda p: p.name)
def test_example_data_is_valid(path):
    assert len(read_dataset(path)) > 0
