"""`prefgate demo --choose-lr`: how the demo's learning rate was chosen, on the dev split only.

For each rate of `GRID`, DPO and DPO-Positive train on the v8 pairs of seed 0 from the shipped SFT checkpoint (the
demo's other settings), and each model is evaluated on the dev suite (200 prompts; never the test suite). Seeds 1
and 2 are added for every rate within `REACH` points of the best on seed 0. The chosen rate has the best mean dev
exact match over both losses and every seed run at it; ties go to the smaller rate. The result is written to
`lr_choice.json` and is what `settings.LR_CHOICE` records.

This takes a while (about 20 runs); the demo itself does not rerun it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefgate.demo.settings import BETA, LAMBDA, SPLIT_SEED, RunSpec, settings_for

GRID = (3e-5, 1e-4, 3e-4, 1e-3)
SEEDS = (0, 1, 2)
REACH = 5.0  # points of dev accuracy: rates further below the best on seed 0 are not repeated
LOSSES = {"dpo": {"beta": BETA}, "dpop": {"beta": BETA, "lam": LAMBDA}}


def choose(dev: dict[float, list[float]]) -> float:
    """The rate with the best mean dev score; ties to the smaller rate."""
    return min(dev, key=lambda lr: (-round(statistics.mean(dev[lr]), 6), lr))


def run_choice(out_dir: Path, *, grid=GRID, seeds=SEEDS, quick: bool = False,
               say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the grid into `out_dir`; returns (and writes) the lr_choice record."""
    import torch

    from prefgate.demo import stages
    from prefgate.demo.pairsets import construct_set, gold_rows, one_digit, pick_prompts, write_jsonl
    from prefgate.demo.task import split_prompts
    from prefgate.reportio import write_json

    torch.set_num_threads(1)
    layout = stages.Layout(Path(out_dir))
    layout.reset()
    base = settings_for(quick)
    split = split_prompts(SPLIT_SEED)
    dev_suite = stages.write_dev_suite(split, base, layout.data / "dev_suite.jsonl")
    sft = stages.install_checkpoint(layout.runs / "sft")
    sft_dev = stages.evaluate(sft, dev_suite, layout.evals / "sft-dev.json", base)["overall"]["score"]
    rows: list[dict[str, Any]] = []

    def run(lr: float, seed: int) -> None:
        gold = write_jsonl(gold_rows(pick_prompts(split, base.pairs_per_category, seed)),
                           layout.pairs / f"gold-{seed}.jsonl")
        pairs = layout.pairs / f"v8-{seed}.jsonl"
        if not pairs.exists():
            construct_set("v8", one_digit, gold, pairs, seed)
        for loss, hyper in LOSSES.items():
            name = f"{loss}-v8-lr{lr:g}-s{seed}"
            spec = RunSpec(name, loss, "v8", hyper)
            outcome = stages.train_preference(spec, sft / "model", pairs, layout.runs / name, replace(base, lr=lr),
                                              seed, dev_suite=None, home=layout / ".prefgate")
            score = stages.evaluate(Path(outcome["run_dir"]), dev_suite, layout.evals / f"{name}.json",
                                    base)["overall"]["score"]
            rows.append({"lr": lr, "seed": seed, "loss": loss, "dev": score})
            say(f"  lr {lr:g} seed {seed} {loss}: dev exact match {score:.3f} (SFT {sft_dev:.3f})")

    for lr in grid:
        run(lr, seeds[0])
    first = {lr: statistics.mean(r["dev"] for r in rows if r["lr"] == lr) for lr in grid}
    best = max(first.values())
    for lr in (lr for lr in grid if 100 * (best - first[lr]) <= REACH):
        for seed in seeds[1:]:
            run(lr, seed)
    dev = {lr: [r["dev"] for r in rows if r["lr"] == lr] for lr in grid}
    more = ", ".join(map(str, seeds[1:]))
    record = {"split": "dev", "rule": f"the best mean dev exact match over DPO-v8 and DPOP-v8 and the seeds run at "
                                      f"that rate (seed {seeds[0]} for every rate; seeds {more} for rates within "
                                      f"{REACH:g} points of the best on seed {seeds[0]}); ties to the smaller rate",
              "sft_dev": sft_dev, "grid": list(grid), "chosen": choose(dev),
              "dev": {f"{lr:g}": {"mean": round(statistics.mean(v), 4), "n_runs": len(v)} for lr, v in dev.items()},
              "runs": rows}
    write_json(record, layout / "lr_choice.json")
    return record
