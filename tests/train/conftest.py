"""Tiny models and pair data for trainer tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefgate.config import load_train_config

WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "fish", "bird", "rock", "star"]


def arithmetic_pairs(n: int) -> list[dict]:
    return [{"prompt": f"Question: What is {i % 9 + 1} plus {i // 9 + 1}?\nAnswer:",
             "chosen": f" {i % 9 + i // 9 + 2}.", "rejected": f" {i % 9 + i // 9 + 3}.", "category": "math"}
            for i in range(n)]


def write_pairs(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def ref_dir(tmp_path_factory) -> Path:
    """A second tiny model (other seed): a reference that differs from the policy at step 0."""
    from prefgate.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("ref"), seed=1)


@pytest.fixture()
def pairs_file(tmp_path) -> Path:
    return write_pairs(tmp_path / "pairs.jsonl", arithmetic_pairs(20))


def make_config(model_dir, train, out, **overrides):
    base = {"model": {"name_or_path": str(model_dir)}, "data": {"train": str(train), "max_length": 64},
            "batch_size": 4, "max_steps": 5, "output_dir": str(out), "optim": {"lr": 1e-3, "schedule": "constant"},
            "memory_probe": False}
    dotted = [f"{k}={json.dumps(v)}" for k, v in overrides.items() if "." in k]
    plain = {k: v for k, v in overrides.items() if "." not in k}
    return load_train_config(None, dotted, **{**base, **plain})


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
