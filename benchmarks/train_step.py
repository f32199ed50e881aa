"""Trainer throughput: pairs/s and peak memory of `prefgate train` on a small config, against a bare loop.

The peer, measured in the same run on the same model, data, batch and optimizer, is the floor: a
hand-written loop doing only the concatenated forward, the DPO loss, backward and AdamW step, with no
reference model (prefgate's run uses its defaults: logging, metrics, the memory probe, the collapse monitor's
probe, `forward: auto`, i.e. prefix-shared, and `reference.strategy: auto`, which since issue 17 scores the
reference once before step 1, outside the timed steps but inside `wall_s`; BENCHMARKS.md's rows for issues 4
and 9 were taken with a frozen reference copy forwarded every step). Each side runs in its own subprocess, so
peak RSS is its own.

    .venv/bin/python benchmarks/train_step.py [--steps 30] [--hidden 256] [--layers 4] [--forward concatenated]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_data(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    words = "the a model answer question because sorry cannot help here is how first then finally".split()

    def text(k):
        return " ".join(rng.choice(words) for _ in range(k))

    with open(path, "w") as fh:
        for _ in range(n):
            row = {"prompt": f"Human: {text(rng.randint(20, 60))}\n\nAssistant:",
                   "chosen": " " + text(rng.randint(10, 40)), "rejected": " " + text(rng.randint(10, 40))}
            fh.write(json.dumps(row) + "\n")


def run_prefgate(model_dir: str, data: str, out: str, steps: int, batch: int, forward: str) -> dict:
    from prefgate.config import load_train_config
    from prefgate.train.loop import train

    cfg = load_train_config(None, [], model={"name_or_path": model_dir}, data={"train": data, "max_length": 256},
                            batch_size=batch, max_steps=steps, output_dir=out, optim={"lr": 1e-4}, forward=forward)
    t0 = time.perf_counter()
    train(cfg, show_progress=False)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()][1:]  # skip warm-up
    return {"pairs_per_s": sum(r["pairs_per_s"] for r in rows) / len(rows), "wall_s": wall}


def run_bare(model_dir: str, data: str, out: str, steps: int, batch: int, forward: str) -> dict:  # noqa: ARG001
    """The floor: the concatenated forward whatever `forward` says, no reference, no metrics."""
    import torch

    from prefgate.data import load_tokenizer, read_dataset
    from prefgate.lm.load import load_causal_lm
    from prefgate.losses import LossType, dpo
    from prefgate.train.batches import collate, tokenize_dataset
    from prefgate.train.step import forward_logps

    tok = load_tokenizer(model_dir)
    rows = tokenize_dataset(read_dataset(data), tok, LossType.DPO, max_length=256, max_prompt_length=None)
    model = load_causal_lm(model_dir).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rates = []
    for step in range(steps):
        t0 = time.perf_counter()
        idx = [(step * batch + i) % len(rows) for i in range(batch)]
        b = collate(rows, idx, pad_id=tok.pad_token_id)
        logps = forward_logps(model, b)
        ref = logps.detach()  # no reference forward: this is the floor
        out_ = dpo(logps[:batch], logps[batch:], ref[:batch], ref[batch:], beta=0.1)
        out_.losses.mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        rates.append(batch / (time.perf_counter() - t0))
    return {"pairs_per_s": sum(rates[1:]) / (len(rates) - 1)}


def child(kind: str, args: list[str]) -> None:
    fn = {"prefgate": run_prefgate, "bare": run_bare}[kind]
    result = fn(args[0], args[1], args[2], int(args[3]), int(args[4]), args[5])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--forward", choices=["auto", "concatenated", "prefix_shared"], default="auto",
                        help="prefgate's forward (the bare loop always runs the concatenated one)")
    args = parser.parse_args()
    from prefgate.tiny import tiny_llama, tiny_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tok = tiny_tokenizer()
        model = tiny_llama(tok, hidden_size=args.hidden, layers=args.layers)
        n_params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(f"{tmp}/model")
        tok.save_pretrained(f"{tmp}/model")
        make_data(Path(tmp) / "pairs.jsonl", 256)
        results = {}
        for kind in ("bare", "prefgate", "bare", "prefgate"):  # alternate, keep the second of each
            cmd = [sys.executable, __file__, "--child", kind, f"{tmp}/model", f"{tmp}/pairs.jsonl", f"{tmp}/run-{kind}",
                   str(args.steps), str(args.batch), args.forward]
            subprocess.run(["rm", "-rf", f"{tmp}/run-{kind}"], check=True)
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    p, b = results["prefgate"], results["bare"]
    print(f"model: Llama hidden {args.hidden}, {args.layers} layers, {n_params / 1e6:.2f}M params; batch {args.batch} "
          f"pairs, max_length 256, {args.steps} steps, fp32, CPU; prefgate forward: {args.forward}")
    print(f"  prefgate train : {p['pairs_per_s']:7.1f} pairs/s  peak RSS {p['peak_rss_mb']:6.0f} MB  "
          f"(wall {p['wall_s']:.1f} s incl. set-up)")
    print(f"  bare loop      : {b['pairs_per_s']:7.1f} pairs/s  peak RSS {b['peak_rss_mb']:6.0f} MB  (no reference)")
    print(f"  ratio prefgate / bare: {p['pairs_per_s'] / b['pairs_per_s']:.2f}x pairs/s, "
          f"{p['peak_rss_mb'] / b['peak_rss_mb']:.2f}x peak RSS")


if __name__ == "__main__":
    main()
