"""The audit report as one self-contained HTML page, built from the audit JSON alone.

Because it reads only the report dict, a saved `audit.json` can be rendered again later (or by another
tool) without the data. Plots: the edit-distance histogram, chosen vs rejected lengths, and counts of
categories and rejection types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefgate.audit.result import STATUSES, describe_threshold, pct
from prefgate.report import plots
from prefgate.report.html import render, write_html


def _checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


def _plot(plot_id: str, title: str, caption: str, uri: str | None = None, empty: str = "") -> dict[str, Any]:
    return {"id": plot_id, "title": title, "caption": caption, "uri": uri, "empty": empty}


def _edit_distance_plot(check: dict[str, Any] | None) -> dict[str, Any]:
    title = "Edit distance between chosen and rejected"
    hist = (check or {}).get("details", {}).get("histogram")
    if not hist:
        return _plot("edit_distance", title, "", empty=(check or {}).get("message", "not measured"))
    low = check["threshold"].get("low_edit_below")
    unit = check["details"]["unit"]
    uri = plots.histogram(hist["edges"], hist["counts"], title=title,
                          xlabel=f"normalised Levenshtein distance ({unit})", marker=low,
                          marker_label=f"low-edit (< {low:g})" if low is not None else None)
    return _plot("edit_distance", title, f"{pct(check['value'])} of pairs are low-edit.", uri)


def _length_plot(check: dict[str, Any] | None) -> dict[str, Any]:
    title = "Chosen vs rejected length"
    scatter = (check or {}).get("details", {}).get("scatter")
    if not scatter or not scatter["chosen"]:
        return _plot("lengths", title, "", empty=(check or {}).get("message", "not measured"))
    uri = plots.scatter(scatter["rejected"], scatter["chosen"], title=title,
                        xlabel="rejected length (characters + 1)", ylabel="chosen length (characters + 1)")
    caption = (f"{len(scatter['chosen'])} pairs shown; above the grey line the chosen answer is longer, "
               "above the red one more than twice as long.")
    return _plot("lengths", title, caption, uri)


def _counts_plot(plot_id: str, title: str, counts: dict[str, int], missing: str) -> dict[str, Any]:
    if not counts:
        return _plot(plot_id, title, "", empty=missing)
    return _plot(plot_id, title, f"{len(counts)} distinct values.", plots.bars(counts, title=title))


def audit_plots(report: dict[str, Any]) -> list[dict[str, Any]]:
    checks = _checks(report)
    stats = report.get("stats", {})
    return [
        _edit_distance_plot(checks.get("edit_distance")),
        _length_plot(checks.get("length_bias")),
        _counts_plot("categories", "Categories", stats.get("categories", {}),
                     "no record has a category field."),
        _counts_plot("rejection_types", "Rejection types", stats.get("rejection_types", {}),
                     "no record has a rejection_type field."),
    ]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _scalars(details: dict[str, Any]) -> list[tuple[str, str]]:
    """The details worth a line of text: numbers, strings, short lists and small dicts of numbers."""
    plain = (int, float, str)
    out = []
    for key, value in details.items():
        if isinstance(value, plain):
            out.append((key, _fmt(value)))
        elif isinstance(value, list) and len(value) <= 5 and all(isinstance(v, plain) for v in value):
            out.append((key, ", ".join(map(_fmt, value))))
        elif isinstance(value, dict) and len(value) <= 12 and all(isinstance(v, plain)
                                                                  for v in value.values()):
            out.append((key, ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())))
    return out


def audit_html(report: dict[str, Any]) -> str:
    """The page for an audit report dict (as `run_audit` returns it, or as read back from its JSON)."""
    counts = {s: sum(c["status"] == s for c in report["checks"]) for s in STATUSES}
    name = Path(str(report["dataset"]["path"])).name
    return render("audit.html.j2", report=report, counts=counts, name=name, plots=audit_plots(report),
                  filters={"pct": pct, "threshold": describe_threshold, "scalars": _scalars})


def write_audit_html(report: dict[str, Any], path: str | Path) -> Path:
    return write_html(audit_html(report), path)
