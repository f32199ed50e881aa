"""`prefgate demo`: the seed postmortem's whole story, offline on CPU, with an HTML report.

A toy arithmetic task and a tiny character-level Llama trained from scratch with `prefgate train` (the SFT
checkpoint ships with the package; `--from-scratch` retrains it). Then preference pairs three ways, their
audit, DPO and DPO-Positive runs, eval per category, the gate against SFT, the registry, and a report:
`OUT/report.html` and `OUT/report.json`. The logic lives in `prefgate.demo`; docs/demo.md tells the story.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from prefgate.commands.common import guarded, note, say


@guarded
def demo(
    out_dir: Path = typer.Option(Path("demo_out"), "--out-dir", help="Where the demo writes its files."),
    quick: bool = typer.Option(False, "--quick", help="Fewer pairs and runs (under 3 minutes); what CI runs."),
    from_scratch: bool = typer.Option(False, "--from-scratch",
                                      help="Retrain the SFT checkpoint first instead of using the shipped one."),
    seed: int = typer.Option(0, "--seed", help="Seed of everything after SFT (pairs, labels, training)."),
    choose_lr: bool = typer.Option(False, "--choose-lr", help="Only rerun how the learning rate was chosen: a grid "
                                   "of rates, DPO and DPOP on v8, scored on the dev suite (about 20 runs)."),
) -> None:
    """Run the offline demo on CPU: SFT -> pairs -> audit -> DPO/DPOP -> eval -> gate -> registry -> report."""
    from prefgate.demo.story import run_demo

    t0 = time.perf_counter()
    if choose_lr:
        from prefgate.demo.choose import run_choice

        record = run_choice(out_dir, quick=quick, say=note)
        for lr, row in record["dev"].items():
            say(f"lr {lr}: mean dev exact match {row['mean']:.4f} over {row['n_runs']} runs")
        say(f"chosen: {record['chosen']:g} ({record['rule']}); written to {out_dir / 'lr_choice.json'}")
        say(f"wall time: {time.perf_counter() - t0:.0f} s")
        return
    report = run_demo(out_dir, quick=quick, from_scratch=from_scratch, seed=seed, say=note)
    say("")
    for line in report["findings"]:
        say(f"- {line}")
    say("")
    for name, decision in report["gates"].items():
        say(f"gate {name}: {decision}")
    say(f"report: {out_dir / 'report.html'}  (decisions in {out_dir / 'report.json'})")
    say(f"wall time: {time.perf_counter() - t0:.0f} s")
