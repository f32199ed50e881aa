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
           "seed_offset": spec.seed_offset, "on_block": spec.on_block, "lr": spec.lr, "status": outcome["status"],
           "reason": outcome.get("reason"),
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
               chosen_shift=[[s, round(v, 5)] for s, v in series],
               monitor=_monitor_summary(outcome, run_dir), in_training_gate=_gate_summary(outcome))
    return out


def _monitor_summary(outcome: dict, run_dir: Path) -> dict | None:
    """When the collapse monitor fired (with the test accuracy of the model at that step), or that it did not,
    and the signal it read over training."""
    monitor = outcome.get("monitor")
    if not monitor:
        return None
    series = stages.metric_series(run_dir, monitor["metric"])
    fired = [{"step": f["step"], "value": round(f["value"], 4),
              "test": (outcome.get("monitor_test") or {}).get(str(f["step"]), {}).get("overall")}
             for f in monitor["fired"]]
    window = monitor["window"]
    means = [sum(v for t, v in series if step - window < t <= step) / sum(1 for t, _ in series
                                                                           if step - window < t <= step)
             for step, _ in series if step >= window]
    return {"signal": monitor["signal"], "metric": monitor["metric"], "threshold": monitor["threshold"],
            "window": window, "probe": monitor.get("probe"), "fired": fired,
            "lowest": round(min(means), 4) if means else None, "series": [[s, round(v, 5)] for s, v in series]}


def _gate_summary(outcome: dict) -> dict | None:
    """The in-training gate's verdicts over steps (dev suite), the model the run ended with, and its cost."""
    gate = outcome.get("in_training_gate")
    if not gate:
        return None
    verdicts = [{"step": v["step"], "decision": v["decision"], "dev": round(v["overall"]["score"], 4),
                 "grade": v["overall"]["grade"], "reason": v["reasons"][0] if v["reasons"] else None,
                 "categories": {k: round(c["score"], 4) for k, c in v["categories"].items()}}
                for v in gate["verdicts"]]
    return {"suite": gate["suite"]["path"], "n_items": gate["suite"]["n_items"], "every": gate["every"],
            "on_block": gate["on_block"], "baseline": gate["baseline"]["source"], "verdicts": verdicts,
            "output": gate["output"], "seconds": gate["seconds"]}


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


def gate_overhead(runs: dict[str, dict]) -> dict | None:
    """What the in-training gate cost: its evaluations' seconds as a share of the runs' seconds, over all runs."""
    gated = [r["in_training_gate"] for r in runs.values() if r.get("in_training_gate")]
    if not gated:
        return None
    spent = sum(g["seconds"]["baseline"] + g["seconds"]["evaluations"] for g in gated)
    total = sum(g["seconds"]["run"] for g in gated)
    return {"runs": len(gated), "evaluations": sum(len(g["verdicts"]) for g in gated),
            "eval_seconds": round(spent, 1), "run_seconds": round(total, 1), "share": round(spent / total, 4)}


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
        "overhead": gate_overhead(runs),
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
