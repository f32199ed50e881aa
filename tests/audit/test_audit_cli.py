"""`prefgate audit` and `prefgate data filter` through typer: exit codes 0 / 1 / 2, files written."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import typer
from typer.testing import CliRunner

from prefgate.commands.audit import audit, data_filter
from prefgate.data import read_dataset, write_records

app = typer.Typer(pretty_exceptions_enable=False)
app.command("audit")(audit)  # as cli.py wires it
app.command("filter")(data_filter)  # cli.py puts it under `data`
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def data(tmp_path, pairs):
    return write_records(pairs, tmp_path / "pairs.jsonl")


def test_clean_data_exits_0_and_writes_json_and_html(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    result = run("audit", data, "--json", out / "audit.json", "--html", out / "audit.html")
    assert result.exit_code == 0, result.output
    assert "verdict: PASS" in result.stdout
    report = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert report["verdict"] == "pass"
    assert report["dataset"]["fingerprint"] == read_dataset(data).fingerprint
    assert (tmp_path / "out" / "audit.html").read_text().startswith("<!DOCTYPE html>")


def test_warn_exits_0(tmp_path, pairs):
    path = write_records([replace(p, rejected=p.chosen.upper()) if i < 6 else p for i, p in enumerate(pairs)],
                         tmp_path / "style.jsonl")
    result = run("audit", path)
    assert result.exit_code == 0, result.output
    assert "verdict: WARN" in result.stdout


def test_fail_exits_1(tmp_path, pairs):
    path = write_records([replace(p, rejected=p.chosen) if i < 3 else p for i, p in enumerate(pairs)],
                         tmp_path / "same.jsonl")
    result = run("audit", path)
    assert result.exit_code == 1, result.output
    assert "verdict: FAIL" in result.stdout
    assert "identical" in result.stdout


def test_invalid_rows_fail_the_schema_check_unless_skipped(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(data, "a") as fh:
        fh.write('{"prompt": "q", "chosen": 3, "rejected": "b"}\n')
    before = set(tmp_path.iterdir())
    failed = run("audit", data, "--json", tmp_path / "a.json")
    assert failed.exit_code == 1, failed.output
    schema = json.loads((tmp_path / "a.json").read_text())["checks"][0]
    assert (schema["id"], schema["status"], schema["examples"]) == ("schema", "fail", [f"{data}:61"])
    # nothing written into the working directory but what was asked for; the reason is on stderr instead
    assert set(tmp_path.iterdir()) == before | {tmp_path / "a.json"}
    assert f"invalid: {data}:61: field 'chosen': expected a string or a list of messages, got int" in failed.stderr
    assert run("audit", data, "--skip-invalid").exit_code == 0
    assert (tmp_path / "pairs.rejected.jsonl").exists()  # asked for: --skip-invalid writes the sidecar
    run("audit", data, "--rejected-out", tmp_path / "r" / "bad.jsonl")
    assert (tmp_path / "r" / "bad.jsonl").exists()


@pytest.mark.parametrize("args, expected", [
    (["--max-length", "64"], "--max-length"),
    (["--config", "{tmp}/bad.yaml"], "bad.yaml: field 'identical.fail_abov': unknown key"),
    (["--labels", "{tmp}/labels.jsonl"], "labels.jsonl:2: field 'id': unknown record id 'nope'"),
    (["--eval", "{tmp}/missing.jsonl"], "missing.jsonl: no such file"),
    (["--tokenizer", "{tmp}/no-tokenizer-here", "--max-length", "64"], "cannot load tokenizer"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, data, args, expected):
    (tmp_path / "bad.yaml").write_text("identical:\n  fail_abov: 0.1\n")
    (tmp_path / "labels.jsonl").write_text('{"id": "p000", "preferred": "chosen", "rater": "a"}\n'
                                           '{"id": "nope", "preferred": "chosen", "rater": "a"}\n')
    result = run("audit", data, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert expected in error_lines[0]


def test_missing_data_exits_2(tmp_path):
    result = run("audit", tmp_path / "nope.jsonl")
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_tokenizer_and_max_length_measure_truncation(tmp_path, data, tokenizer):
    tokenizer.save_pretrained(tmp_path / "tok")
    result = run("audit", data, "--tokenizer", tmp_path / "tok", "--max-length", "512",
                 "--json", tmp_path / "a.json")
    assert result.exit_code == 0, result.output
    checks = {c["id"]: c for c in json.loads((tmp_path / "a.json").read_text())["checks"]}
    assert checks["truncation"]["status"] == "pass"
    assert checks["edit_distance"]["details"]["unit"] == "tokens"


def test_policy_model_and_labels(tmp_path, pairs):
    path = write_records([replace(p, grader="gpt-4o-mini") for p in pairs], tmp_path / "graded.jsonl")
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": p.id, "preferred": "chosen", "rater": "a"}) + "\n"
                              for p in pairs))
    result = run("audit", path, "--policy-model", "gpt-4o", "--labels", labels, "--json", tmp_path / "a.json")
    assert result.exit_code == 0, result.output
    checks = {c["id"]: c["status"] for c in json.loads((tmp_path / "a.json").read_text())["checks"]}
    assert (checks["grader_independence"], checks["label_agreement"]) == ("warn", "pass")


# -- data filter -------------------------------------------------------------------------------------------

def test_filter_removes_long_chosen_pairs_to_a_sidecar(tmp_path, pairs):
    planted = [replace(p, rejected="Short.") if i < 7 else p for i, p in enumerate(pairs)]
    source = write_records(planted, tmp_path / "in.jsonl")
    result = run("filter", source, tmp_path / "out.jsonl", "--max-length-ratio", "2")
    assert result.exit_code == 0, result.output
    assert "removed 7 of 60 records" in result.stdout
    kept = read_dataset(tmp_path / "out.jsonl")
    removed = read_dataset(tmp_path / "out.removed.jsonl")
    assert len(kept) == 53
    assert [r.id for r in removed] == [f"p{i:03d}" for i in range(7)]
    assert run("audit", tmp_path / "out.jsonl").exit_code == 0


@pytest.mark.parametrize("args, expected", [
    ([], "give --max-length-ratio"),
    (["--max-length-ratio", "0.5"], "must be at least 1"),
])
def test_filter_bad_input_exits_2(tmp_path, data, args, expected):
    result = run("filter", data, tmp_path / "out.jsonl", *args)
    assert result.exit_code == 2
    assert expected in result.stderr
