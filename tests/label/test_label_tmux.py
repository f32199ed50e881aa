"""The labelling tool driven end to end in a real terminal: tmux runs it in a detached 120x40 session, the test
types keys (send-keys) and reads the screen (capture-pane); the session is killed mid-way and restarted, a
second rater labels the same sample, and the labels file goes to `prefgate label agreement` and
`prefgate audit --labels`.

Needs tmux (CI: `apt-get install -y tmux`); skipped with the reason when it is missing.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefgate.data import write_records
from prefgate.label import a_side, label_sample, preferred_for, read_labels_file
from tests.label.conftest import make_pairs
from tests.label.test_label_commands import cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.needs("tmux"),
]

WIDTH, HEIGHT = 120, 40


class Tmux:
    """A private tmux server (its own socket, no user config) for one test."""

    def __init__(self) -> None:
        self.socket = f"prefgate-e2e-{uuid.uuid4().hex[:12]}"

    def run(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], capture_output=True, text=True,
                             timeout=30, check=False)
        return out.stdout

    def start(self, name: str, command: str) -> None:
        self.run("new-session", "-d", "-s", name, "-x", str(WIDTH), "-y", str(HEIGHT), command)

    def keys(self, name: str, *keys: str) -> None:
        for key in keys:
            self.run("send-keys", "-t", name, key)

    def screen(self, name: str) -> str:
        return self.run("capture-pane", "-p", "-t", name)

    def wait(self, name: str, *texts: str, timeout: float = 30.0) -> str:
        """The screen once it shows every one of `texts` and has stopped changing (a capture can catch the tool
        mid-draw); fails with the last screen after `timeout`."""
        deadline = time.monotonic() + timeout
        screen = previous = ""
        while time.monotonic() < deadline:
            screen = self.screen(name)
            if screen == previous and all(t in screen for t in texts):
                return screen
            previous = screen
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {texts!r}; the screen was:\n{screen}")

    def kill(self, name: str) -> None:
        self.run("kill-session", "-t", name)

    def close(self) -> None:
        self.run("kill-server")


@pytest.fixture()
def tmux():
    server = Tmux()
    yield server
    server.close()


def label_command(data: Path, out: Path, rater: str) -> str:
    tool = [sys.executable, "-m", "prefgate.commands.label", str(data), "--fraction", "0.1", "--seed", "0",
            "--rater", rater, "--out", str(out)]
    # TERM=screen: a terminfo entry every system has; the pane stays open after the tool exits to be read.
    # LINES=24 COLUMNS=80 (as a test runner may export them): the tool must use the real 120x40 size anyway
    return f"env TERM=screen LINES=24 COLUMNS=80 {shlex.join(tool)}; echo EXITED $?; sleep 600"


def a_and_b(record, rater: str) -> tuple[str, str]:
    if a_side(0, rater, record.id) == "chosen":
        return record.chosen, record.rejected
    return record.rejected, record.chosen


def column_of(screen: str, text: str) -> tuple[int, int]:
    for row, line in enumerate(screen.splitlines()):
        if text in line:
            return row, line.index(text)
    raise AssertionError(f"{text!r} is not on the screen:\n{screen}")


def test_label_in_a_real_terminal_kill_resume_second_rater_agreement_and_audit(tmux, tmp_path):
    pairs = make_pairs(100)
    sample = label_sample(pairs, 0.1, seed=0)  # depends on ids and categories only, so the long text below
    long_one = sample[4]                        # changes nothing: the 5th pair gets a prompt taller than the screen
    long_one.prompt = "\n".join(f"prompt line {i:02d}" for i in range(1, 46))
    data = write_records(pairs, tmp_path / "pairs.jsonl")
    out = tmp_path / "labels.jsonl"
    pressed: dict[tuple[str, str], str] = {}  # (rater, id) -> the last key pressed

    def answer(name: str, rater: str, position: int, key: str, next_position: int | None) -> str:
        tmux.keys(name, key)
        pressed[(rater, sample[position - 1].id)] = key
        if next_position is None:
            return tmux.wait(name, "EXITED 0")
        return tmux.wait(name, f"pair {next_position}/10")

    # --- alice, first session: label 1-3, go back and re-label 3, skip 4, scroll through 5 and label it
    tmux.start("alice", label_command(data, out, "alice"))
    a_text, b_text = a_and_b(sample[0], "alice")
    screen = tmux.wait("alice", "pair 1/10", "labelled 0/10", "rater alice", a_text, b_text)
    (a_row, a_col), (b_row, b_col) = column_of(screen, a_text), column_of(screen, b_text)
    assert a_row == b_row and a_col < b_col  # A on the left, B on the right
    assert not any(word in screen.lower() for word in ("chosen", "rejected", "auto"))  # blind
    answer("alice", "alice", 1, "a", 2)
    screen = answer("alice", "alice", 2, "b", 3)
    assert "pair 3/10" in screen and "labelled 2/10" in screen and "saved pair 2: B" in screen
    assert sample[2].prompt in screen
    answer("alice", "alice", 3, "t", 4)
    tmux.keys("alice", "Left")
    tmux.wait("alice", "pair 3/10", "your earlier answer: tie")
    answer("alice", "alice", 3, "a", 4)
    tmux.keys("alice", "s")
    # 49 lines of text (title, 45 prompt lines, a blank, the A|B title, the answers) in 36 rows
    screen = tmux.wait("alice", "pair 5/10", "prompt line 01", "lines 1-36 of 49")
    assert "prompt line 36" not in screen and a_and_b(long_one, "alice")[0] not in screen
    tmux.keys("alice", "j")
    screen = tmux.wait("alice", "lines 2-37 of 49")
    assert "PROMPT" not in screen and "prompt line 36" in screen
    tmux.keys("alice", "NPage")
    screen = tmux.wait("alice", "lines 14-49 of 49")
    assert "prompt line 12" not in screen and "prompt line 45" in screen
    assert all(t in screen for t in a_and_b(long_one, "alice"))
    tmux.keys("alice", "g")
    tmux.wait("alice", "lines 1-36 of 49", "PROMPT")
    answer("alice", "alice", 5, "b", 6)

    # --- the kill: the tool gets no chance to clean up; every answer given is already on disk
    tmux.kill("alice")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["position"] for row in lines] == [1, 2, 3, 3, 5]  # the re-label appended, not yet compacted
    assert lines[2]["preferred"] == "tie" and lines[3]["id"] == lines[2]["id"]

    # --- alice again: resumes at pair 6 (after the last answer); the skipped pair 4 comes after 10
    tmux.start("alice2", label_command(data, out, "alice"))
    tmux.wait("alice2", "pair 6/10", "labelled 4/10")
    for position, key in zip(range(6, 11), "abtab", strict=True):
        answer("alice2", "alice", position, key, position + 1 if position < 10 else 4)
    screen = answer("alice2", "alice", 4, "b", None)
    assert "alice: gave 6 answers this session; 10 of 10 pairs in the sample are done" in screen

    # --- bob labels the same sample into the same file, in his own A/B order
    tmux.start("bob", label_command(data, out, "bob"))
    screen = tmux.wait("bob", "pair 1/10", "rater bob")
    assert sample[0].prompt in screen
    for position in range(1, 11):
        answer("bob", "bob", position, "a" if position % 4 else "b", position + 1 if position < 10 else None)

    # --- the file: compacted to one line per (id, rater), each the label of the last key pressed
    labels = read_labels_file(out)
    assert len(labels) == 20 == len({(lab.id, lab.rater) for lab in labels})
    for lab in labels:
        expected = preferred_for(pressed[(lab.rater, lab.id)], a_side(0, lab.rater, lab.id))
        assert lab.preferred == expected, (lab, pressed[(lab.rater, lab.id)])
    n_chosen = sum(lab.preferred == "chosen" for lab in labels)

    # --- agreement, then the audit, from the file the terminal sessions wrote
    agreement_json = tmp_path / "agreement.json"
    result = CliRunner().invoke(cli(), ["label", "agreement", str(out), str(data), "--json", str(agreement_json)])
    assert result.exit_code == 0, result.output
    assert "Cohen's kappa" in result.stdout and "on 10 pairs labelled by all 2 raters" in result.stdout
    report = json.loads(agreement_json.read_text())
    assert report["auto"]["overall"]["agreement"] == pytest.approx(n_chosen / 20)
    audit_json = tmp_path / "audit.json"
    result = CliRunner().invoke(cli(), ["audit", str(data), "--labels", str(out), "--json", str(audit_json)])
    check = next(c for c in json.loads(audit_json.read_text())["checks"] if c["id"] == "label_agreement")
    assert check["value"] == pytest.approx(n_chosen / 20), result.output
    assert check["details"]["n_judgements"] == 20 and check["details"]["n_raters"] == 2
    assert check["details"]["kappa"] == pytest.approx(report["auto"]["overall"]["kappa"])
    assert result.exit_code == (1 if check["status"] == "fail" else 0)
