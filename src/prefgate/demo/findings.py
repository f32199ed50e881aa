"""Plain sentences saying what the demo's numbers show, written from report.json alone.

Each sentence is computed from the numbers, never assumed: if plain DPO did not regress in a run, the
sentence says so. A regression means a drop of at least `REGRESSION_POINTS` test accuracy points.
"""

from __future__ import annotations

from typing import Any

REGRESSION_POINTS = 2.0


def points(before: float, after: float) -> float:
    return round(100 * (after - before), 1)


def _category_moves(sft: dict, run: dict) -> str:
    moves = []
    for name, base in sft["categories"].items():
        cand = run["eval"]["categories"][name]
        if abs(cand["score"] - base["score"]) >= 0.02:
            moves.append(f"{name} {base['score']:.2f} ({base['grade']}) to {cand['score']:.2f} ({cand['grade']})")
    return "; ".join(moves) if moves else "no category moved by 2 points or more"


def run_label(run: dict) -> str:
    """"DPO on v8", with what sets the run apart: "(keep_best, lr 0.001)"."""
    extra = [word for word in ("keep_best" if run.get("on_block") == "keep_best" else None,
                               f"lr {run['lr']:g}" if run.get("lr") else None) if word]
    return f"{run['loss'].upper()} on {run['pairs']}" + (f" ({', '.join(extra)})" if extra else "")


def run_sentence(run: dict, sft: dict) -> str:
    label = run_label(run)
    if run["status"] != "completed":
        return f"{label} was not trained: {run['reason']}"
    base, score = sft["overall"]["score"], run["eval"]["overall"]["score"]
    delta = points(base, score)
    verb = "regressed" if delta <= -REGRESSION_POINTS else ("improved" if delta >= REGRESSION_POINTS else "held")
    return (f"{label} {verb}: test exact match {base:.3f} to {score:.3f} ({delta:+.1f} points; "
            f"{_category_moves(sft, run)}); over its last epoch the chosen answers' log-prob sat "
            f"{run['chosen_shift_last_epoch']:+.3f} nats per token from the SFT reference's; gate: "
            f"{run['gate']['decision']}.")


def _delta(report: dict, name: str) -> float | None:
    run = report["runs"].get(name)
    if not run or run["status"] != "completed":
        return None
    return points(report["sft"]["eval"]["overall"]["score"], run["eval"]["overall"]["score"])


def comparison_sentences(report: dict) -> list[str]:
    dpo, dpop, dpo7 = _delta(report, "dpo-v8"), _delta(report, "dpop-v8"), _delta(report, "dpo-v7")
    out = []
    if dpo is not None and dpop is not None:
        if dpo <= -REGRESSION_POINTS:
            kept = "kept" if dpop > -REGRESSION_POINTS else "did not keep"
            out.append(f"On the same one-digit pairs, DPO lost {-dpo:.1f} points and DPO-Positive {kept} the "
                       f"SFT model's accuracy ({dpop:+.1f} points).")
        else:
            out.append(f"In this configuration plain DPO did not regress the SFT model ({dpo:+.1f} points); "
                       f"DPO-Positive: {dpop:+.1f} points.")
    if dpo is not None and dpo7 is not None:
        same = abs(dpo7 - dpo) < REGRESSION_POINTS
        out.append(f"High-contrast pairs (v7) gave plain DPO {dpo7:+.1f} points against {dpo:+.1f} on one-digit "
                   f"pairs (v8): " + ("contrast alone did not protect the model." if same and dpo7 < 0
                                      else "the pair construction mattered."))
    return out


def audit_sentences(report: dict) -> list[str]:
    out = []
    for name, audit in report["audits"].items():
        failed = [cid for cid, c in audit["checks"].items() if c["status"] == "fail"]
        warned = [cid for cid, c in audit["checks"].items() if c["status"] == "warn"]
        la = audit["label_agreement"]
        agreement = "n/a" if la["agreement"] is None else f"{100 * la['agreement']:.0f}%"
        out.append(f"Audit of {name}: {audit['verdict']} (failed: {', '.join(failed) or 'none'}; warned: "
                   f"{', '.join(warned) or 'none'}); the simulated oracle agrees with its labels on {agreement} "
                   f"of {la['n_labelled']} labelled pairs (rule: at least 80%).")
    return out


def diagnosis_sentence(report: dict) -> list[str]:
    runs = (report.get("diagnosis") or {}).get("runs", {})
    parts = [f"{name} {r['summary']['before']:+.3f} before the first differing token, {r['summary']['at']:+.3f} at it "
             f"and {r['summary']['after']:+.3f} after it" for name, r in runs.items()
             if None not in (r["summary"]["before"], r["summary"]["at"], r["summary"]["after"])]
    if not parts:
        return []
    return [f"Token by token, on all v8 pairs (mean change of a chosen token's log-prob against SFT): "
            f"{'; '.join(parts)}."]


def seed_sentence(report: dict) -> list[str]:
    repeats = report.get("seed_repeats") or {}
    parts = [f"{name} {r['mean']:+.1f} ± {r['sd']:.1f} points (n={len(r['deltas'])})" for name, r in repeats.items()]
    return [f"Across preference seeds, the change in test accuracy was: {'; '.join(parts)}."] if parts else []


def promotion_sentence(report: dict) -> str:
    promoted = [p for p in report["promotions"] if p["promoted"]]
    if not promoted:
        return "No preference run passed the gate, so prod still holds the SFT model."
    return f"prod was promoted to {promoted[0]['run']} ({promoted[0]['run_id']}) through its gate report."


def monitor_sentence(report: dict) -> list[str]:
    runs = {n: r for n, r in report["runs"].items() if r["status"] == "completed" and not r.get("seed_offset")
            and r.get("monitor") and r.get("on_block") != "keep_best"}
    if not runs:
        return []
    first = next(iter(runs.values()))["monitor"]
    parts = []
    for name, run in runs.items():
        monitor = run["monitor"]
        if monitor["fired"]:
            f = monitor["fired"][0]
            test = f" (test exact match of that step's model {f['test']['score']:.3f})" if f.get("test") else ""
            parts.append(f"{name} fired at step {f['step']} of {run['steps']}, running mean {f['value']:+.3f}{test}")
        else:
            parts.append(f"{name} did not fire (lowest running mean {monitor['lowest']:+.3f})")
    pairs = (first.get("probe") or {}).get("pairs")
    what = f"the chosen answer after the first differing token, on a fixed sample of {pairs} training pairs" \
        if pairs else "the whole chosen answer"
    return [f"The collapse monitor read {first['metric']} ({what}), and warns when its running mean over "
            f"{first['window']} steps falls below {first['threshold']}: {'; '.join(parts)}."]


def in_training_gate_sentences(report: dict) -> list[str]:
    runs = {n: r for n, r in report["runs"].items() if r["status"] == "completed" and not r.get("seed_offset")
            and r.get("in_training_gate")}
    if not runs:
        return []
    out, parts = [], []
    for name, run in runs.items():
        blocked = [v["step"] for v in run["in_training_gate"]["verdicts"] if v["decision"] == "block"]
        parts.append(f"{name} " + (f"blocked at step{'s' if len(blocked) > 1 else ''} {', '.join(map(str, blocked))}"
                                   if blocked else "promoted every evaluation"))
    gate = next(iter(runs.values()))["in_training_gate"]
    out.append(f"While training, the in-training gate evaluated every run on the dev suite ({gate['n_items']} "
               f"prompts) every {gate['every']} steps against the SFT model: {'; '.join(parts)}.")
    sft = report["sft"]["eval"]["overall"]["score"]
    for keep in (r for r in runs.values() if r.get("on_block") == "keep_best"):
        output = keep["in_training_gate"]["output"]
        which = f"step {output['step']}'s model ({output['why']})" if output["from"] == "snapshots/gate-passed" \
            else "its final model (no evaluation blocked after the last one the gate promoted)"
        out.append(f"{run_label(keep)} ended with {which}: test exact match {keep['eval']['overall']['score']:.3f} "
                   f"against SFT's {sft:.3f} ({points(sft, keep['eval']['overall']['score']):+.1f} points); the "
                   f"test gate says {keep['gate']['decision']}.")
    overhead = report.get("overhead")
    if overhead:
        out.append(f"The in-training evaluations ({overhead['evaluations']} over {overhead['runs']} runs) took "
                   f"{overhead['eval_seconds']:.0f} s of {overhead['run_seconds']:.0f} s of training "
                   f"({100 * overhead['share']:.0f}%).")
    return out


def lr_sentence(report: dict) -> list[str]:
    choice = report["settings"].get("lr_choice")
    if not choice:
        return []
    table = ", ".join(f"{lr} {v['mean']:.3f}" for lr, v in choice["dev"].items())
    return [f"The learning rate {choice['chosen']:g} was chosen on the dev suite ({choice['rule']}; SFT scores "
            f"{choice['sft_dev']:.3f} on dev; mean dev exact match by rate: {table}); the test figures above were "
            "measured once, at that rate (runs at another rate say so)."]


def findings(report: dict[str, Any]) -> list[str]:
    sft = report["sft"]["eval"]
    per_category = ", ".join(f"{k} {v['score']:.2f}" for k, v in sft["categories"].items())
    out = [f"The SFT model scores {sft['overall']['score']:.3f} exact match on {sft['overall']['n']} test prompts "
           f"({per_category})."]
    out += audit_sentences(report)
    out += [run_sentence(run, sft) for run in report["runs"].values() if not run.get("seed_offset")]
    out += comparison_sentences(report)
    out += seed_sentence(report)
    out += monitor_sentence(report)
    out += in_training_gate_sentences(report)
    out += diagnosis_sentence(report)
    out += lr_sentence(report)
    out.append(promotion_sentence(report))
    return out
