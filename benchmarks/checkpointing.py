"""What each activation-checkpointing mode costs in step time, by model width: the evidence for `auto`'s rule.

    .venv/bin/python benchmarks/checkpointing.py            # hidden sizes 128, 256, 512, 768 (about 4 min on 2 cores)
    .venv/bin/python benchmarks/checkpointing.py --quick    # 128 and 256, a smoke test

For each hidden size, a randomly initialised Llama (4 layers, intermediate 3x hidden, 64-wide heads) runs a
forward and backward (the sum of the logits' log-sum-exp) on a fixed batch, under `model.gradient_checkpointing`
off, selective and full (`prefgate.lm.checkpointing.enable`), in training mode, interleaved over rounds in one
process; the median time per forward+backward of each mode and its ratio to off are printed. The batch holds
`--tokens` tokens (default 1024: 4 rows of 256), so the work per op grows with the width while the number of ops
stays the same: selective checkpointing's cost is a fixed Python-level interception per op, which a narrow
model's short ops feel and a wide one's do not. Memory is not measured here (see `vs_trl.py --ckpt-side`).
"""

from __future__ import annotations

import argparse
import statistics
import time


def _model(hidden: int, mode: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from prefgate.lm import checkpointing

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1024, hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=4,
                         num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 64),
                         max_position_embeddings=4096, use_cache=False, attn_implementation="sdpa")
    model = LlamaForCausalLM(config)
    checkpointing.enable(model, mode)
    return model.train()


def _time(model, ids, reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        model(input_ids=ids).logits.logsumexp(-1).sum().backward()
    return (time.perf_counter() - start) / reps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--hidden", type=int, nargs="+", default=None, help="hidden sizes (128 256 512 768)")
    p.add_argument("--tokens", type=int, default=1024, help="tokens per batch, in rows of 256")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    hiddens = args.hidden or ([128, 256] if args.quick else [128, 256, 512, 768])
    modes = ("off", "selective", "full")
    ids = torch.randint(0, 1024, (max(1, args.tokens // 256), 256), generator=torch.Generator().manual_seed(0))
    print(f"# forward+backward of a 4-layer Llama on {ids.numel()} tokens ({ids.shape[0]} x 256), "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds interleaved; median per mode")
    print(f"{'hidden':>8}{'off (s)':>10}{'selective':>11}{'full':>10}{'selective / off':>17}{'full / off':>12}")
    for hidden in hiddens:
        models = {mode: _model(hidden, mode) for mode in modes}
        reps = 3 if hidden >= 512 else 6
        for model in models.values():  # warm-up
            _time(model, ids, 1)
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(args.rounds):
            for mode, model in models.items():
                times[mode].append(_time(model, ids, reps))
        med = {mode: statistics.median(t) for mode, t in times.items()}
        print(f"{hidden:>8}{med['off']:>10.3f}{med['selective']:>11.3f}{med['full']:>10.3f}"
              f"{med['selective'] / med['off']:>16.2f}x{med['full'] / med['off']:>11.2f}x")


if __name__ == "__main__":
    main()
