"""The demo's two reports: `report.json` (every decision, number and setting) and `report.html`, which is
rendered from the JSON alone (`render_html(json.load(f))` draws the same page again).

Top of the page: the decision of each stage. Then the per-category table SFT vs every run, the chosen
log-prob shift over training, the token-level diagnosis of one pair, the audit findings, and the settings.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from prefgate.demo import stages
from prefgate.demo.findings import findings
from prefgate.demo.graders import ORACLE_RATER
from prefgate.demo.page import render_page
from prefgate.demo.settings import SFT_CONFIG, SFT_PER_CATEGORY
from prefgate.reportio import header, write_json

REPORT_VERSION = 1


# -- report.json -------------------------------------------------------------------------------------------


def _audit_summary(report: dict) -> dict:
    checks = {c["id"]: c for c in report["checks"]}
    agreement = checks["label_agreement"]
    return {"verdict": report["verdict"], "fingerprint": report["dataset"]["fingerprint"],
            "n_records": report["dataset"]["n_records"],
            "checks": {c["id"]: {"status": c["status"], "value": c["value"], "message": c["message"]}
                       for c in report["checks"]},
            "label_agreement": {"status": agreement["status"], "agreement": agreement["value"],
                                "n_labelled": agreement.get("details", {}).get("n_labelled"),
                                "rater": ORACLE_RATER}}


def _run_summary(spec, outcome: dict, run_dir: Path | None, epochs: int) -> dict:
    """One run for report.json; `chosen_shift_last_epoch` is the mean per-token chosen shift over the last
    epoch's steps (one step's batch is too noisy to quote)."""
    out = {"loss": spec.loss, "pairs": spec.pairs, "hyperparameters": spec.hyperparameters,
           "seed_offset": spec.seed_offset, "status": outcome["status"], "reason": outcome.get("reason"),
           "seconds": outcome.get("seconds")}
    if outcome["status"] != "completed":
        return out
    gate = outcome["gate"]
    series = stages.metric_series(run_dir, "logps/chosen_shift")
    last_epoch = [v for _, v in series[-max(1, outcome["steps"] // epochs):]]
    out.update(run_id=outcome["run_id"], steps=outcome["steps"],
               final_chosen_shift=outcome["final_metrics"].get("logps/chosen_shift"),
               chosen_shift_last_epoch=round(sum(last_epoch) / len(last_epoch), 5),
               eval=outcome["eval"], gate={"decision": gate["decision"], "reasons": gate["reasons"],
                                           "warnings": gate["warnings"], "path": outcome["gate_path"]},
               chosen_shift=[[s, round(v, 5)] for s, v in series])
    return out


def _diagnosis(reports: dict[str, dict]) -> dict:
    """The pair whose chosen answer DPO pushed down the most, as every diagnosed run sees it."""
    if "dpo-v8" not in reports:
        return {}
    rows = reports["dpo-v8"]["pairs"]
    worst = min(rows, key=lambda r: sum(p - q for p, q in zip(r["policy_chosen_logps"], r["reference_chosen_logps"],
                                                                strict=True)))
    out = {"pair_id": worst["id"], "runs": {}}
    for name, report in reports.items():
        row = next(r for r in report["pairs"] if r["id"] == worst["id"])
        out["runs"][name] = {"summary": report["summary"], "pair": row}
    return out


def seed_repeats(runs: dict[str, dict], sft_score: float) -> dict[str, dict]:
    """For each repeated run: the overall change (points) on every preference seed, mean and sd."""
    import statistics

    from prefgate.demo.settings import REPEATED

    out = {}
    for name in REPEATED:
        group = [r for n, r in runs.items() if (n == name or n.startswith(f"{name}-s")) and r["status"] == "completed"]
        if len(group) < 2:
            continue
        deltas = [round(100 * (r["eval"]["overall"]["score"] - sft_score), 2) for r in group]
        out[name] = {"seeds": [r["seed_offset"] for r in group], "deltas": deltas,
                     "mean": round(statistics.mean(deltas), 2), "sd": round(statistics.stdev(deltas), 2),
                     "chosen_shift": [r["chosen_shift_last_epoch"] for r in group]}
    return out


def build_json(story) -> dict[str, Any]:
    data, settings = story.data, story.settings
    runs = {spec.name: _run_summary(spec, data["runs"][spec.name], Path(data["runs"][spec.name]["run_dir"] or "."),
                                    settings.epochs) for spec in settings.all_runs}
    report = {
        **header("demo", REPORT_VERSION),
        "mode": settings.mode, "seed": story.seed, "from_scratch": story.from_scratch,
        "machine": {"python": platform.python_version(), "cpu": platform.machine(), "threads": settings.threads},
        "settings": {**settings.describe(), "sft": {"per_category": SFT_PER_CATEGORY, **SFT_CONFIG}},
        "task": data["task"],
        "sft": {"source": "trained from scratch" if story.from_scratch else "shipped checkpoint",
                "run_id": data["baseline"]["run_id"],
                "eval": {k: data["sft_eval"][k] for k in ("overall", "categories")}},
        "pairs": {n: {"path": str(s.path), "n_pairs": s.n_pairs, "skipped": s.skipped, "description": s.description}
                  for n, s in data["sets"].items()},
        "audits": {n: _audit_summary(a) for n, a in data["audits"].items()},
        "runs": runs,
        "seed_repeats": seed_repeats(runs, data["sft_eval"]["overall"]["score"]),
        "gates": {n: r["gate"]["decision"] for n, r in runs.items() if r["status"] == "completed"},
        "baseline_promotion": data["baseline"],
        "promotions": data["promotions"],
        "prod_history": stages.alias_history(story.layout / ".prefgate"),
        "diagnosis": _diagnosis(data["diagnose"]),
        "timings": story.timings,
    }
    report["findings"] = findings(report)
    return report


def write_reports(story) -> dict[str, Any]:
    from prefgate.report.audit import write_audit_html
    from prefgate.report.html import write_html

    for name, audit in story.data["audits"].items():
        write_audit_html(audit, story.layout.audits / f"{name}.html")
    report = build_json(story)
    report["wall_seconds"] = round(story.elapsed, 1)
    write_json(report, story.layout / "report.json")
    write_html(render_html(report), story.layout / "report.html")
    report["wall_seconds"] = round(story.elapsed, 1)  # including the report itself
    write_json(report, story.layout / "report.json")
    return report


def render_html(report: dict[str, Any]) -> str:
    """report.html from report.json alone (`demo.page.render_page`)."""
    return render_page(report)
