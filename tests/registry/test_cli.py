"""`prefgate registry ...` through typer: output, --json, and exit codes 0 / 1 (refused) / 2 (bad input)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from prefgate.commands import registry as registry_commands
from prefgate.registry import Registry

from .conftest import TRAIN_FP, sha256_of


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(registry_commands.app, name="registry")
    return app


def cli(*args: str, code: int = 0):
    result = CliRunner().invoke(_app(), ["registry", *map(str, args)])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def one_error_line(result, prefix: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


def test_add_list_show_and_their_json(build):
    run_dir = build.run("20261123-142501-dpo-ab12cd")
    ev = build.eval("e", str(run_dir))
    out = cli("add", run_dir, "--eval", ev).stdout
    assert f"registered 20261123-142501-dpo-ab12cd from {run_dir}" in out and sha256_of(ev)[:12] in out
    assert "already registered" in cli("add", run_dir).stdout

    assert "20261123-142501-dpo-ab12cd" in cli("list").stdout
    (row,) = json.loads(cli("list", "--json").stdout)
    assert row["run_id"] == "20261123-142501-dpo-ab12cd" and row["n_evals"] == 1

    shown = cli("show", "20261123-142501").stdout
    for expected in (TRAIN_FP, "loss.beta", "config.optim.lr", "rewards/accuracies", "adapter_model.safetensors",
                     sha256_of(ev)[:12]):
        assert expected in shown, expected
    assert json.loads(cli("show", "20261123-142501", "--json").stdout)["loss"]["beta"] == 0.1


def test_bad_input_exits_2_with_one_line(build, tmp_path):
    one_error_line(cli("add", tmp_path / "nope", code=2), "error: ")
    one_error_line(cli("show", "nope", code=2), "error: ")
    run_dir = build.run("r1")
    (run_dir / "manifest.json").write_text("{")
    line = one_error_line(cli("add", run_dir, code=2), "error: ")
    assert str(run_dir / "manifest.json") in line and "not a valid JSON file" in line
    one_error_line(cli("history", "prod", code=2), "error: ")
    one_error_line(cli("rollback", "prod", code=2), "error: ")


def test_promote_refused_exits_1_and_an_override_is_recorded(prod, build):
    a, b = prod["A"]["id"], prod["B"]["id"]
    blocked = build.gate("A-vs-B", prod["A"]["eval"], build.worse_eval(Registry(), prod["B"]["dir"]),
                         decision="block")
    line = one_error_line(cli("promote", b, "--alias", "prod", "--gate", blocked, code=1), "refused: ")
    assert "the gate's decision is block" in line

    one_error_line(cli("promote", b, "--alias", "prod", "--gate", blocked, "--force", code=2), "error: ")
    one_error_line(cli("promote", b, "--alias", "prod", code=2), "error: ")
    one_error_line(cli("promote", b, "--alias", "prod", "--gate", build.root / "no.json", code=2), "error: ")

    out = cli("promote", b, "--alias", "prod", "--gate", blocked, "--force", "--reason", "incident 7").stdout
    assert f"prod -> {b}  (was: {a})" in out and "FORCED by tester: incident 7" in out

    rows = json.loads(cli("history", "prod", "--json").stdout)
    assert [r["run_id"] for r in rows] == [a, b] and rows[1]["forced"] and rows[1]["reason"] == "incident 7"
    assert "overrode" in cli("history", "prod").stdout


def test_promote_through_the_gate_then_roll_back(prod, build):
    a, b = prod["A"]["id"], prod["B"]["id"]
    gate = build.gate("A-vs-B", prod["A"]["eval"], prod["B"]["eval"])
    assert f"prod -> {b}  (was: {a})" in cli("promote", b[:9], "--alias", "prod", "--gate", gate).stdout
    assert f"prod -> {a}  (rolled back from {b})" in cli("rollback", "prod", "--reason", "oops").stdout
    line = one_error_line(cli("rollback", "prod", code=1), "refused: ")
    assert "no previous holder" in line
    table = cli("history", "prod").stdout
    assert "rollback" in table and "oops" in table


@pytest.mark.parametrize("json_out", [False, True])
def test_verify_exits_1_when_an_adapter_changed_by_one_byte(prod, json_out):
    flag = ["--json"] if json_out else []
    assert "all match" in cli("verify").stdout
    weights = prod["A"]["dir"] / "adapter" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] = (data[100] + 1) % 256
    weights.write_bytes(bytes(data))
    out = cli("verify", *flag, code=1).stdout
    if json_out:
        (problem,) = json.loads(out)["problems"]
        assert problem["status"] == "modified" and problem["path"] == str(weights)
    else:
        assert f"MODIFIED  {prod['A']['id']}  adapter/adapter_model.safetensors" in out
        assert "1 missing or modified" in out


def test_a_run_folder_stands_for_its_run_id_and_json_takes_a_path_or_stdout(build, tmp_path):
    """Issue 19: the quick tour promotes `runs/dpo-lora` without copying its id; `--json PATH | -` as elsewhere."""
    base = build.eval("base", "org/tiny-sft", 0.78)
    run_dir = build.run("20261123-142501-dpo-ab12cd")
    ev = build.eval("e", str(run_dir))
    cli("add", run_dir, "--eval", ev)
    assert json.loads(cli("show", run_dir, "--json", "-").stdout)["run_id"] == run_dir.name
    out = cli("promote", run_dir, "--alias", "prod", "--gate", build.gate("g", base, ev)).stdout
    assert out.startswith(f"prod -> {run_dir.name}  (was: no previous holder)")
    cli("history", "prod", "--json", tmp_path / "h.json")
    assert json.loads((tmp_path / "h.json").read_text())[0]["run_id"] == run_dir.name
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "not-a-run" / "manifest.json").write_text("[]")
    line = one_error_line(cli("show", tmp_path / "not-a-run", code=2), "error: ")
    assert "manifest.json" in line and "expected a JSON object (a run manifest)" in line
