"""The sweep report as one self-contained HTML page, built from the sweep JSON.

`sweep_html(report)` (and `write_sweep_html(report, path)`) take the dict `prefgate.sweep.sweep` returns, or
its saved `sweep.json` read back. The page: the recommendation, one row per point, held-out preference
accuracy against KL (one curve per loss), and the per-category grades of the base model (read from the
report's `base_eval` file when it is there) and of every point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefgate.report import plots
from prefgate.report.html import render, write_html
from prefgate.reportio import read_json


def _acc(p: dict[str, Any]) -> float:
    return p["preference"]["accuracy"]


def _kl(p: dict[str, Any]) -> float:
    value = p["kl"]["mean_per_token"]
    return value if value is not None else float("inf")


def accuracy_kl_plot(report: dict[str, Any]) -> str | None:
    """Held-out preference accuracy against KL to the reference, one curve per loss (points in beta order);
    a red cross marks a point the gate blocks, a star the recommended one."""
    done = [p for p in report["points"] if p["status"] == "completed" and p["kl"]["mean_per_token"] is not None]
    if not done:
        return None
    fig = plots.figure(6.0, 4.2)
    ax = fig.add_subplot()
    for loss in report["grid"]["losses"]:
        pts = sorted((p for p in done if p["loss"] == loss), key=lambda p: p["beta"])
        if not pts:
            continue
        ax.plot([_kl(p) for p in pts], [_acc(p) for p in pts], marker="o", label=loss)
        for p in pts:
            ax.annotate(f"β={p['beta']:g}", (_kl(p), _acc(p)), textcoords="offset points", xytext=(4, 4), fontsize=7)
    blocked = [p for p in done if p["gate"] and p["gate"]["decision"] == "block"]
    if blocked:
        ax.scatter([_kl(p) for p in blocked], [_acc(p) for p in blocked], marker="x", s=70, color=plots.ACCENT,
                   label="gate blocks", zorder=3)
    best = [p for p in done if p["name"] == report["recommendation"]["point"]]
    if best:
        ax.scatter([_kl(best[0])], [_acc(best[0])], marker="*", s=220, color="#f1c40f", edgecolor="#555555",
                   label="recommended", zorder=4)
    kls = [_kl(p) for p in done]
    if min(kls) > 0 and max(kls) / min(kls) > 20:  # betas far apart: a linear axis crowds the low-KL points
        ax.set_xscale("log")
    ax.set(title="Preference accuracy against KL", xlabel="KL(policy || reference), nats per token",
           ylabel="held-out preference accuracy")
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return plots.to_data_uri(fig)


def _grade_rows(report: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """(categories, rows): the base model's and each point's per-category grade and score."""
    rows, categories = [], set()
    base = read_json(report["base_eval"], what="an eval report", missing_ok=True) if report.get("base_eval") else None
    if base is not None:
        rows.append({"name": "base", "overall": base["overall"], "categories": base["categories"], "gate": None})
    for p in report["points"]:
        if p.get("eval"):
            rows.append({"name": p["name"], "overall": p["eval"]["overall"], "categories": p["eval"]["categories"],
                         "gate": p["gate"]})
    for row in rows:
        categories |= set(row["categories"])
    return sorted(categories), rows


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:.4g}"


def sweep_html(report: dict[str, Any]) -> str:
    """The page for a sweep report (as `sweep` returned it, or read back from sweep.json)."""
    categories, grade_rows = _grade_rows(report)
    return render("sweep.html.j2", report=report, plot=accuracy_kl_plot(report), categories=categories,
                  grade_rows=grade_rows, name=Path(report["config"]["path"]).name, filters={"num": _num})


def write_sweep_html(report: dict[str, Any], path: str | Path) -> Path:
    return write_html(sweep_html(report), path)
