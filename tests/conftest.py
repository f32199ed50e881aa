"""Shared fixtures: a tiny tokenizer/model on a local path, a CLI runner, and a JSONL writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HH_TEST = SHARED_DATA / "hh-rlhf-harmless-base-test.jsonl.gz"


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
