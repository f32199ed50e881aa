"""`run_demo`: the seed postmortem's whole story on a toy task, from prefgate's own stages, read top to bottom.

1. task: four arithmetic categories, train / dev / test prompts split so none is shared; the test suite.
2. SFT: the shipped checkpoint (trained by `prefgate train`, loss sft) or, with `from_scratch`, trained here.
3. pairs: v6 (sampled, style-graded), v7 (far wrong answers), v8 (one digit changed).
4. audit: every set, with the simulated oracle rater's 10% label sample and the test prompts for leakage; each
   verdict is recorded in the registry, so the trainer refuses a set whose audit failed.
5. train DPO, DPO-Positive (and IPO) from the SFT model, watched by the collapse monitor and gated on the dev
   suite while training; eval per category on test once; gate each against SFT; register every run; promote
   what the gate passes.
6. diagnose one pair token by token; write report.json and report.html.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefgate.demo import stages
from prefgate.demo.settings import SPLIT_SEED, Settings, settings_for
from prefgate.demo.stages import Layout


@dataclass
class Story:
    """What the stages produced, in the order they ran; the report is built from this alone."""

    layout: Layout
    settings: Settings
    seed: int
    from_scratch: bool
    say: Callable[[str], None]
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    data: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        self.say(f"[{t0 - self.started:6.1f}s] {name} ...")
        yield
        self.timings[name] = round(time.perf_counter() - t0, 1)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def run_demo(out_dir: Path, *, quick: bool = False, from_scratch: bool = False, seed: int = 0,
             say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole demo into `out_dir`; returns the report dict (also written to report.json)."""
    import torch

    settings = settings_for(quick)
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)  # for bit-reproducible numbers; restored on the way out
    try:
        return _run_stages(out_dir, settings, from_scratch, seed, say)
    finally:
        torch.set_num_threads(threads)


def _run_stages(out_dir: Path, settings, from_scratch: bool, seed: int,
                say: Callable[[str], None]) -> dict[str, Any]:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    layout = Layout(Path(out_dir))
    layout.reset()
    story = Story(layout, settings, seed, from_scratch, say)
    with story.stage("1. task and test suite"):
        task_stage(story)
    with story.stage("2. SFT checkpoint" + (" (training from scratch)" if from_scratch else "")):
        sft_stage(story)
    with story.stage("3. preference sets"):
        pairs_stage(story)
    with story.stage("4. audit"):
        audit_stage(story)
    with story.stage("5. train, eval, gate, register"):
        preference_stage(story)
    with story.stage("6. diagnose and report"):
        diagnose_stage(story)
    from prefgate.demo.report import write_reports

    return write_reports(story)


def task_stage(story: Story) -> None:
    from prefgate.demo.pairsets import pick_prompts, write_jsonl
    from prefgate.demo.task import CATEGORIES, split_prompts, suite_items

    split = split_prompts(SPLIT_SEED)
    story.data["split"] = split
    write_jsonl(suite_items(split.flat("test")), story.layout.data / "test_suite.jsonl")
    dev = stages.write_dev_suite(split, story.settings, story.layout.data / "dev_suite.jsonl")
    dev_counts = Counter(json.loads(line)["category"] for line in dev.read_text(encoding="utf-8").splitlines())
    problems = pick_prompts(split, story.settings.pairs_per_category, story.seed)
    story.data["problems"] = problems
    story.data["task"] = {cat: {side: len(getattr(split, side)[cat]) for side in ("train", "pref", "dev", "test")}
                          | {"dev_suite": dev_counts.get(cat, 0)} for cat in CATEGORIES}


def sft_stage(story: Story) -> None:
    layout = story.layout
    if story.from_scratch:
        run = stages.train_sft(layout, story.data["split"], show_progress=True)
    else:
        run = stages.install_checkpoint(layout.runs / "sft")
    story.data["sft_run"] = run
    story.data["sft_eval_path"] = layout.evals / "sft.json"
    story.data["sft_eval"] = stages.evaluate(run, layout.data / "test_suite.jsonl", layout.evals / "sft.json",
                                             story.settings)
    overall = story.data["sft_eval"]["overall"]
    story.say(f"         SFT test exact match {overall['score']:.3f} ({overall['grade']})")


def pairs_stage(story: Story) -> None:
    from prefgate.demo.pairsets import build_sets, pick_prompts, repeat_v8

    pool = story.data["split"].flat("pref")
    sets = build_sets(story.data["problems"], pool, story.data["sft_run"] / "model", story.layout.pairs, story.seed)
    story.say("         " + ", ".join(f"{s.name}: {s.n_pairs} pairs" for s in sets.values()))
    for k in range(1, story.settings.repeat_seeds + 1):
        problems = pick_prompts(story.data["split"], story.settings.pairs_per_category, story.seed + k)
        sets[f"v8-s{k}"] = repeat_v8(problems, story.layout.pairs, story.seed + k, k)
    story.data["sets"] = sets


def audit_stage(story: Story) -> None:
    layout = story.layout
    answers = {p.id: p.answer for p in story.data["split"].flat("pref")}
    audits = {}
    for name in ("v6", "v7", "v8"):
        pair_set = story.data["sets"][name]
        if pair_set.n_pairs == 0:
            story.say(f"         audit {name}: skipped (no pairs)")
            continue
        fraction = min(1.0, max(story.settings.label_fraction, stages.MIN_LABELS / pair_set.n_pairs))
        labels = stages.oracle_labels(pair_set.path, answers, layout.labels / f"{name}.jsonl", fraction, story.seed)
        audits[name] = stages.audit(pair_set.path, labels, layout.data / "test_suite.jsonl",
                                    layout.audits / f"{name}.json", layout / ".prefgate")
        story.say(f"         audit {name}: {audits[name]['verdict']}")
    story.data["audits"] = audits


def preference_stage(story: Story) -> None:
    layout, settings = story.layout, story.settings
    sft_model = story.data["sft_run"] / "model"
    baseline = stages.register_baseline(layout / ".prefgate", story.data["sft_run"], story.data["sft_eval_path"])
    story.data["baseline"] = baseline
    runs: dict[str, dict] = {}
    for spec in settings.all_runs:
        t0 = time.perf_counter()
        n_pairs = story.data["sets"][spec.pairs].n_pairs
        if n_pairs < settings.batch_size:
            runs[spec.name] = {"status": "skipped", "run_dir": None,
                               "reason": f"the {spec.pairs} set has {n_pairs} pairs, fewer than one batch"}
            continue
        outcome = stages.train_preference(spec, sft_model, story.data["sets"][spec.pairs].path,
                                          layout.runs / spec.name, settings, story.seed + spec.seed_offset,
                                          dev_suite=None if spec.seed_offset else layout.data / "dev_suite.jsonl",
                                          home=layout / ".prefgate")  # seed repeats measure test spread only
        if outcome["status"] == "completed":
            outcome.update(evaluate_and_gate(story, spec.name, Path(outcome["run_dir"])))
            outcome["monitor_test"] = monitor_test(story, spec.name, Path(outcome["run_dir"]))
        outcome["seconds"] = round(time.perf_counter() - t0, 1)
        runs[spec.name] = outcome
        story.say(f"         {spec.name}: {summary_line(outcome)}")
    story.data["runs"] = runs
    story.data["promotions"] = promote_stage(story, runs)


def evaluate_and_gate(story: Story, name: str, run_dir: Path) -> dict:
    layout = story.layout
    eval_path = layout.evals / f"{name}.json"
    report = stages.evaluate(run_dir, layout.data / "test_suite.jsonl", eval_path, story.settings)
    gate = stages.gate(story.data["sft_eval_path"], eval_path, layout.gates / f"{name}.json")
    run_id = stages.register(layout / ".prefgate", run_dir, eval_path)
    return {"eval": {"overall": report["overall"], "categories": report["categories"]}, "gate": gate,
            "gate_path": str(layout.gates / f"{name}.json"), "registered": run_id}


def monitor_test(story: Story, name: str, run_dir: Path) -> dict:
    """Test accuracy of the model at each step the collapse monitor fired (its snapshot), by step."""
    from prefgate.reportio import read_json

    out = {}
    for fired in (read_json(run_dir / "manifest.json").get("monitor") or {}).get("fired", []):
        step = fired["step"]
        report = stages.evaluate(run_dir / fired["snapshot"], story.layout.data / "test_suite.jsonl",
                                 story.layout.evals / f"{name}-collapse-step-{step}.json", story.settings)
        out[str(step)] = {"overall": report["overall"], "categories": report["categories"]}
    return out


def summary_line(outcome: dict) -> str:
    if outcome["status"] != "completed":
        return f"{outcome['status']}: {outcome['reason']}"
    shift = outcome["final_metrics"].get("logps/chosen_shift")
    fired = [f["step"] for f in (outcome.get("monitor") or {}).get("fired", [])]
    verdicts = (outcome.get("in_training_gate") or {}).get("verdicts", [])
    blocked = [v["step"] for v in verdicts if v["decision"] == "block"]
    return (f"test exact match {outcome['eval']['overall']['score']:.3f}, chosen shift {shift:+.3f}/token, "
            f"gate {outcome['gate']['decision']}; monitor "
            + (f"fired at step {fired[0]}" if fired else "did not fire")
            + f"; in-training gate blocked {len(blocked)} of {len(verdicts)} evaluations")


def promote_stage(story: Story, runs: dict[str, dict]) -> list[dict]:
    """Promote the main run (the dev-chosen rate, seed 0) the gate passes that did best on dev (test decides pass
    or block, once; dev chooses among the passing runs; ties to the first in the story's order); try (and show the
    registry refuse) every run the gate blocks."""
    home = story.layout / ".prefgate"
    gated = {n: r for n, r in runs.items() if r["status"] == "completed"}
    # Seed repeats measure spread, and runs at a rate dev rejected show what the in-training gate does: neither
    # competes (they still go to the gate and, when it blocks them, to the registry, which refuses them).
    main = {spec.name for spec in story.settings.runs if spec.lr is None}
    why = {spec.name: "a seed repeat: it measures the spread across seeds and does not compete for prod"
           if spec.seed_offset else f"a run at lr {spec.lr:g}, a rate dev rejected: it shows what the in-training "
           "gate does and does not compete for prod" for spec in story.settings.all_runs if spec.name not in main}
    passing = sorted((n for n, r in gated.items() if r["gate"]["decision"] == "promote" and n in main),
                     key=lambda n: -dev_score(gated[n]))
    out = []
    for name, run in gated.items():
        if run["gate"]["decision"] == "promote" and name not in main:
            out.append({"run": name, "run_id": run["registered"], "promoted": False, "outcome": "passed over",
                        "message": why[name]})
            continue
        if name in passing[1:]:
            out.append({"run": name, "run_id": run["registered"], "promoted": False, "outcome": "passed over",
                        "message": f"the gate passed it, but {passing[0]} did at least as well on dev "
                                   f"({dev_score(gated[passing[0]]):.3f} against {dev_score(run):.3f}) and took prod"})
            continue
        out.append({"run": name, **stages.promote(home, run["registered"], Path(run["gate_path"]))})
    return out


def dev_score(run: dict) -> float:
    """Dev exact match of the model the run ended with: its in-training verdict at that step."""
    gate = run.get("in_training_gate") or {}
    verdicts = gate.get("verdicts") or []
    if not verdicts:
        return 0.0
    output = gate.get("output") or {}
    step = output.get("step") if output.get("from") == "snapshots/gate-passed" else verdicts[-1]["step"]
    return next(v for v in verdicts if v["step"] == step)["overall"]["score"]


def diagnose_stage(story: Story) -> None:
    runs = {n: Path(r["run_dir"]) for n, r in story.data["runs"].items()
            if r["status"] == "completed" and n in ("dpo-v8", "dpop-v8")}
    if not runs:
        story.data["diagnose"] = {}
        return
    story.data["diagnose"] = stages.diagnose_runs(runs, story.data["sft_run"] / "model",
                                                  story.data["sets"]["v8"].path, story.layout / "diagnose")
