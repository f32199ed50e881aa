"""`prefgate demo`: the whole story offline on CPU.

Until the full demo lands (train, eval, gate, report on a tiny model trained from scratch), this runs the
stages that exist today on a small synthetic dataset, and says so.
"""

from __future__ import annotations

from pathlib import Path

import typer

from prefgate.commands.common import console, guarded, say


def _toy_records() -> list[dict]:
    """Arithmetic questions with a correct and a constructed wrong answer (the seed team's v7 fix)."""
    rows = []
    for a in range(1, 13):
        for b in range(1, 6):
            rows.append({"prompt": f"Question: What is {a} plus {b}?\nAnswer:", "chosen": f" {a + b}.",
                         "rejected": f" {a + b + 1}.", "category": "arithmetic", "rejection_type": "off_by_one"})
    return rows


@guarded
def demo(out_dir: Path = typer.Option(Path("demo-out"), "--out-dir", help="Where the demo writes its files.")) -> None:
    """Run the offline demo on CPU (today: the data stage; training, eval and gate land with later issues)."""
    import json

    from prefgate.data import read_dataset, split_by_prompt, write_records
    from prefgate.data.stats import dataset_stats

    console.print("[bold]prefgate demo[/bold] (partial: only the data stage exists so far)")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "toy_pairs.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in _toy_records()), encoding="utf-8")
    ds = read_dataset(raw)
    say(f"1. data: {len(ds)} pairs, fingerprint {ds.fingerprint[:16]}")
    train, held_out = split_by_prompt(ds.records, eval_fraction=0.2, seed=0)
    write_records(train, out_dir / "train.jsonl")
    write_records(held_out, out_dir / "eval.jsonl")
    say(f"2. split by prompt hash: {len(train)} train, {len(held_out)} eval -> {out_dir}/")
    chars = dataset_stats(ds)["chars"]
    say(f"3. stats: median chars prompt {chars['prompt']['p50']:.0f}, chosen {chars['chosen']['p50']:.0f}, "
        f"rejected {chars['rejected']['p50']:.0f}")
    say("not yet built: audit, train, eval, gate, registry, report (see the open issues)")
