"""The beta sweep on a tiny model: grid configs, resumable runs, measures, gate, recommendation, page, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml

from prefgate.commands.sweep import sweep as sweep_command
from prefgate.errors import InputError
from prefgate.sweep import GridPoint, parse_betas, parse_losses, point_config, recommend
from tests.conftest import write_jsonl


def _pairs(n: int, offset: int = 0) -> list[dict]:
    return [{"prompt": f"Question: What is {i % 9 + 1} plus {i // 9 + 1 + offset}?\nAnswer:",
             "chosen": f" {i % 9 + i // 9 + 2 + offset}.", "rejected": f" {i % 9 + i // 9 + 3 + offset}."}
            for i in range(n)]


SUITE = [
    {"id": "m1", "category": "math", "prompt": "Question: What is 1 plus 2?\nAnswer:", "choices": ["3", "4"],
     "answer": "3", "scorer": "choice"},
    {"id": "m2", "category": "math", "prompt": "Question: What is 2 plus 2?\nAnswer:", "choices": ["4", "5"],
     "answer": "4", "scorer": "choice"},
    {"id": "f1", "category": "facts", "prompt": "Question: What is the capital of France?\nAnswer:",
     "answer": "Paris", "scorer": "contains"},
]


@pytest.fixture()
def setup(tiny_dir, tmp_path, monkeypatch):
    """A config with train and held-out pairs, a suite, and a registry home of its own."""
    monkeypatch.setenv("PREFGATE_HOME", str(tmp_path / "home"))
    train = write_jsonl(tmp_path / "train.jsonl", _pairs(16))
    held_out = write_jsonl(tmp_path / "eval.jsonl", _pairs(6, offset=3))
    suite = write_jsonl(tmp_path / "suite.jsonl", SUITE)
    config = {"model": {"name_or_path": str(tiny_dir)}, "data": {"train": str(train), "eval": str(held_out),
              "max_length": 64}, "batch_size": 4, "max_steps": 2, "optim": {"lr": 0.001, "schedule": "constant"},
              "memory_probe": False, "output_dir": "ignored"}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return {"config": path, "suite": suite, "out": tmp_path / "out", "raw": config, "tmp": tmp_path}


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("sweep")(sweep_command)

    @app.command("other")
    def _other() -> None:  # a second command, so `sweep` stays a sub-command as in the real CLI
        pass

    return app


def _args(setup, *extra: str) -> list[str]:
    return ["sweep", str(setup["config"]), "--beta", "0.1,0.5", "--loss", "dpo,dpop", "--out-dir", str(setup["out"]),
            "--kl-prompts", "3", "--max-new-tokens", "4", "--device", "cpu", *extra]


# -- pure pieces ------------------------------------------------------------------------------------------


def test_parse_grid():
    assert parse_betas("0.05, 0.1,0.3") == [0.05, 0.1, 0.3]
    assert parse_losses("dpo,dpop") == ["dpo", "dpop"]
    for bad, message in (("0.1,x", "comma-separated"), ("0", "positive"), ("0.1,0.1", "twice")):
        with pytest.raises(InputError, match=message):
            parse_betas(bad)
    with pytest.raises(InputError, match="no beta"):
        parse_losses("sft")
    with pytest.raises(InputError, match="unknown loss type 'dpx'"):
        parse_losses("dpx")
    assert GridPoint("dpop", 0.05).name == "dpop-beta0.05"


def test_point_config_sets_loss_beta_and_folder_and_keeps_what_the_loss_takes(setup, tmp_path):
    raw = {**setup["raw"], "loss": {"type": "dpop", "beta": 0.2, "lam": 20.0}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    dpo = point_config(path, GridPoint("dpo", 0.3), tmp_path / "o" / "dpo-beta0.3", ["max_steps=7"])
    assert dpo.loss.hyperparameters == {"beta": 0.3} and dpo.output_dir == str(tmp_path / "o" / "dpo-beta0.3")
    assert dpo.max_steps == 7
    dpop = point_config(path, GridPoint("dpop", 0.05), tmp_path / "x", [])
    assert dpop.loss.hyperparameters == {"beta": 0.05, "lam": 20.0}
    with pytest.raises(InputError, match="the sweep sets"):
        point_config(path, GridPoint("dpo", 0.3), tmp_path / "x", ["loss.beta=0.2"])
    with pytest.raises(InputError, match=r"c.yaml: field 'max_steps'.*grid point dpo-beta0.3"):
        point_config(path, GridPoint("dpo", 0.3), tmp_path / "x", ["max_steps=0"])


def _row(name: str, acc: float, kl: float, decision: str | None, status: str = "completed") -> dict:
    gate = None if decision is None else {"decision": decision, "reasons": [f"{name} fell"] if decision == "block"
                                          else []}
    return {"name": name, "status": status, "preference": {"accuracy": acc}, "kl": {"mean_per_token": kl},
            "gate": gate}


def test_recommend_best_accuracy_among_promoted_points():
    rows = [_row("dpo-beta0.05", 0.9, 0.30, "block"), _row("dpo-beta0.1", 0.8, 0.20, "promote"),
            _row("dpop-beta0.1", 0.8, 0.10, "promote"), _row("dpo-beta0.5", 0.6, 0.05, "promote"),
            _row("dpop-beta0.5", 0.0, 0.0, None, status="aborted")]
    rec = recommend(rows, gated=True)
    assert rec["point"] == "dpop-beta0.1"
    assert "best held-out preference accuracy (0.800" in rec["reason"]
    assert "among the 3 points whose gate promotes" in rec["reason"]
    assert "tied with dpo-beta0.1 and chosen for its lower KL" in rec["reason"]
    assert "dpo-beta0.05 scored higher (0.900) but its gate blocks: dpo-beta0.05 fell" in rec["reason"]
    assert rec["reason"].endswith("gate blocked: dpo-beta0.05; aborted: dpop-beta0.5")
    none = recommend([_row("a", 0.9, 0.1, "block")], gated=True)
    assert none["point"] is None and none["reason"].startswith("the gate blocks every completed point")
    ungated = recommend([_row("a", 0.5, 0.1, None), _row("b", 0.7, 0.3, None)], gated=False)
    assert ungated["point"] == "b" and "no --suite, so no gate ran" in ungated["reason"]


# -- the sweep end to end ---------------------------------------------------------------------------------


def test_config_without_held_out_pairs_is_refused(setup, runner):
    raw = {**setup["raw"], "data": {"train": setup["raw"]["data"]["train"], "max_length": 64}}
    setup["config"].write_text(yaml.safe_dump(raw))
    result = runner.invoke(_app(), _args(setup))
    assert result.exit_code == 2 and "field 'data.eval'" in result.stderr and "has none" in result.stderr
    assert not (setup["out"] / "dpo-beta0.1").exists()  # refused before anything trained


def test_suite_with_judge_items_is_refused_before_training(setup, runner):
    suite = write_jsonl(setup["tmp"] / "judged.jsonl", [*SUITE, {"id": "j1", "category": "chat", "prompt": "Hi",
                                                                 "scorer": "judge"}])
    result = runner.invoke(_app(), _args(setup, "--suite", str(suite)))
    assert result.exit_code == 2 and "the suite has judge items, and the sweep runs no judge" in result.stderr
    assert not (setup["out"] / "dpo-beta0.1").exists()


@pytest.mark.slow
def test_sweep_trains_measures_gates_recommends_and_resumes(setup, runner):
    from prefgate.registry import Registry

    result = runner.invoke(_app(), _args(setup, "--suite", str(setup["suite"])))
    assert result.exit_code == 0, result.output
    report = json.loads((setup["out"] / "sweep.json").read_text())
    assert report["kind"] == "sweep" and report["grid"] == {"losses": ["dpo", "dpop"], "betas": [0.1, 0.5]}
    names = [p["name"] for p in report["points"]]
    assert names == ["dpo-beta0.1", "dpo-beta0.5", "dpop-beta0.1", "dpop-beta0.5"]
    for p in report["points"]:
        manifest = json.loads((Path(p["run_dir"]) / "manifest.json").read_text())
        assert p["status"] == "completed" and not p["reused"] and manifest["loss"]["beta"] == p["beta"]
        assert manifest["loss"]["type"] == p["loss"] and p["run_id"] == manifest["run_id"]
        assert 0.0 <= p["preference"]["accuracy"] <= 1.0 and p["preference"]["n"] == 6
        assert p["kl"]["mean_per_token"] >= 0.0 and p["kl"]["n_prompts"] == 3
        assert set(p["eval"]["categories"]) == {"math", "facts"}
        assert p["gate"]["decision"] == "promote"  # 2 steps at lr 1e-3 on 3 items: nothing significant
        gate = json.loads(Path(p["gate"]["path"]).read_text())
        assert len(gate["baseline"]["sha256"]) == len(gate["candidate"]["sha256"]) == 64
        assert p["registry"]["run_id"] == p["run_id"]
    assert report["recommendation"]["point"] in names
    assert "among the 4 points whose gate promotes" in report["recommendation"]["reason"]
    assert f"recommended: {report['recommendation']['point']}" in result.stdout
    assert (setup["out"] / "evals" / "base.eval.json").exists()
    assert len(Registry().list()) == 4
    html = (setup["out"] / "sweep.html").read_text()
    assert html.count("data:image/png;base64,") == 1 and 'id="grades"' in html and "<code>base</code>" in html

    stamps = {p: p.stat().st_mtime_ns for p in setup["out"].rglob("*.json") if p.name != "sweep.json"}
    again = runner.invoke(_app(), _args(setup, "--suite", str(setup["suite"])))
    assert again.exit_code == 0, again.output
    assert again.stderr.count("not trained again") == 4
    assert all(p["reused"] for p in json.loads((setup["out"] / "sweep.json").read_text())["points"])
    changed = [p for p, t in stamps.items() if p.stat().st_mtime_ns != t and not p.name.endswith(".gate.json")]
    assert changed == []  # runs, evals and measures reused; only the gates are decided again

    other = runner.invoke(_app(), _args(setup, "optim.lr=0.002"))
    assert other.exit_code == 2 and "holds a finished run whose config differs in optim" in other.stderr


@pytest.mark.slow
def test_sweep_without_suite_recommends_on_accuracy_and_resumes_an_interrupted_point(setup, tmp_path):
    from prefgate.report.sweep import write_sweep_html
    from prefgate.sweep import SweepOptions, sweep

    out = setup["out"]
    (out / "dpo-beta0.2").mkdir(parents=True)
    (out / "dpo-beta0.2" / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')  # killed before a checkpoint
    report = sweep(setup["config"], [0.2], ["dpo"], SweepOptions(out_dir=out, register=False, kl_prompts=2,
                                                                 max_new_tokens=3, device="cpu", progress=False))
    write_sweep_html(report, out / "sweep.html")
    (point,) = report["points"]
    assert point["status"] == "completed" and point["gate"] is None and point["registry"] is None
    assert report["recommendation"]["point"] == "dpo-beta0.2" and report["suite"] is None
    lines = (out / "dpo-beta0.2" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]  # the stale line is gone
    assert "no suite: run the sweep with --suite" in (out / "sweep.html").read_text()


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("sweep*.yaml")), ids=lambda p: p.name)
def test_example_sweep_configs_load_for_every_point(path, tmp_path):
    from prefgate.config import load_train_config

    assert load_train_config(path).data.eval  # a valid train config that names held-out pairs
    for point in (GridPoint("dpo", 0.1), GridPoint("dpop", 0.5)):
        config = point_config(path, point, tmp_path / point.name)
        assert config.loss.type.value == point.loss and config.loss.hyperparameters["beta"] == point.beta
