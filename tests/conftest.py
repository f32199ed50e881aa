"""Shared fixtures: a tiny tokenizer/model on a local path, a CLI runner, a JSONL writer, and the `needs` marker.

`@pytest.mark.needs("chromium")` (or "tmux", "hh_data") marks an end-to-end test that needs something outside
Python. Where it is missing the test is skipped with the reason; in CI (`CI=true`) it fails instead, so a
green CI means the browser, terminal and real-data tests ran.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HH_TEST = SHARED_DATA / "hh-rlhf-harmless-base-test.jsonl.gz"
CHROMIUM = Path("/usr/bin/chromium")

# What each `needs` name checks, and how to get it.
NEEDS = {
    "chromium": (lambda: CHROMIUM.exists(), "needs Debian's chromium (apt-get install -y chromium)"),
    "tmux": (lambda: shutil.which("tmux") is not None, "tmux is not installed (CI: apt-get install -y tmux)"),
    "hh_data": (lambda: HH_TEST.exists(), f"{HH_TEST} is not beside the repository"),
    "mlflow": (lambda: importlib.util.find_spec("mlflow") is not None,
               "mlflow is not installed (the test extra installs mlflow-skinny)"),
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs"):
        for name in mark.args:
            available, reason = NEEDS[name]
            if available():
                continue
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true, so this end-to-end test may not skip: {reason}", pytrace=False)
            pytest.skip(reason)


@pytest.fixture(autouse=True)
def _own_prefgate_home(monkeypatch, tmp_path_factory) -> None:
    """Every test gets its own PREFGATE_HOME, so nothing lands in the working tree's .prefgate (the trainer's
    reference cache, the eval cache) and no test reads what another, or a user, left there. A test that needs
    another home sets it again."""
    monkeypatch.setenv("PREFGATE_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny Llama and its tokenizer saved in the standard layout (loaded with from_pretrained)."""
    from prefgate.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_tok(tiny_dir):
    from prefgate.data import load_tokenizer

    return load_tokenizer(str(tiny_dir))


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path
