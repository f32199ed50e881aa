"""Sizing a suite to the gate's promise (prefgate.eval.plan): the per-category figures, the eval report's
copy of them, and `prefgate eval plan`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from prefgate.commands import eval as eval_commands
from prefgate.errors import InputError
from prefgate.eval.grades import GradeBands
from prefgate.eval.plan import grade_width, plan_suite, sizing
from prefgate.eval.runner import EvalOptions, build_report
from prefgate.eval.suite import Suite
from prefgate.gate import GatePolicy
from prefgate.stats import items_needed, mcnemar_power


def report(scores: dict[str, list[float]]) -> dict:
    items = [{"id": f"{cat}-{i}", "category": cat, "score": float(s)}
             for cat, values in scores.items() for i, s in enumerate(values)]
    return {"kind": "eval", "version": 1, "model": {"path": "m"}, "suite": {"fingerprint": "suite-1"},
            "categories": {}, "items": items}


def correct(n: int, k: int) -> list[float]:
    return [1.0] * k + [0.0] * (n - k)


def test_grade_width_is_the_mean_gap_between_band_thresholds():
    assert grade_width(GradeBands()) == 0.1
    assert grade_width(GradeBands(A=0.95, B=0.85, C=0.75, D=0.65)) == 0.1
    assert grade_width(GradeBands(A=0.9, B=0.85, C=0.7, D=0.45)) == 0.15


def test_sizing_figures():
    s = sizing(100, 0.95, width=0.1)
    assert s == {"detectable_drop": pytest.approx(0.1327), "one_grade_detectable": False, "items_for_one_grade": 156}
    assert mcnemar_power(156, 0.95, 0.1, 0.05) >= 0.8
    assert sizing(100, None, width=0.1) == {"detectable_drop": None, "one_grade_detectable": None,
                                            "items_for_one_grade": None}
    assert sizing(30, 0.05, width=0.1)["items_for_one_grade"] is None  # no one-grade drop below 0.10
    # a stricter alpha or a higher power asks for more items
    assert items_needed(0.95, 0.1, 0.01, 0.8) > 156 and items_needed(0.95, 0.1, 0.05, 0.9) > 156


def test_plan_suite_rows_and_min_items():
    plan = plan_suite(report({"qa": correct(100, 95), "math": correct(400, 320), "tiny": correct(15, 14),
                              "chat": [0.85] * 30}), min_items=20)
    assert plan["kind"] == "eval_plan" and (plan["alpha"], plan["power"], plan["grade_width"]) == (0.05, 0.8, 0.1)
    rows = {r["name"]: r for r in plan["categories"]}
    assert list(rows) == ["chat", "math", "qa", "tiny"]
    assert rows["qa"]["one_grade_detectable"] is False and rows["qa"]["items_for_one_grade"] == 156
    assert rows["math"]["one_grade_detectable"] is True and rows["math"]["detectable_drop"] < 0.1
    assert rows["chat"]["binary"] is False and rows["chat"]["detectable_drop"] is None
    assert rows["tiny"]["enforced"] is False and rows["qa"]["enforced"] is True
    json.dumps(plan)


def test_plan_suite_sizes_categories_without_items_as_0_1_scores():
    """lm-eval results imported without samples: n and score from the category block."""
    r = report({})
    r["categories"] = {"arc": {"n": 1000, "score": 0.6}}
    [row] = plan_suite(r)["categories"]
    assert row["binary"] is None and row["n"] == 1000 and row["one_grade_detectable"] is True


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.update(kind="gate"), "not an eval report"),
    (lambda r: r.update(items=[], categories={}), "no categories"),
    (lambda r: r["items"][0].update(score=2), "score in"),
])
def test_plan_suite_refuses_bad_reports(mutate, message):
    r = report({"a": correct(30, 20)})
    mutate(r)
    with pytest.raises(InputError, match=message):
        plan_suite(r)


def test_eval_report_carries_the_sizing_of_each_category():
    items = [{"id": f"qa-{i}", "category": "qa", "score": s} for i, s in enumerate(correct(100, 95))]
    items += [{"id": f"chat-{i}", "category": "chat", "score": 0.85, "grade": "B"} for i in range(30)]
    built = build_report({"path": "m"}, Suite("suite.jsonl", []), items, EvalOptions())
    assert built["sizing"]["alpha"] == GatePolicy().alpha and built["sizing"]["power"] == GatePolicy().power
    assert built["sizing"]["grade_width"] == 0.1 and "McNemar" in built["sizing"]["model"]
    qa, chat = built["categories"]["qa"], built["categories"]["chat"]
    assert {"n", "score", "grade", "a_rate", "ci"} <= qa.keys()
    assert (qa["one_grade_detectable"], qa["items_for_one_grade"]) == (False, 156)
    assert chat["detectable_drop"] is None


# ---------------------------------------------------------------------------------------------------------
# prefgate eval plan


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(eval_commands.app, name="eval")

    @app.callback()
    def _root() -> None:
        """Keep `eval` as a named sub-command."""

    return app


def test_cli_plan_prints_the_table_and_writes_json(tmp_path: Path):
    path = tmp_path / "base.json"
    path.write_text(json.dumps(report({"qa": correct(100, 95), "math": correct(400, 320)})))
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(cli(), ["eval", "plan", "--baseline", str(path), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "qa" in result.stdout and "156" in result.stdout and "cannot detect a one-grade drop: qa" in result.stdout
    plan = json.loads(out.read_text())
    assert plan["baseline"]["path"] == str(path) and plan["min_items"] == 20
    strict = CliRunner().invoke(cli(), ["eval", "plan", "--baseline", str(path), "--alpha", "0.01", "--power", "0.9",
                                        "--json", str(out)])
    assert strict.exit_code == 0, strict.output
    assert json.loads(out.read_text())["categories"][1]["items_for_one_grade"] == items_needed(0.95, 0.1, 0.01, 0.9)


def test_cli_plan_bad_input_exits_2_with_one_line(tmp_path: Path):
    path = tmp_path / "base.json"
    path.write_text(json.dumps(report({"qa": correct(100, 95)})))
    runner = CliRunner()
    for args in (["--baseline", str(tmp_path / "missing.json")], ["--baseline", str(path), "--alpha", "1.5"]):
        result = runner.invoke(cli(), ["eval", "plan", *args])
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
