"""Issue 19: output for people and for scripts. `--json PATH` in every command (`-`: stdout instead of the
tables; a bare `--json` last means `-`, as the registry's flag did), and tables that keep their width when
stdout is a pipe (rich lays results out for 80 columns there and cuts every line)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefgate.cli import app
from prefgate.commands.jsonout import bare_json_as_stdout
from prefgate.console import PIPED_WIDTH, results_width
from tests.test_gate import make_report

LONG = "a_category_name_long_enough_that_the_gate_table_runs_past_eighty_columns"


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize("args, expected", [
    (["list", "--json"], ["list", "--json", "-"]),
    (["show", "RUN", "--json"], ["show", "RUN", "--json", "-"]),
    (["a.json", "b.json", "--json", "--policy", "p.yaml"], ["a.json", "b.json", "--json", "-", "--policy", "p.yaml"]),
    (["a.json", "--json", "-"], ["a.json", "--json", "-"]),
    (["a.json", "--json", "out.json"], ["a.json", "--json", "out.json"]),
    (["--jsonish"], ["--jsonish"]),
])
def test_a_bare_json_means_stdout(args, expected):
    assert bare_json_as_stdout(args) == expected


def test_results_are_laid_out_wide_only_when_stdout_is_not_a_terminal():
    assert results_width(_Stream(tty=False), {}) == PIPED_WIDTH
    assert results_width(_Stream(tty=True), {}) is None  # rich measures the terminal
    assert results_width(_Stream(tty=False), {"COLUMNS": "100"}) is None  # rich reads COLUMNS itself


@pytest.fixture()
def reports(tmp_path) -> tuple[Path, Path]:
    base = make_report({LONG: [1.0] * 30, "math": [1.0] * 30})
    cand = make_report({LONG: [1.0] * 29 + [0.0], "math": [1.0] * 30})
    paths = tmp_path / "base.json", tmp_path / "cand.json"
    for path, report in zip(paths, (base, cand), strict=True):
        path.write_text(json.dumps(report))
    return paths


def test_gate_json_to_a_file_to_stdout_and_bare_agree(reports, tmp_path):
    runner = CliRunner()
    to_file = runner.invoke(app, ["gate", *map(str, reports), "--json", str(tmp_path / "g.json")])
    dash = runner.invoke(app, ["gate", *map(str, reports), "--json", "-"])
    bare = runner.invoke(app, ["gate", *map(str, reports), "--json"])
    assert to_file.exit_code == dash.exit_code == bare.exit_code == 0
    assert "decision: PROMOTE" in to_file.stdout and f"wrote {tmp_path / 'g.json'}" in to_file.stderr
    written = json.loads((tmp_path / "g.json").read_text())
    for result in (dash, bare):
        printed = json.loads(result.stdout)  # stdout is the JSON and nothing else: no table
        assert printed["decision"] == written["decision"] == "promote"
        assert printed["categories"] == written["categories"]
    assert not (Path.cwd() / "-").exists()


def test_a_piped_table_is_not_cut_at_80_columns(reports):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.run([sys.executable, "-m", "prefgate", "gate", *map(str, reports)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.lstrip().startswith(LONG))
    assert len(row) > 80 and "…" not in row
    assert row.split()[:4] == [LONG, "30", "1.000", "A"]  # the whole row: name, n, baseline score and grade


def test_json_minus_is_refused_where_a_file_is_needed(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    result = CliRunner().invoke(app, ["audit", str(data), "--json", "-", "--record"])
    assert result.exit_code == 2
    assert "field '--record': needs --json OUT.json, a file" in result.stderr
