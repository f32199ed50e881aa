"""DPO training throughput and memory: prefgate's prefix-shared forward against TRL 1.16 `DPOTrainer`.

    .venv/bin/python benchmarks/vs_trl.py            # ~55M-parameter Llama, CPU, fp32 (about 15 min on 2 cores)
    .venv/bin/python benchmarks/vs_trl.py --quick    # small config, a smoke test in under a minute
    .venv/bin/python benchmarks/vs_trl.py --device cuda --dtype bf16 --config 0.5b   # on a GPU
    .venv/bin/python benchmarks/vs_trl.py --shapes long-1024 --reference policy --trl-precompute --steps 1 \
        --ckpt-side off full                         # whole-process memory against both TRL answers (issue 17),
                                                     # prefgate's default (checkpointing auto) and off and full

One invocation builds, with a fixed seed, a randomly initialised Llama-style policy and a second one as the
frozen reference (another seed, so the step-0 loss is not the trivial log 2), a word-level tokenizer (one
word = one token, so lengths are exact), and synthetic pairs of variable length for two data shapes:
prompt-heavy (P:C = 3:1) and completion-heavy (1:3) (`--shapes long-1024` adds rows of exactly 1024 tokens,
for the memory comparison). Each run happens in a fresh subprocess, alternating
prefgate and TRL (A B A B ...), so neither pollutes the other's memory figures, and each processes the same
pairs in the same order (TRL with `train_sampling_strategy="sequential"`), with the same batch size, AdamW,
learning rate, constant schedule, gradient clipping at 1.0, one untimed warm-up step, then `--steps` timed.

The reference (`--reference`):
- `other` (default): the second model, live on both sides (prefgate `reference.strategy: model`, TRL
  `ref_model=` it), so the step-0 losses can be compared with a float64 yardstick.
- `policy`: the initial policy, as both trainers take it when given one model, each with its default:
  prefgate `reference.strategy: auto` (full fine-tuning: the policy is scored once before step 1 and no copy
  is made), TRL `ref_model=None` (it loads a frozen copy). `--trl-precompute` adds a third side, TRL with
  `precompute_ref_log_probs=True` (TRL's own answer: it scores the data with the policy in its constructor and
  keeps no reference model), alternating A B C. The step-0 loss is then log 2 on every side.
A reference pass made before step 1 (prefgate's precomputed table, in a fresh cache folder per run so that
nothing is reused; TRL's `_precompute_ref_logps`) is timed, and "pairs/s, reference pass counted" spreads it
over the batches it scored (the data holds exactly the warm-up and timed batches): batch size / (median step
+ pass seconds / batches).

What is timed, per optimizer step:
- TRL: from `on_step_begin` to `on_step_end` of a `TrainerCallback`, i.e. `training_step` (policy forward
  with TRL's fused LM head, reference forward, loss and metrics, backward), gradient clipping,
  `optimizer.step()`, the scheduler and `zero_grad`. Collation happens before `on_step_begin` (not timed).
- prefgate: the trainer's own optimizer step (`prefgate.train.loop._optimizer_step`, set up by `_set_up`
  from a config as `prefgate train` does): collation and the prefix-shared layout, policy forward, reference
  forward, loss and metrics, backward, gradient clipping, AdamW, the scheduler and `zero_grad`. Only the
  example order is replaced (sequential). `--forward concatenated` times the same loop on TRL's layout.

Reported per shape: pairs/s (batch size / median step time over all rounds) and the ratio, the same per
CPU-second of the process (`time.process_time`, insensitive to a neighbour's load), tokens/s (data
tokens: 2P + |yw| + |yl| per pair, the same count for both), the tokens each side actually ran, peak RSS of
the whole child process (set-up, reference pass and steps: the larger of the kernel's high-water mark before
it is reset after the warm-up step and the one after) and the peak above the RSS at the first step (Linux
`clear_refs`), peak CUDA memory on GPU, and the step-0 losses (the loss of the first batch before any
update), which must agree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {  # Llama-style; parameters include both embedding matrices
    "quick": {"hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 4, "vocab_size": 8000},
    "55m": {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 8, "num_attention_heads": 8,
            "num_key_value_heads": 8, "vocab_size": 32000},
    "55m-152k": {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 8, "num_attention_heads": 8,
                 "num_key_value_heads": 8, "vocab_size": 151936},  # the 55m body with Qwen2's vocabulary: 181M
    "0.5b": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
             "num_key_value_heads": 2, "vocab_size": 151936},
}
SHAPES = {  # name: (prompt length range, completion length range), each drawn uniformly per pair and side
    "prompt-heavy": ((256, 512), (64, 192)),
    "completion-heavy": ((64, 192), (256, 512)),
    "long-1024": ((638, 638), (384, 384)),  # every row exactly 1024 tokens (BOS, EOS): the memory comparison
}
DEFAULT_SHAPES = ["prompt-heavy", "completion-heavy"]
TARGETS = {("prompt-heavy", "cpu"): 1.5, ("completion-heavy", "cpu"): 1.2,  # pairs/s ratio, with memory <= TRL
           ("prompt-heavy", "cuda"): 1.3, ("completion-heavy", "cuda"): 1.3}
QUICK_SHAPES = {"prompt-heavy": ((24, 72), (8, 24)), "completion-heavy": ((8, 24), (24, 72))}
BETA, LR = 0.1, 1e-6
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]


# -- setup (parent) -----------------------------------------------------------------------------------------


def build_tokenizer(vocab_size: int, directory: Path) -> None:
    """Word-level tokenizer: "w17" is token 17, BOS prepended; EOS split off wherever it appears."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL)} | {f"w{i}": i for i in range(len(SPECIAL), vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")
    fast.save_pretrained(directory)


def build_model(config: dict, seed: int, directory: Path) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**config, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2,
                                         pad_token_id=0, tie_word_embeddings=False))
    model.save_pretrained(directory)
    return sum(p.numel() for p in model.parameters())


def synth_pairs(path: Path, n: int, shape: tuple, vocab_size: int, seed: int) -> None:
    rng = random.Random(seed)
    (p_lo, p_hi), (c_lo, c_hi) = shape

    def words(k: int) -> str:
        return " ".join(f"w{rng.randrange(len(SPECIAL), vocab_size)}" for _ in range(k))

    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            row = {"prompt": words(rng.randint(p_lo, p_hi)), "chosen": " " + words(rng.randint(c_lo, c_hi)),
                   "rejected": " " + words(rng.randint(c_lo, c_hi))}
            fh.write(json.dumps(row) + "\n")


# -- measurement helpers (children) -------------------------------------------------------------------------


_SETUP_PEAK = [0.0]  # peak RSS before the reset below (clear_refs also resets getrusage's ru_maxrss)


def _reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (VmHWM) and return the current RSS in MiB."""
    _SETUP_PEAK[0] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_mb("VmRSS")


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _memory(device, baseline: float) -> dict:
    import torch

    steps_peak = max(_status_mb("VmHWM"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out = {"peak_rss_mb": max(_SETUP_PEAK[0], steps_peak), "step_peak_rss_mb": steps_peak, "rss_at_start_mb": baseline}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- prefgate side ------------------------------------------------------------------------------------------


def run_prefgate(args) -> dict:
    """The real trainer: `prefgate.train.loop` set up from a config, then its `_optimizer_step` timed step by step;
    only the example order is changed (sequential, as TRL's here), nothing in the work of a step."""
    import torch

    from prefgate.config import load_train_config
    from prefgate.train import loop
    from prefgate.train.batches import collate

    device = torch.device(args.device)
    reference = {"strategy": "model", "model": args.ref} if args.reference == "other" else {  # a fresh cache: no reuse
        "strategy": "auto", "cache_dir": str(Path(args.data).parent / f"prefgate-cache-{os.getpid()}")}
    overrides = {"model": {"name_or_path": args.model, "attn_implementation": args.attn,
                           **({"gradient_checkpointing": args.child.split("-", 1)[1]} if "-" in args.child else {})},
                 "data": {"train": args.data, "max_length": 4096},
                 "loss": {"type": "dpo", "beta": BETA}, "reference": reference,
                 "optim": {"lr": LR, "weight_decay": 0.0, "schedule": "constant", "warmup_steps": 0,
                           "max_grad_norm": 1.0},
                 "batch_size": args.batch_size, "max_steps": args.steps + 1, "precision": args.dtype, "seed": 0,
                 "output_dir": str(Path(args.data).parent / "prefgate-out"), "memory_probe": False,
                 "forward": args.forward, "pack_tokens": args.pack_tokens, "monitor": {"signal": args.monitor}}
    run = loop._set_up(load_train_config(None, [], **overrides), False, "benchmark: synthetic pairs", False)
    reference_pass = sum(c["seconds"] for c in run.reference.detail.get("cache", {}).values() if not c["reused"])
    run.schedule = Sequential(run.schedule.n_examples, args.batch_size, 1, 1, 0)
    times, cpu_times, loss0, baseline = [], [], None, 0.0
    for step in range(1, args.steps + 2):
        if step == 2:
            baseline = _reset_peak_rss()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        metrics = loop._optimizer_step(run, step)
        _sync(device)
        if step == 1:
            loss0 = metrics["loss"]
        else:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    memory = _memory(device, baseline)
    ran = 0
    for step in range(2, args.steps + 2):  # the tokens the model ran (untimed)
        batch = collate(run.train_data, run.schedule.micro_batches(step, 0)[0], pad_id=run.pad_id)
        shared = run.forward.mode == "prefix_shared"
        ran += batch.layout(args.pack_tokens).n_tokens if shared else batch.input_ids.numel()
    return {"times": times, "cpu_times": cpu_times, "loss0": loss0, "ran_tokens": ran,
            "forward": f"{run.forward.mode}: {run.forward.reason}", "reference_pass_s": reference_pass,
            "reference": f"{run.reference.strategy} ({run.reference.detail['why']})", **memory}


class Sequential:
    """`loop.Schedule` with examples in file order, so both sides see the same batches."""

    def __init__(self, n_examples, batch_size, grad_accumulation, processes, seed):
        self.n_examples, self.batch_size, self.grad_accumulation = n_examples, batch_size, grad_accumulation
        self.processes, self.seed, self.global_batch = processes, seed, batch_size
        self.steps_per_epoch = n_examples // batch_size

    def micro_batches(self, step: int, rank: int) -> list[list[int]]:  # noqa: ARG002 - one process
        return [list(range((step - 1) * self.batch_size, step * self.batch_size))]


# -- TRL side -----------------------------------------------------------------------------------------------


def run_float64(args) -> dict:
    """The step-0 loss in float64, one sequence at a time (prompt + completion, no padding): the yardstick
    both float32 figures are compared with."""
    import torch

    from prefgate.data import load_tokenizer, read_dataset
    from prefgate.lm.load import load_causal_lm
    from prefgate.losses import LossType
    from prefgate.train.batches import tokenize_dataset

    tokenizer = load_tokenizer(args.model)
    data = tokenize_dataset(read_dataset(args.data), tokenizer, LossType.DPO, max_length=4096, max_prompt_length=None)
    rows = data.rows[:args.batch_size]

    @torch.no_grad()
    def logps(model) -> torch.Tensor:  # (B, 2): chosen, rejected
        out = torch.zeros(len(rows), 2, dtype=torch.float64)
        for i, roles in enumerate(rows):
            for r, (prompt, completion) in enumerate(roles):
                ids = torch.tensor([prompt + completion], device=args.device)
                logits = model(input_ids=ids, use_cache=False).logits[0, :-1].double()
                token = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None]).squeeze(1)
                out[i, r] = token[len(prompt) - 1:].sum().cpu()
        return out

    policy, reference = (load_causal_lm(p).double().to(args.device).eval() for p in (args.model, args.ref))
    margin = (logps(policy) - logps(reference)) @ torch.tensor([1.0, -1.0], dtype=torch.float64)
    return {"loss0": float(-torch.nn.functional.logsigmoid(BETA * margin).mean())}


def run_trl(args, precompute: bool = False) -> dict:
    """TRL's DPOTrainer with its defaults; `precompute`: with `precompute_ref_log_probs=True`."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    device = torch.device(args.device)
    records = [json.loads(line) for line in open(args.data, encoding="utf-8")]
    state = {"times": [], "cpu_times": [], "t0": 0.0, "c0": 0.0, "loss0": None, "ran": 0, "baseline": 0.0,
             "reference_pass_s": 0.0}

    class Timer(TrainerCallback):
        def on_step_begin(self, _args, s, _control, **_kw):
            if s.global_step == 1:
                state["baseline"] = _reset_peak_rss()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            state["t0"], state["c0"] = time.perf_counter(), time.process_time()

        def on_step_end(self, _args, s, _control, **_kw):
            _sync(device)
            if s.global_step > 1:  # global_step is already incremented: step 1 is the warm-up
                state["times"].append(time.perf_counter() - state["t0"])
                state["cpu_times"].append(time.process_time() - state["c0"])

    class Recorder(DPOTrainer):  # records the first loss, the tokens the model ran and the reference pass's time
        def _precompute_ref_logps(self, dataset, name, batch_size):
            t0 = time.perf_counter()
            out = super()._precompute_ref_logps(dataset, name, batch_size)
            state["reference_pass_s"] += time.perf_counter() - t0
            return out

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if state["loss0"] is None:
                state["loss0"] = float(loss.detach())
            elif self.state.global_step >= 1:
                state["ran"] += int(inputs["input_ids"].numel())
            return loss

    config = DPOConfig(output_dir=str(Path(args.data).parent / "trl-out"), per_device_train_batch_size=args.batch_size,
                       max_steps=args.steps + 1, learning_rate=LR, lr_scheduler_type="constant", optim="adamw_torch",
                       weight_decay=0.0, max_grad_norm=1.0, beta=BETA, max_length=None, logging_steps=1,
                       save_strategy="no", report_to=[], seed=0, use_cpu=device.type == "cpu",
                       bf16=args.dtype == "bf16", train_sampling_strategy="sequential", dataloader_num_workers=0,
                       disable_tqdm=True, precompute_ref_log_probs=precompute, use_liger_kernel=args.trl_liger)
    # --reference policy: no ref_model, so TRL makes its own (a frozen copy by default; none when precomputing)
    ref_model = AutoModelForCausalLM.from_pretrained(args.ref, dtype=torch.float32) \
        if args.reference == "other" else None
    trainer = Recorder(model=AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32),
                       ref_model=ref_model, args=config, train_dataset=Dataset.from_list(records),
                       callbacks=[Timer()], processing_class=AutoTokenizer.from_pretrained(args.model))
    del ref_model  # the trainer holds it when it needs it
    held = trainer.ref_model is not None
    trainer.train()
    return {"times": state["times"], "cpu_times": state["cpu_times"], "loss0": state["loss0"],
            "ran_tokens": state["ran"], "forward": "trl", "reference_pass_s": state["reference_pass_s"],
            "reference": f"{'precomputed' if precompute else 'live'} (ref_model held: {held})",
            **_memory(device, state["baseline"])}


# -- parent: alternate the sides, aggregate, print ----------------------------------------------------------


def child(side: str, args, model: Path, ref: Path, data: Path, pack_tokens: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--model", str(model), "--ref", str(ref), "--data", str(data),
           "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--device", args.device,
           "--dtype", args.dtype, "--threads", str(args.threads), "--attn", args.attn, "--forward", args.forward,
           "--reference", args.reference, "--monitor", args.monitor] + (["--trl-liger"] if args.trl_liger else [])
    if pack_tokens is not None:
        cmd += ["--pack-tokens", str(pack_tokens)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not result:
        raise SystemExit(f"{side} child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(result[-1][len("RESULT "):])


def data_tokens(data: Path, steps: int, batch_size: int) -> tuple[int, int]:
    """Over the timed pairs: (2P + |yw| + |yl|, the concatenated count, the same whichever side runs them;
    P + |yw| + |yl|, the floor of work). P counts BOS, completions their EOS."""
    lines = open(data, encoding="utf-8").read().splitlines()[batch_size:(steps + 1) * batch_size]
    concatenated = floor = 0
    for line in lines:
        r = json.loads(line)
        p, c, j = (len(r[k].split()) for k in ("prompt", "chosen", "rejected"))
        concatenated += 2 * (p + 1) + c + j + 2
        floor += p + 1 + c + j + 2
    return concatenated, floor


def summarise(name: str, runs: dict, tokens: int, pairs: int, batch_size: int, batches: int) -> dict:
    """Per side: rates from the median step time over every timed step of every round (the same batches on
    both sides), so one step slowed by a neighbour on a shared machine does not move the figure; a reference
    pass before step 1 (mean over rounds) is spread over the `batches` it scored; memory is the worst round's."""
    out = {}
    for side, results in runs.items():
        step = statistics.median(t for r in results for t in r["times"])
        cpu_step = statistics.median(t for r in results for t in r["cpu_times"])
        reference_pass = statistics.mean(r["reference_pass_s"] for r in results)
        out[side] = {"pairs_per_s": batch_size / step, "tokens_per_s": batch_size / step * tokens / pairs,
                     "pairs_per_s_with_pass": batch_size / (step + reference_pass / batches),
                     "pairs_per_cpu_s": batch_size / cpu_step, "median_step_s": step,
                     "reference_pass_s": reference_pass, "reference": results[0]["reference"],
                     "ran_tokens": results[0]["ran_tokens"], "loss0": results[0]["loss0"],
                     **{k: max(r[k] for r in results) for k in results[0] if k.endswith("_mb")}}
    return {"shape": name, **out}


PEERS = {"trl": "TRL 1.16", "trl-precompute": "TRL precomp."}
OURS = {"prefgate": "prefgate", "prefgate-off": "pg no ckpt", "prefgate-selective": "pg sel. ckpt",
        "prefgate-full": "pg full ckpt"}
ROWS = [("pairs/s", "pairs_per_s", "{:.3f}"), ("pairs/s, ref. pass counted", "pairs_per_s_with_pass", "{:.3f}"),
        ("pairs per CPU-second", "pairs_per_cpu_s", "{:.3f}"), ("data tokens/s", "tokens_per_s", "{:.0f}"),
        ("median step (s)", "median_step_s", "{:.2f}"), ("reference pass (s)", "reference_pass_s", "{:.1f}"),
        ("tokens run per step", "ran_tokens", "{:.0f}"), ("peak RSS, process (MiB)", "peak_rss_mb", "{:.0f}"),
        ("peak RSS, steps (MiB)", "step_peak_rss_mb", "{:.0f}"), ("RSS at step 1 (MiB)", "rss_at_start_mb", "{:.0f}")]


def _ratio(x: float, y: float) -> str:
    return f"{x / y:.2f}x" if y else "-"


def report(summary: dict, args) -> None:
    """A column per side, then the ratio of each of prefgate's sides (with and without activation
    checkpointing) to each peer."""
    ours = [side for side in OURS if side in summary]
    peers = [side for side in PEERS if side in summary]
    names = {**OURS, **PEERS}
    pairs = [(o, p) for o in ours for p in peers]
    print(f"\n## {summary['shape']}")
    print(f"{'':28}" + "".join(f"{names[side]:>14}" for side in ours + peers)
          + "".join(f"{names[o] + ' / ' + names[p]:>28}" for o, p in pairs))
    rows = ROWS + ([("peak CUDA (MiB)", "peak_cuda_mb", "{:.0f}")] if "peak_cuda_mb" in summary["prefgate"] else [])
    for label, key, fmt in rows:
        scale = 1 / args.steps if key == "ran_tokens" else 1
        print(f"{label:28}" + "".join(f"{fmt.format(summary[side][key] * scale):>14}" for side in ours + peers)
              + "".join(f"{_ratio(summary[o][key], summary[p][key]):>28}" for o, p in pairs))
    print(f"{'step-0 loss':28}" + "".join(f"{summary[side]['loss0']:>14.7f}" for side in ours + peers)
          + "".join(f"{'|diff| ' + format(abs(summary[o]['loss0'] - summary[p]['loss0']), '.1e'):>28}"
                    for o, p in pairs))
    if "loss0_float64" in summary:
        exact = summary["loss0_float64"]
        gaps = ", ".join(f"|{names[side]} - it| {abs(summary[side]['loss0'] - exact):.1e}" for side in ours + peers)
        print(f"{'  float64 yardstick':28}{exact:>14.7f}   {gaps}")
    for side in ours + peers:
        print(f"{'  reference, ' + names[side]:28}{summary[side]['reference']}")
    if "mfu" in summary["prefgate"]:
        print(f"{'MFU (8 x params x min tokens)':28}"
              + "".join(f"{summary[side]['mfu']:>14.1%}" for side in ours + peers))
    _targets(summary, args)


def _targets(summary: dict, args) -> None:
    a, b = summary["prefgate"], summary["trl"]
    target = TARGETS.get((summary["shape"], args.device))
    if target is not None:
        speed, memory = a["pairs_per_s"] / b["pairs_per_s"], a["peak_rss_mb"] / b["peak_rss_mb"]
        verdict = "pass" if speed >= target and memory <= 1.0 else "MISS"
        print(f"{'target (issue 9)':28}pairs/s >= {target}x TRL and peak RSS <= TRL: {verdict} "
              f"({speed:.2f}x, {memory:.2f}x)")
    if "trl-precompute" not in summary:
        return
    for side in (s for s in OURS if s in summary):
        to_default = summary[side]["peak_rss_mb"] / b["peak_rss_mb"]
        to_precomputed = summary[side]["peak_rss_mb"] / summary["trl-precompute"]["peak_rss_mb"]
        first, second = ("pass" if ok else "MISS" for ok in (to_default <= 0.6, to_precomputed <= 1.0))
        print(f"{'target (issue 17), ' + OURS[side]:32} peak RSS of the process <= 0.6x TRL: {first} "
              f"({to_default:.2f}x); <= TRL precomputed: {second} ({to_precomputed:.2f}x)")


def add_mfu(summary: dict, n_params: int, min_tokens_per_pair: float, peak_flops: float) -> None:
    """Model FLOPs utilisation on the floor of work: 6 x params per token for the policy (forward and
    backward) + 2 x params for the reference forward, on P + |yw| + |yl| tokens per pair (attention not
    counted), the same numerator for both sides, so the MFU ratio equals the pairs/s ratio."""
    for side in (v for v in summary.values() if isinstance(v, dict)):  # every side; not "shape"
        side["mfu"] = 8 * n_params * min_tokens_per_pair * side["pairs_per_s"] / peak_flops


def main() -> None:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows as it happens, also into a file
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        sides = {**dict.fromkeys(OURS, run_prefgate), "trl": run_trl, "float64": run_float64,
                 "trl-precompute": lambda a: run_trl(a, precompute=True)}
        result = sides[args.child](args)
        print("RESULT " + json.dumps(result), flush=True)
        return
    config = CONFIGS["quick" if args.quick else args.config]
    shapes = QUICK_SHAPES if args.quick else SHAPES
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, ref = tmp / "policy", tmp / "reference"
        n_params = build_model(config, 0, model)
        if args.reference == "policy":
            ref = model
        else:
            build_model(config, 1, ref)
            build_tokenizer(config["vocab_size"], ref)
        build_tokenizer(config["vocab_size"], model)
        print(f"# prefgate vs TRL 1.16 DPOTrainer: Llama {n_params / 1e6:.1f}M parameters "
              f"({config['num_hidden_layers']} layers, hidden {config['hidden_size']}, vocab {config['vocab_size']}), "
              f"batch {args.batch_size} pairs, {args.steps} timed steps after 1 warm-up, {args.rounds} rounds "
              f"{'A B C' if args.trl_precompute else 'A B'}, "
              f"{args.device} {args.dtype}, {args.threads} threads, pack_tokens {args.pack_tokens}, reference "
              f"{args.reference}, prefgate monitor.signal {args.monitor}, TRL Liger kernels {args.trl_liger}")
        print(f"# machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
        for name, shape in ((k, v) for k, v in shapes.items() if k in args.shapes):
            data = tmp / f"{name}.jsonl"
            synth_pairs(data, (args.steps + 1) * args.batch_size, shape, config["vocab_size"], seed=0)
            runs = {"prefgate": [], **{f"prefgate-{mode}": [] for mode in args.ckpt_side}, "trl": [],
                    **({"trl-precompute": []} if args.trl_precompute else {})}
            for _ in range(args.rounds):
                for side in runs:
                    runs[side].append(child(side, args, model, ref, data, args.pack_tokens if "prefgate" in side
                                            else None))
            pairs = args.steps * args.batch_size
            tokens, floor = data_tokens(data, args.steps, args.batch_size)
            summary = summarise(name, runs, tokens, pairs, args.batch_size, args.steps + 1)
            if args.reference == "other":  # with the policy as its own reference the step-0 loss is log 2 exactly
                summary["loss0_float64"] = child("float64", args, model, ref, data, None)["loss0"]
            if args.device == "cuda":
                add_mfu(summary, n_params, floor / pairs, args.peak_tflops * 1e12)
            print(f"# {runs['prefgate'][0]['forward']}")
            report(summary, args)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"summary": summary, "runs": runs}) + "\n")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small model and short sequences: a smoke test")
    p.add_argument("--config", choices=sorted(CONFIGS), default="55m")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run, after one warm-up (6; --quick 2)")
    p.add_argument("--rounds", type=int, default=None, help="A B rounds per data shape (2; --quick 1)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--json", help="append each shape's summary and raw per-step times to this JSONL file")
    p.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=DEFAULT_SHAPES,
                   help="data shapes to run (default: prompt-heavy completion-heavy)")
    p.add_argument("--attn", default="sdpa", help="prefgate's attn_implementation (flex_attention on GPU); TRL: sdpa")
    p.add_argument("--pack-tokens", type=int, default=None, help="prefgate: pack pairs into rows of this many tokens")
    p.add_argument("--forward", choices=["prefix_shared", "concatenated", "auto"], default="prefix_shared",
                   help="prefgate's forward (concatenated: the same loop on TRL's layout)")
    p.add_argument("--reference", choices=["other", "policy"], default="other",
                   help="other: a second model, live on both sides; policy: the initial policy, each trainer's "
                   "default way (prefgate auto: precomputed; TRL: a frozen copy)")
    p.add_argument("--trl-precompute", action="store_true",
                   help="add TRL with precompute_ref_log_probs=True as a third side (with --reference policy: TRL "
                   "keeps no reference model)")
    p.add_argument("--ckpt-side", nargs="+", default=[], choices=["off", "selective", "full"],
                   help="add prefgate with model.gradient_checkpointing set so as sides (TRL 1.16's default is "
                   "gradient_checkpointing=True, i.e. full; prefgate's default side is whatever its config says)")
    p.add_argument("--monitor", choices=["after_diff", "mean"], default="after_diff",
                   help="prefgate's monitor.signal: after_diff (the default) builds the collapse monitor's shift "
                   "probe at set-up; mean builds none (TRL has no such probe)")
    p.add_argument("--trl-liger", action="store_true",
                   help="TRL with Liger's kernels (use_liger_kernel=True: RMSNorm, RoPE, SwiGLU; needs liger-kernel)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads in each run (default: all)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="GPU dense bf16 peak, for MFU (H100 SXM: 989)")
    p.add_argument("--child", choices=[*OURS, "trl", "trl-precompute", "float64"],
                   help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--ref", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.steps = args.steps or (2 if args.quick else 6)
    args.rounds = args.rounds or (1 if args.quick else 2)
    return args


if __name__ == "__main__":
    main()
