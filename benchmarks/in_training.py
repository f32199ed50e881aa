"""What watching a run costs: the collapse monitor's shift probe and the in-training gate, against the same run
without them, measured in the same process on the demo's model and data (docs/demo.md).

Three runs of DPO on the demo's v8 pairs from its shipped SFT checkpoint (0.86M parameters, 1,000 pairs, batch
32, one thread), `--epochs` epochs each:

- peer: `monitor.signal: mean` (no probe) and no suite: the loop as it was before issue 16;
- monitor: the default collapse monitor (the shift probe on 16 pairs every step);
- monitor + gate: also the dev suite (greedy, 6 new tokens, generation batches of 1,000 prompts) every `--every`
  steps: `--dev grown` (default) the demo's default suite (3,300 prompts), `--dev split` the dev split (200).

After a warm-up run, each runs twice (in opposite orders) and the faster of the two counts.

    .venv/bin/python benchmarks/in_training.py [--epochs 2] [--every 20] [--dev grown|split]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--dev", choices=("grown", "split"), default="grown",
                        help="grown: the dev split plus the add and max prompts SFT never drew (3,300); split: 200")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from dataclasses import replace

    from prefgate.console import set_quiet
    from prefgate.demo import stages
    from prefgate.demo.pairsets import construct_set, gold_rows, one_digit, pick_prompts, write_jsonl
    from prefgate.demo.settings import BETA, SPLIT_SEED, RunSpec, settings_for
    from prefgate.demo.task import split_prompts
    from prefgate.train.loop import train

    set_quiet(True)
    root = Path(tempfile.mkdtemp(prefix="in-training-"))
    split = split_prompts(SPLIT_SEED)
    gold = write_jsonl(gold_rows(pick_prompts(split, 250, 0)), root / "gold.jsonl")
    pairs = construct_set("v8", one_digit, gold, root / "v8.jsonl", 0).path
    sft = stages.install_checkpoint(root / "sft") / "model"
    settings = replace(settings_for(False), dev_unseen=args.dev == "grown")
    dev = stages.write_dev_suite(split, settings, root / "dev.jsonl")
    spec = RunSpec("dpo-v8", "dpo", "v8", {"beta": BETA})

    def run(name: str, dev_suite, **overrides) -> tuple[float, dict]:
        config = stages.pref_config(spec, sft, pairs, root / name, settings, 0, dev_suite=dev_suite, home=root / "home")
        raw = {**json.loads(config.model_dump_json()), "epochs": args.epochs}
        raw["eval"] = {**raw["eval"], **({"every": args.every} if dev_suite else {})}
        for key, value in overrides.items():
            section, field = key.split(".")
            raw[section][field] = value
        from prefgate.config import load_train_config

        t0 = time.perf_counter()
        train(load_train_config(None, **raw), show_progress=False)
        wall = time.perf_counter() - t0
        return wall, json.loads((root / name / "manifest.json").read_text())

    run("warm-up", None, **{"monitor.signal": "mean"})  # imports, first load, allocator: not the peer's cost
    walls: dict[str, list[float]] = {"peer": [], "monitor": [], "gated": []}
    for order in (("peer", "monitor", "gated"), ("gated", "monitor", "peer")):  # each twice; the best of two
        for name in order:
            overrides = {"monitor.signal": "mean"} if name == "peer" else {}
            wall, manifest = run(f"{name}-{len(walls[name])}", dev if name == "gated" else None, **overrides)
            walls[name].append(wall)
            if name == "gated":
                kept = manifest
    peer, probe, gated, manifest = min(walls["peer"]), min(walls["monitor"]), min(walls["gated"]), kept
    gate = manifest["in_training_gate"]
    seconds, steps = gate["seconds"], manifest["steps"]
    print(f"DPO on the demo's v8 pairs, {steps} steps ({args.epochs} epochs), one thread, {root}")
    print(f"peer (no probe, no suite):      {peer:6.1f} s")
    print(f"collapse monitor (probe):       {probe:6.1f} s   ratio to peer {probe / peer:.2f}")
    print(f"monitor + in-training gate:     {gated:6.1f} s   ratio to peer {gated / peer:.2f}  "
          f"({len(gate['verdicts'])} evaluations of {gate['suite']['n_items']} prompts every {args.every} steps)")
    spent = seconds["baseline"] + seconds["evaluations"]
    print(f"the gate's own accounting: baseline {seconds['baseline']:.1f} s + evaluations {seconds['evaluations']:.1f} "
          f"s = {spent:.1f} s of {seconds['run']:.1f} s ({100 * seconds['share']:.0f}% of the run)")

if __name__ == "__main__":
    main()
