"""Plots for reports: matplotlib figures rendered to PNG data URIs, so an HTML page needs no other file.

Figures are built with `matplotlib.figure.Figure` and rendered by the Agg canvas directly: no pyplot, no
global backend switch, nothing that needs a display. Each function takes plain lists (what a JSON report
holds) and returns a `data:image/png;base64,...` string.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

COLOR = "#3b6ea8"
ACCENT = "#c0392b"
MAX_BARS = 20


def figure(width: float = 5.6, height: float = 3.4) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def histogram(edges: Sequence[float], counts: Sequence[int], *, title: str, xlabel: str,
              ylabel: str = "pairs", marker: float | None = None, marker_label: str | None = None) -> str:
    """A histogram from precomputed bin edges and counts; an optional dashed line at `marker`."""
    fig = figure()
    ax = fig.add_subplot()
    widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color=COLOR, edgecolor="white", linewidth=0.5)
    if marker is not None:
        ax.axvline(marker, color=ACCENT, linestyle="--", linewidth=1.2, label=marker_label)
        if marker_label:
            ax.legend(frameon=False)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.spines[["top", "right"]].set_visible(False)
    return to_data_uri(fig)


def scatter(x: Sequence[float], y: Sequence[float], *, title: str, xlabel: str, ylabel: str,
            ratios: Sequence[float] = (1.0, 2.0)) -> str:
    """A log-log scatter of y against x with reference lines y = r * x for each r in `ratios`."""
    fig = figure(5.0, 4.2)
    ax = fig.add_subplot()
    xs = [v + 1 for v in x]  # +1: empty answers (length 0) stay on a log axis
    ys = [v + 1 for v in y]
    ax.scatter(xs, ys, s=6, alpha=0.35, color=COLOR, linewidths=0)
    top = max([*xs, *ys, 10])
    for r in ratios:
        ax.plot([1, top], [r, r * top], color=ACCENT if r != 1 else "#888888", linestyle="--", linewidth=1,
                label=f"{ylabel.split()[0]} = {'' if r == 1 else f'{r:g} x '}{xlabel.split()[0]}")
    ax.set(xscale="log", yscale="log", xlim=(1, top * 1.2), ylim=(1, top * 1.2), title=title,
           xlabel=xlabel, ylabel=ylabel)
    ax.legend(frameon=False, loc="upper left")
    ax.spines[["top", "right"]].set_visible(False)
    return to_data_uri(fig)


def bars(counts: dict[str, int], *, title: str, xlabel: str = "records") -> str:
    """Horizontal bars, largest first; at most MAX_BARS, the rest summed as 'other'."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(items) > MAX_BARS:
        rest = sum(v for _, v in items[MAX_BARS - 1:])
        items = [*items[: MAX_BARS - 1], (f"other ({len(items) - MAX_BARS + 1})", rest)]
    fig = figure(5.6, 0.9 + 0.28 * len(items))
    ax = fig.add_subplot()
    names = [str(k) for k, _ in items][::-1]
    ax.barh(names, [v for _, v in items][::-1], color=COLOR)
    ax.set(title=title, xlabel=xlabel)
    ax.spines[["top", "right"]].set_visible(False)
    return to_data_uri(fig)
