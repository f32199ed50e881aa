"""report.html: one self-contained page (prefgate's report base template, plots inlined as PNG).

`render_page(report)` draws it from report.json alone (`demo.report` builds that JSON and calls this).
"""

from __future__ import annotations

from typing import Any

from prefgate.report import plots

KEY_CHECKS = ("label_agreement", "style_only", "edit_distance", "leakage", "rejection_diversity", "identical")
CHIP = {"promote": "pass", "block": "fail", "pass": "pass", "warn": "warn", "fail": "fail", "refused": "fail",
        "completed": "pass", "aborted": "fail", "promoted": "pass", "kept": "skip", "skipped": "skip"}
RUN_COLORS = {"dpo": plots.ACCENT, "dpop": plots.COLOR, "ipo": "#7d3c98"}


def decision_rows(report: dict) -> list[dict[str, str]]:
    rows = []
    for name, audit in report["audits"].items():
        why = "; ".join(f"{status}ed: {', '.join(ids)}" for status in ("fail", "warn")
                        if (ids := [cid for cid, c in audit["checks"].items() if c["status"] == status]))
        rows.append({"stage": "audit", "what": name, "decision": audit["verdict"], "why": why or "every check passed"})
    for name, run in report["runs"].items():
        if run["status"] != "completed":
            rows.append({"stage": "train", "what": name, "decision": run["status"], "why": run["reason"] or ""})
            continue
        gate = run["gate"]
        why = gate["reasons"][0] if gate["reasons"] else "no category fell more than one grade significantly"
        rows.append({"stage": "gate", "what": f"{name} vs SFT", "decision": gate["decision"], "why": why})
    return rows + registry_rows(report["promotions"])


def registry_rows(promotions: list[dict]) -> list[dict[str, str]]:
    """One row for the promotion, one for the runs the registry refused, one for those passed over."""
    rows = [{"stage": "registry", "what": f"promote {p['run']} to prod", "decision": "promoted", "why": p["message"]}
            for p in promotions if p["promoted"]]
    refused = [p for p in promotions if p["outcome"] == "refused"]
    if refused:
        rows.append({"stage": "registry", "what": "promote " + ", ".join(p["run"] for p in refused),
                     "decision": "refused", "why": refused[0]["message"]})
    kept = [p for p in promotions if p["outcome"] == "passed over"]
    if kept:
        rows.append({"stage": "registry", "what": ", ".join(p["run"] for p in kept), "decision": "kept",
                     "why": kept[0]["message"]})
    return rows


def main_runs(report: dict) -> dict[str, dict]:
    """The runs of the main comparison (seed repeats have their own table)."""
    return {n: r for n, r in report["runs"].items() if r["status"] == "completed" and not r.get("seed_offset")}


def grade_table(report: dict) -> dict[str, Any]:
    sft = report["sft"]["eval"]
    runs = main_runs(report)
    columns = ["SFT", *runs]
    rows = []
    for cat in [*sft["categories"], "overall"]:
        base = sft["overall"] if cat == "overall" else sft["categories"][cat]
        cells = [{"score": base["score"], "grade": base["grade"], "delta": None}]
        for run in runs.values():
            cand = run["eval"]["overall"] if cat == "overall" else run["eval"]["categories"][cat]
            delta = int(round(100 * (cand["score"] - base["score"])))  # whole points; never "-0"
            cells.append({"score": cand["score"], "grade": cand["grade"], "delta": delta})
        rows.append({"category": cat, "n": base["n"], "cells": cells})
    return {"columns": columns, "rows": rows}


def category_plot(report: dict) -> str:
    sft = report["sft"]["eval"]
    runs = main_runs(report)
    series = {"SFT": [sft["categories"][c]["score"] for c in sft["categories"]]}
    series.update({n: [r["eval"]["categories"][c]["score"] for c in sft["categories"]] for n, r in runs.items()})
    fig = plots.figure(7.6, 3.6)
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    palette = ["#555555", plots.ACCENT, plots.COLOR, "#7d3c98", "#e59866", "#76d7c4", "#f4d03f"]
    for k, (name, values) in enumerate(series.items()):
        ax.bar([i + (k - (len(series) - 1) / 2) * width for i in range(len(values))], values, width=width,
               label=name, color=palette[k % len(palette)])
    ax.set_xticks(range(len(sft["categories"])))
    ax.set_xticklabels(list(sft["categories"]))
    ax.set(ylim=(0, 1.05), ylabel="test exact match", title="Per-category test accuracy")
    fig.legend(*ax.get_legend_handles_labels(), frameon=False, fontsize=8, ncol=min(4, len(series)),
               loc="outside lower center")
    ax.spines[["top", "right"]].set_visible(False)
    return plots.to_data_uri(fig)


def shift_plot(report: dict) -> str | None:
    runs = {n: r for n, r in main_runs(report).items() if r.get("chosen_shift") and r.get("on_block") != "keep_best"}
    if not runs:
        return None
    fig = plots.figure(7.6, 3.6)
    ax = fig.add_subplot()
    window = max(1, next(iter(runs.values()))["steps"] // report["settings"]["epochs"])
    for name, run in runs.items():
        steps, values = zip(*run["chosen_shift"], strict=True)
        style = "-" if run["pairs"] == "v8" else ":"
        ax.plot(steps, running_mean(values, window), style, label=name,
                color=RUN_COLORS.get(run["loss"], "#888888"), linewidth=1.6 if run["pairs"] == "v8" else 1.1)
    ax.axhline(0, color="#555555", linewidth=0.8)
    ax.set(xlabel="optimizer step", ylabel="policy − reference log-prob\nof chosen, per token",
           title=f"logps/chosen_shift over training (running mean, {window} steps)")
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return plots.to_data_uri(fig)


def watch_rows(report: dict) -> list[dict[str, Any]]:
    """Per run: when the collapse monitor fired (or that it did not), the in-training gate's verdicts over steps,
    and the model the run ended with."""
    rows = []
    for name, run in main_runs(report).items():
        monitor, gate = run.get("monitor"), run.get("in_training_gate")
        if monitor is None and gate is None:
            continue
        fired = (monitor or {}).get("fired") or []
        if fired:
            f = fired[0]
            test = f"; test exact match there {f['test']['score']:.3f}" if f.get("test") else ""
            monitor_text = f"fired at step {f['step']} (running mean {f['value']:+.3f}{test})"
        else:
            monitor_text = f"did not fire (lowest running mean {(monitor or {}).get('lowest') or 0:+.3f})"
        verdicts = (gate or {}).get("verdicts", [])
        output = (gate or {}).get("output") or {}
        final = f"step {output['step']} (keep_best)" if output.get("from") == "snapshots/gate-passed" else \
            f"step {run['steps']} (final)"
        rows.append({"name": name, "monitor": monitor_text, "fired": bool(fired), "verdicts": verdicts,
                     "final": final, "test": run["eval"]["overall"]["score"], "gate": run["gate"]["decision"],
                     "share": (gate or {}).get("seconds", {}).get("share")})
    return rows


def monitor_plot(report: dict) -> str | None:
    runs = {n: r for n, r in main_runs(report).items() if (r.get("monitor") or {}).get("series")
            and r.get("on_block") != "keep_best"}
    if not runs:
        return None
    first = next(iter(runs.values()))["monitor"]
    fig = plots.figure(7.6, 3.6)
    ax = fig.add_subplot()
    for name, run in runs.items():
        steps, values = zip(*run["monitor"]["series"], strict=True)
        window = [sum(v for t, v in zip(steps, values, strict=True) if s - first["window"] < t <= s) /
                  sum(1 for t in steps if s - first["window"] < t <= s) for s in steps]
        style = "-" if run["pairs"] == "v8" else ":"
        ax.plot(steps, window, style, label=name, color=RUN_COLORS.get(run["loss"], "#888888"))
        for f in run["monitor"]["fired"]:
            ax.plot([f["step"]], [f["value"]], "v", color=plots.ACCENT, markersize=9)
    ax.axhline(first["threshold"], color=plots.ACCENT, linewidth=0.9, linestyle="--")
    ax.axhline(0, color="#555555", linewidth=0.8)
    ax.set(xlabel="optimizer step", ylabel="nats per token",
           title=f"collapse monitor: {first['metric']} (running mean, {first['window']} steps)")
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return plots.to_data_uri(fig)


def gate_plot(report: dict) -> str | None:
    runs = {n: r for n, r in main_runs(report).items() if (r.get("in_training_gate") or {}).get("verdicts")
            and (r.get("on_block") != "keep_best" or r.get("lr"))}
    if not runs:
        return None
    fig = plots.figure(7.6, 3.6)
    ax = fig.add_subplot()
    for name, run in runs.items():
        verdicts = run["in_training_gate"]["verdicts"]
        style = "-" if run["pairs"] == "v8" else ":"
        color = RUN_COLORS.get(run["loss"], "#888888")
        ax.plot([v["step"] for v in verdicts], [v["dev"] for v in verdicts], style, label=name, color=color)
        blocked = [v for v in verdicts if v["decision"] == "block"]
        ax.plot([v["step"] for v in blocked], [v["dev"] for v in blocked], "x", color=plots.ACCENT, markersize=8)
    ax.set(xlabel="optimizer step", ylabel="dev exact match",
           title="in-training gate on the dev suite (x: the gate blocked)")
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return plots.to_data_uri(fig)


def running_mean(values, window: int) -> list[float]:
    """Mean of the last `window` values at each step (fewer at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def diagnosis_view(report: dict) -> dict[str, Any] | None:
    from prefgate.report.diagnose import pair_plot

    diag = report.get("diagnosis") or {}
    if not diag:
        return None
    runs = diag["runs"]
    first = next(iter(runs.values()))["pair"]
    tokens = []
    for i, token in enumerate(first["chosen_tokens"]):
        shifts = {n: r["pair"]["policy_chosen_logps"][i] - r["pair"]["reference_chosen_logps"][i]
                  for n, r in runs.items()}
        tokens.append({"token": token if token.strip() else repr(token), "shifts": shifts,
                       "reference": first["reference_chosen_logps"][i],
                       "first_difference": i == first["first_difference"]})
    return {"pair_id": diag["pair_id"], "rejected": "".join(first["rejected_tokens"]),
            "chosen": "".join(first["chosen_tokens"]), "tokens": tokens, "runs": list(runs),
            "summaries": {n: r["summary"] for n, r in runs.items()},
            "plots": [{"name": n, "uri": pair_plot(r["pair"])} for n, r in runs.items()]}


def audit_rows(report: dict) -> list[dict[str, Any]]:
    """Each audit's key checks (KEY_CHECKS, in that order), then any other check that warned or failed."""
    out = []
    for name, audit in report["audits"].items():
        checks = [{"id": cid, **audit["checks"][cid]} for cid in KEY_CHECKS if cid in audit["checks"]]
        others = [{"id": cid, **c} for cid, c in audit["checks"].items() if cid not in KEY_CHECKS and
                  c["status"] in ("warn", "fail")]
        out.append({"name": name, "verdict": audit["verdict"], "n": audit["n_records"],
                    "description": report["pairs"][name]["description"], "checks": checks + others})
    return out


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "–"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def render_page(report: dict[str, Any]) -> str:
    """templates/report.html.j2, which extends prefgate's report base page."""
    from jinja2 import ChoiceLoader, PackageLoader

    from prefgate.report.html import environment

    base = environment()
    env = base.overlay(loader=ChoiceLoader([PackageLoader("prefgate.demo", "templates"), base.loader]))
    env.filters["f"] = _fmt
    env.filters["chip"] = lambda word: CHIP.get(word, "skip")
    context = {"report": report, "decisions": decision_rows(report), "grades": grade_table(report),
               "category_plot": category_plot(report), "shift_plot": shift_plot(report),
               "diagnosis": diagnosis_view(report), "audits": audit_rows(report), "watch": watch_rows(report),
               "monitor_plot": monitor_plot(report), "gate_plot": gate_plot(report)}
    return env.get_template("report.html.j2").render(**context)
