"""The diagnose report as one self-contained HTML page, built from the diagnose JSON alone.

`diagnose_html(report)` (and `write_diagnose_html(report, path)`) take the dict `prefgate.diagnose.diagnose`
returns, or its saved JSON read back. Plots: one pair's per-token change (`pair_plot`, also drawn on the
demo's page) and the chosen shift per edit-distance bucket (`buckets_plot`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefgate.errors import InputError
from prefgate.report import plots
from prefgate.report.html import render, write_html

# The report's segment keys, in order (`prefgate.diagnose.SEGMENTS`; not imported: a page needs no torch).
SEGMENTS = ("before", "at", "after")
SEGMENT_COLORS = {"before": "#9aa5b1", "at": "#c0392b", "after": "#3b6ea8"}
REJECTED_COLOR = "#e0b4ae"


def _pick_pair(report: dict[str, Any], pair_id: str | None) -> dict[str, Any] | None:
    pairs = report["pairs"]
    if pair_id is not None:
        for row in pairs:
            if row["id"] == pair_id:
                return row
        raise InputError(f"no pair with id {pair_id!r} in the report", field="pair")
    with_after = [r for r in pairs if r["after"] is not None]
    if with_after:  # the pair where the chosen tokens after the difference fell the most
        return min(with_after, key=lambda r: r["after"])
    return pairs[0] if pairs else None


def _token_label(token: str) -> str:
    text = repr(token)[1:-1].replace(" ", "␣")  # a visible space: tokens often start with one
    return text if len(text) <= 12 else text[:11] + "…"


def pair_plot(row: dict[str, Any], *, window: int = 60) -> str:
    """Bars of one pair's per-token chosen shift, coloured by segment, beside the rejected's; at most `window`
    tokens from a little before the first difference. `row` is one entry of the report's `pairs`."""
    from matplotlib.patches import Patch

    chosen = [p - r for p, r in zip(row["policy_chosen_logps"], row["reference_chosen_logps"], strict=True)]
    rejected = [p - r for p, r in zip(row["policy_rejected_logps"], row["reference_rejected_logps"], strict=True)]
    index = row["first_difference"]
    start = max(0, (index or 0) - window // 3)
    xs_c = list(range(start, min(start + window, len(chosen))))
    xs_r = list(range(start, min(start + window, len(rejected))))
    fig = plots.figure(max(5.6, 0.22 * max(len(xs_c), len(xs_r)) + 1.5), 3.8)
    ax = fig.add_subplot()
    segment = ["before" if index is None or i < index else "at" if i == index else "after" for i in xs_c]
    ax.bar([i - 0.2 for i in xs_c], [chosen[i] for i in xs_c], width=0.4,
           color=[SEGMENT_COLORS[s] for s in segment])
    ax.bar([i + 0.2 for i in xs_r], [rejected[i] for i in xs_r], width=0.4, color=REJECTED_COLOR)
    if index is not None:
        ax.axvline(index - 0.5, color=SEGMENT_COLORS["at"], linestyle="--", linewidth=1)
    ax.axhline(0, color="#555555", linewidth=0.8)
    ax.set_xticks(xs_c)
    ax.set_xticklabels([_token_label(row["chosen_tokens"][i]) for i in xs_c], rotation=90, fontsize=7)
    ax.set(title=f"pair {row['id']}: per-token change", xlabel="chosen tokens",
           ylabel="policy − reference log-prob")
    handles = [Patch(color=SEGMENT_COLORS[s], label=f"chosen, {s}") for s in SEGMENTS]
    ax.legend(handles=[*handles, Patch(color=REJECTED_COLOR, label="rejected")], frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return plots.to_data_uri(fig)


def buckets_plot(buckets: Sequence[dict[str, Any]]) -> str:
    """Grouped bars: the chosen shift before, at and after the difference, per edit-distance bucket."""
    fig = plots.figure(6.4, 3.6)
    ax = fig.add_subplot()
    for k, seg in enumerate(SEGMENTS):
        xs = [i + (k - 1) * 0.27 for i in range(len(buckets))]
        ax.bar(xs, [b[seg] if b[seg] is not None else 0.0 for b in buckets], width=0.27, color=SEGMENT_COLORS[seg],
               label=seg)
    ax.axhline(0, color="#555555", linewidth=0.8)
    ax.set_xticks(range(len(buckets)))
    ax.set_xticklabels([f"{b['edit_distance'][0]:g}–{b['edit_distance'][1]:g}\n(n={b['n']})" for b in buckets],
                       fontsize=8)
    ax.set(title="Chosen shift around the first difference", xlabel="normalised edit distance (characters)",
           ylabel="mean policy − reference\nper token")
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return plots.to_data_uri(fig)


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:+.4f}"


def diagnose_html(report: dict[str, Any], *, pair_id: str | None = None) -> str:
    """The page for a diagnose report (read from JSON or as `diagnose` returned it); `pair_id` picks the pair
    plotted token by token (default: the one whose chosen tokens after the difference fell the most)."""
    row = _pick_pair(report, pair_id)
    caption = "" if row is None else (
        f"chosen tokens coloured grey before, red at and blue after the first difference (index "
        f"{row['first_difference']}); rejected tokens in light red. "
        + ("Chosen by --pair." if pair_id else "The pair whose chosen tokens after the difference fell the most."))
    page_plots = [
        {"id": "pair", "title": "One pair's per-token change", "caption": caption,
         "uri": pair_plot(row) if row else None, "empty": "no pairs"},
        {"id": "buckets", "title": "By edit distance", "uri": buckets_plot(report["buckets"]), "empty": "",
         "caption": "Means over pairs of each pair's per-token mean; an empty bucket shows 0."},
    ]
    return render("diagnose.html.j2", report=report, plots=page_plots, segments=SEGMENTS,
                  name=Path(str(report["dataset"]["path"])).name, filters={"num": _num})


def write_diagnose_html(report: dict[str, Any], path: str | Path, *, pair_id: str | None = None) -> Path:
    return write_html(diagnose_html(report, pair_id=pair_id), path)
