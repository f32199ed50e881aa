"""Data layer throughput: read + validate + fingerprint + convert N synthetic pairs.

Peers measured in the same run: a bare `json.loads` loop over the same file (the floor: no validation),
and `datasets.load_dataset("json")` (what a TRL user runs before training, cold cache).
Target (issue 2): 100k pairs through read, validate, fingerprint and convert in under 10 s on 2 cores.

    .venv/bin/python benchmarks/data_io.py [--n 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from prefgate.data import read_dataset, write_records

WORDS = ("the model answer question because however paris eight legs spider capital value result "
         "step first then finally sorry cannot help with that here is how").split()


def synth(n: int, path: Path, seed: int = 0) -> None:
    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            row = {"prompt": f"\n\nHuman: {text(rng.randint(8, 60))}\n\nAssistant:",
                   "chosen": " " + text(rng.randint(5, 80)), "rejected": " " + text(rng.randint(5, 80)),
                   "category": rng.choice(["qa", "safety", "math"])}
            if i % 10 == 0:
                row["meta"] = {"source": "synthetic", "i": i}
            fh.write(json.dumps(row) + "\n")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "pairs.jsonl"
        synth(args.n, src)
        mb = src.stat().st_size / 1e6

        ds, t_read = timed(lambda: read_dataset(src))
        fp, t_fp = timed(lambda: ds.fingerprint)
        _, t_write = timed(lambda: write_records(ds.records, Path(tmp) / "out.jsonl"))
        total = t_read + t_fp + t_write

        _, t_floor = timed(lambda: [json.loads(line) for line in open(src, encoding="utf-8")])

        import datasets

        datasets.disable_progress_bars()
        _, t_hf = timed(lambda: datasets.load_dataset("json", data_files=str(src), split="train",
                                                      cache_dir=str(Path(tmp) / "hf-cache")))

    print(f"{args.n} pairs, {mb:.0f} MB JSONL")
    print(f"  read+validate {t_read:6.2f} s | fingerprint {t_fp:5.2f} s | convert (write JSONL) {t_write:5.2f} s")
    print(f"  prefgate total            {total:6.2f} s   target < 10 s: {'PASS' if total < 10 else 'FAIL'}"
          f" ({total / 10:.2f}x of budget)")
    print(f"  peer json.loads loop      {t_floor:6.2f} s   prefgate read+validate / floor = {t_read / t_floor:.2f}x")
    print(f"  peer datasets.load_dataset {t_hf:5.2f} s   prefgate total / datasets = {total / t_hf:.2f}x")
    print(f"  fingerprint {fp[:16]}")


if __name__ == "__main__":
    main()
