"""The diagnose and sweep pages, drawn from report dicts alone (no model, no training)."""

from __future__ import annotations

from prefgate.report.diagnose import SEGMENTS as PAGE_SEGMENTS
from prefgate.report.sweep import sweep_html, write_sweep_html
from prefgate.reportio import header


def test_the_diagnose_page_reads_the_segments_the_stage_writes():
    from prefgate.diagnose import SEGMENTS

    assert PAGE_SEGMENTS == SEGMENTS


def _point(name: str, loss: str, beta: float, accuracy: float, kl: float, decision: str | None) -> dict:
    gate = {"decision": decision, "reasons": [] if decision == "promote" else ["category 'math' fell"],
            "warnings": [], "path": "g.json"} if decision else None
    return {"name": name, "loss": loss, "beta": beta, "run_dir": name, "status": "completed", "reason": None,
            "reused": False, "run_id": name, "steps": 2, "train_metrics": {"logps/chosen_shift": -0.1},
            "preference": {"n": 6, "beta": beta, "accuracy": accuracy, "mean_margin": 0.1},
            "kl": {"n_prompts": 3, "n_tokens": 9, "mean_per_token": kl, "mean_per_sequence": 3 * kl},
            "eval": {"path": f"{name}.eval.json", "overall": {"n": 3, "score": 0.5, "grade": "C"},
                     "categories": {"math": {"n": 3, "score": 0.5, "grade": "C"}}} if decision else None,
            "gate": gate, "registry": None}


def _report(tmp_path, *, suite: bool) -> dict:
    points = [_point("dpo-beta0.1", "dpo", 0.1, 0.5, 0.4, "block" if suite else None),
              _point("dpop-beta0.1", "dpop", 0.1, 0.6, 0.1, "promote" if suite else None)]
    return {**header("sweep", 1, config={"path": str(tmp_path / "sweep.yaml"), "sha256": "0" * 64, "overrides": []}),
            "grid": {"losses": ["dpo", "dpop"], "betas": [0.1]}, "out_dir": str(tmp_path), "base_model": "b",
            "reference": "b", "eval_data": {"path": "held.jsonl", "fingerprint": "f", "n_records": 6},
            "kl": {"estimator": "exact", "prompts": "up to 3 distinct held-out prompts", "max_new_tokens": 3},
            "suite": {"path": "suite.jsonl", "fingerprint": "s"} if suite else None,
            "base_eval": str(tmp_path / "missing-base.eval.json") if suite else None, "policy": None,
            "points": points, "recommendation": {"point": "dpop-beta0.1", "reason": "the best accuracy"}}


def test_sweep_page_with_and_without_a_suite(tmp_path):
    page = sweep_html(_report(tmp_path, suite=True))
    assert page.count("data:image/png;base64,") == 1 and 'id="grades"' in page and "dpop-beta0.1" in page
    assert "<code>base</code>" not in page  # the base eval file is gone: its row is left out, not an error
    path = write_sweep_html(_report(tmp_path, suite=False), tmp_path / "sweep.html")
    assert "no suite: run the sweep with --suite" in path.read_text(encoding="utf-8")
