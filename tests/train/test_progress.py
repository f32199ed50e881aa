"""Issue 19: the trainer's long silent phases have progress bars (tokenising, the pre-training audit, the eval on
held-out pairs, the in-training gate's suite), drawn through `prefgate.console`, and quiet mode silences them."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from prefgate import console
from prefgate.audit import CHECK_IDS
from prefgate.train.loop import train
from tests.train.conftest import arithmetic_pairs, make_config, write_pairs

pytestmark = pytest.mark.slow  # two runs with an in-training gate: 8 to 18 s each on the shared machine

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture()
def terminal(monkeypatch) -> io.StringIO:
    """stderr as a 160-column terminal: what rich draws is kept in the buffer (a transient bar's last frame too)."""
    buffer = io.StringIO()
    monkeypatch.setattr(console, "err_console", Console(file=buffer, force_terminal=True, width=160))
    return buffer


def _config(tiny_dir, tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", arithmetic_pairs(20))
    held_out = write_pairs(tmp_path / "eval.jsonl", [
        {"prompt": f"Question: What is {a} times 2?\nAnswer:", "chosen": f" {2 * a}.", "rejected": f" {2 * a + 1}."}
        for a in range(1, 6)])
    suite = write_pairs(tmp_path / "suite.jsonl", [
        {"id": f"s{i}", "category": "math", "prompt": f"Q{i}:", "answer": "red", "scorer": "exact"} for i in range(3)])
    return make_config(tiny_dir, pairs, tmp_path / "run", max_steps=2, **{
        "data.eval": str(held_out), "eval.every": 2, "eval.batch_size": 2, "eval.suite": str(suite),
        "eval.max_new_tokens": 2, "eval.cache_dir": str(tmp_path / "cache")})


def _last_frame(text: str, description: str) -> str:
    """The last drawn line of the bar called `description` (rich redraws it in place)."""
    frames = re.split(r"[\r\n]", ANSI.sub("", text))
    lines = [line for line in frames if line.startswith(description + " ")]
    assert lines, f"no {description!r} bar drawn"
    return lines[-1]


def test_tokenising_audit_and_in_training_evals_draw_progress_bars(tiny_dir, tmp_path, terminal):
    result = train(_config(tiny_dir, tmp_path), show_progress=True)
    assert result.status == "completed"
    text = terminal.getvalue()
    assert "25/25" in _last_frame(text, "tokenising")  # 20 training + 5 held-out records
    assert f"{len(CHECK_IDS)}/{len(CHECK_IDS)}" in _last_frame(text, "audit")
    assert CHECK_IDS[-1] in _last_frame(text, "audit")  # the check just done is named
    # Inside the training bar rich draws these with the next frame of the outer one: the last may not show 3/3.
    assert re.search(r" \d/3 ", _last_frame(text, "eval pairs"))  # 5 held-out pairs in batches of 2
    assert re.search(r" \d/3 ", _last_frame(text, "generating"))  # the in-training gate's 3 suite items
    assert "2/2" in _last_frame(text, "train")


def test_quiet_silences_every_bar(tiny_dir, tmp_path, terminal):
    with console.quiet():
        result = train(_config(tiny_dir, tmp_path), show_progress=True)
    assert result.status == "completed"
    assert terminal.getvalue() == ""
