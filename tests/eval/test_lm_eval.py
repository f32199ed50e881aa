"""`prefgate eval import-lm-eval` on hand-written fixtures in lm-eval-harness 0.4.x's format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from prefgate.commands import eval as eval_commands
from prefgate.errors import InputError
from prefgate.eval.lm_eval import import_lm_eval
from prefgate.gate import decide

FIXTURES = Path(__file__).parent / "fixtures" / "lm_eval"


def run_files(run: str) -> tuple[Path, list[Path]]:
    folder = FIXTURES / run
    return next(folder.glob("results_*.json")), sorted(folder.glob("samples_*.jsonl"))


def test_results_only_gives_one_category_per_leaf_task():
    results, _ = run_files("base")
    report = import_lm_eval(results)
    assert report["kind"] == "eval" and report["items"] == []
    # mmlu is a group: its subtasks are the categories; wikitext has only perplexities (lower is better).
    assert sorted(report["categories"]) == ["arc_easy", "gsm8k", "mmlu_abstract_algebra", "mmlu_anatomy"]
    assert report["skipped"] == [{"task": "wikitext", "reason": "no metric in [0, 1] with higher values better"}]
    arc = report["categories"]["arc_easy"]
    assert arc["score"] == pytest.approx(5 / 6) and arc["n"] == 6 and arc["grade"] == "B"
    assert arc["ci"][0] < arc["score"] < arc["ci"][1]
    assert report["suite"]["tasks"]["gsm8k"] == {"version": 3.0, "n_shot": 5, "metric": "exact_match",
                                                 "filter": "strict-match"}
    assert report["model"]["path"] == "./runs/base" and report["model"]["source"] == "lm-eval"
    assert report["overall"]["n"] == 18  # 6 + 4 + 3 + 5, weighted by documents


def test_samples_give_per_item_scores_for_the_chosen_metric_and_filter():
    results, samples = run_files("base")
    report = import_lm_eval(results, samples)
    items = {it["id"]: it for it in report["items"]}
    assert len(items) == 6 + 4 + 3  # gsm8k's flexible-extract lines are not double-counted
    assert items["arc_easy/3"]["score"] == 0.0 and "output" not in items["arc_easy/3"]  # log-likelihoods
    assert items["gsm8k/2"] == {"id": "gsm8k/2", "category": "gsm8k", "score": 0.0, "output": "[invalid]"}
    assert report["categories"]["gsm8k"]["score"] == pytest.approx(0.75)
    assert report["categories"]["mmlu_anatomy"]["n"] == 5  # no samples: the harness's number only
    assert report["warnings"] == []
    flexible = import_lm_eval(results, samples, metric="exact_match,flexible-extract")
    assert flexible["categories"]["gsm8k"]["score"] == 1.0 and "arc_easy" not in flexible["categories"]
    norm = import_lm_eval(results, samples, metric="acc_norm")
    assert [it["score"] for it in norm["items"]] == [1.0, 1.0, 0.0, 1.0, 1.0, 1.0]


def test_two_models_on_the_same_tasks_share_a_fingerprint_and_can_be_gated():
    base = import_lm_eval(*run_files("base"))
    candidate = import_lm_eval(*run_files("candidate"))
    assert base["suite"]["fingerprint"] == candidate["suite"]["fingerprint"]
    assert import_lm_eval(run_files("base")[0])["suite"]["fingerprint"] != base["suite"]["fingerprint"]
    gate = decide(base, candidate)
    assert {row["name"] for row in gate["categories"]} == {"arc_easy", "gsm8k", "mmlu_abstract_algebra"}
    assert any("'mmlu_anatomy' has no per-item scores" in w for w in gate["warnings"])
    assert all(row["n"] < 20 and row["status"] in ("pass", "warn") for row in gate["categories"])


def test_bad_inputs(tmp_path):
    results, samples = run_files("base")
    renamed = tmp_path / "arc.jsonl"
    shutil.copy(samples[0], renamed)
    with pytest.raises(InputError, match="expected samples_<task>_<timestamp>.jsonl"):
        import_lm_eval(results, [renamed])
    unknown = tmp_path / "samples_hellaswag_2025-01-15T10-20-30.123456.jsonl"
    unknown.write_text("")
    with pytest.raises(InputError, match="'hellaswag' is not among"):
        import_lm_eval(results, [unknown])
    broken = tmp_path / "results.json"
    broken.write_text(json.dumps({"results": {}}))
    with pytest.raises(InputError, match="non-empty \"results\""):
        import_lm_eval(broken)
    bad_line = tmp_path / samples[0].name
    bad_line.write_text('{"doc_id": 0, "filter": "none", "acc": 2}\n')
    with pytest.raises(InputError, match=r":1: field 'acc': expected a number in \[0, 1\]"):
        import_lm_eval(results, [bad_line])
    with pytest.raises(InputError, match="no task has a metric"):
        import_lm_eval(results, metric="bleu")


def test_cli_import(tmp_path):
    app = typer.Typer()
    app.add_typer(eval_commands.app, name="eval")

    @app.callback()
    def _root() -> None:
        """Keep `eval` as a named sub-command."""

    results, samples = run_files("candidate")
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["eval", "import-lm-eval", str(results), *map(str, samples), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert len(report["items"]) == 13 and "skipped task wikitext" in result.stderr
    result = CliRunner().invoke(app, ["eval", "import-lm-eval", str(tmp_path / "nope.json"), "--out", str(out)])
    assert result.exit_code == 2 and "no such file" in result.stderr
