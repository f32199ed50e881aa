"""`prefgate label` and `prefgate label agreement` through typer, wired as cli.py will wire them; the labels
feed `prefgate audit --labels`. (The terminal itself is driven in test_label_tmux.py.)"""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from prefgate.commands import audit as audit_commands
from prefgate.commands import label as label_commands
from prefgate.label import Label, LabelStore, a_side, label_sample

runner = CliRunner()


def cli() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.add_typer(label_commands.app, name="label")  # as cli.py wires it
    app.command("audit")(audit_commands.audit)
    return app


def test_print_sample_lists_positions_ids_and_categories(data_file, pairs):
    result = runner.invoke(cli(), ["label", str(data_file), "--fraction", "0.1", "--seed", "0", "--print-sample"])
    assert result.exit_code == 0, result.output
    for position, rec in enumerate(label_sample(pairs, 0.1, seed=0), start=1):
        assert f"{position} " in result.stdout and rec.id in result.stdout


def test_labelling_needs_a_rater_an_output_and_a_terminal(data_file, tmp_path):
    out = tmp_path / "labels.jsonl"
    result = runner.invoke(cli(), ["label", str(data_file), "--out", str(out)])
    assert result.exit_code == 2 and "field '--rater': missing" in result.stderr
    result = runner.invoke(cli(), ["label", str(data_file), "--rater", "alice"])
    assert result.exit_code == 2 and "field '--out': missing" in result.stderr
    result = runner.invoke(cli(), ["label", str(data_file), "--rater", "alice", "--out", str(out)])
    assert result.exit_code == 2 and "needs an interactive terminal" in result.stderr
    result = runner.invoke(cli(), ["label", str(data_file), "--fraction", "1.5", "--rater", "a", "--out", str(out)])
    assert result.exit_code == 2 and "field 'fraction': must be in (0, 1]" in result.stderr
    result = runner.invoke(cli(), ["label"])
    assert result.exit_code == 2 and "missing DATA" in result.stderr


def test_a_finished_sample_says_so_without_a_terminal(data_file, pairs, tmp_path):
    out = tmp_path / "labels.jsonl"
    store = LabelStore(out)
    for rec in label_sample(pairs, 0.1, seed=0):
        store.append(Label(rec.id, "chosen", "alice"))
    result = runner.invoke(cli(), ["label", str(data_file), "--rater", "alice", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "alice: gave 0 answers this session; 10 of 10 pairs in the sample are done" in result.stdout


def test_agreement_command_prints_kappas_and_writes_json(data_file, pairs, tmp_path):
    out = tmp_path / "labels.jsonl"
    store = LabelStore(out)
    sample = label_sample(pairs, 0.1, seed=0)
    for i, rec in enumerate(sample):
        store.append(Label(rec.id, "chosen", "alice"))
        store.append(Label(rec.id, "chosen" if i % 5 else "rejected", "bob"))
        store.append(Label(rec.id, "chosen" if i % 3 else "tie", "carol"))
    report_path = tmp_path / "agreement.json"
    result = runner.invoke(cli(), ["label", "agreement", str(out), str(data_file), "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    assert "Fleiss' kappa" in result.stdout and "alice vs bob: Cohen's kappa" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["kind"] == "label_agreement" and report["inter_rater"]["method"] == "fleiss"
    assert report["auto"]["raters"]["alice"]["agreement"] == 1.0
    assert report["dataset"]["n_records"] == len(pairs)
    two = runner.invoke(cli(), ["label", "agreement", str(out)])  # DATA is optional
    assert two.exit_code == 0 and "warning" not in two.stderr


def test_agreement_command_bad_input(tmp_path, data_file):
    result = runner.invoke(cli(), ["label", "agreement", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "no such file" in result.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "p001", "preferred": "left", "rater": "a"}\n')
    result = runner.invoke(cli(), ["label", "agreement", str(bad), str(data_file)])
    assert result.exit_code == 2 and f"{bad}:1: field 'preferred'" in result.stderr
    low = tmp_path / "low.jsonl"
    low.write_text('{"id": "p001", "preferred": "rejected", "rater": "a"}\n')
    result = runner.invoke(cli(), ["label", "agreement", str(low), str(data_file)])
    assert result.exit_code == 0 and "below the 80%" in result.stderr


def test_labels_written_by_the_tool_feed_the_audit(data_file, pairs, tmp_path):
    out = tmp_path / "labels.jsonl"
    store = LabelStore(out)
    sample = label_sample(pairs, 0.1, seed=0)
    for rec in sample:  # a rater who always presses "a": agrees with the auto-label only when A was chosen
        store.append(Label(rec.id, "chosen" if a_side(0, "alice", rec.id) == "chosen" else "rejected", "alice"))
    report_path = tmp_path / "audit.json"
    result = runner.invoke(cli(), ["audit", str(data_file), "--labels", str(out), "--json", str(report_path)])
    check = next(c for c in json.loads(report_path.read_text())["checks"] if c["id"] == "label_agreement")
    expected = sum(a_side(0, "alice", r.id) == "chosen" for r in sample) / len(sample)
    assert check["value"] == expected and check["details"]["n_labelled"] == 10, result.output
