"""Benchmark: `run_audit` over 100k synthetic pairs through every text-only check (all but `truncation`).

    .venv/bin/python benchmarks/audit.py [--n 100000] [--seed 0]

Target (issue 5): under 60 s and under 2 GB peak RSS on a 2-core machine. Prints the wall time of the
audit alone, the time of each check, the peak RSS of the whole process (data generation included), and
the ratio of the wall time to the 60 s target (below 1.0 is within it).

The data imitate a real preference set: ~70k distinct prompts (several pairs for some), answers of
log-normal length around 80 words (~500 characters) from a 5,000-word vocabulary, markdown lists in some,
apologies in some rejected answers, 5% low-edit pairs, 1% exact duplicates, categories, rejection types
and graders; plus a 1,000-prompt eval set (some leaked) and 2,000 human labels, so that `leakage`,
`label_agreement` and `grader_independence` do their full work too.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np

from prefgate.audit import TEXT_ONLY_CHECKS, HumanLabel, PromptSet, run_audit
from prefgate.audit.result import pct
from prefgate.data.dataset import PreferenceDataset
from prefgate.data.records import PreferencePair

TARGET_S = 60.0
TARGET_RSS_GB = 2.0


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


class Words:
    def __init__(self, rng: np.random.Generator, vocab: int = 5000):
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        self.vocab = ["".join(rng.choice(letters, size=rng.integers(2, 9))) for _ in range(vocab)]
        self.rng = rng

    def texts(self, n: int, mean_words: float, chunk: int = 50_000) -> list[str]:
        """`n` texts; the word ids are drawn `chunk` texts at a time (the same stream as one draw, without
        holding ~90 words x n ids and str references at once: 1.4 GB at 1M pairs)."""
        lengths = np.clip(self.rng.lognormal(np.log(mean_words), 0.5, size=n).astype(int), 3, 1500)
        out = []
        for first in range(0, n, chunk):
            part = lengths[first:first + chunk]
            words = [self.vocab[i] for i in self.rng.integers(0, len(self.vocab), size=int(part.sum()))]
            start = 0
            for length in part:
                out.append(" ".join(words[start:start + length]) + ".")
                start += length
        return out


def synthetic_pairs(n: int, seed: int) -> list[PreferencePair]:
    rng = np.random.default_rng(seed)
    words = Words(rng)
    prompts = words.texts(int(n * 0.7), 40)
    prompt_of = rng.integers(0, len(prompts), size=n)
    chosen, rejected = words.texts(n, 80), words.texts(n, 80)
    kinds = ["wrong_fact", "unsafe", "off_topic", "truncated", "verbose"]
    graders = ["gpt-4o-mini", "claude-3-5-haiku", "llama-3.1-70b"]
    pairs = []
    for i in range(n):
        c, r = chosen[i], rejected[i]
        if i % 20 == 0:  # 5% low-edit: one word changed
            r = c.replace(" ", " not ", 1)
        if i % 7 == 0:
            c = "Here is what I found:\n\n- " + c.replace(". ", ".\n- ")
        if i % 9 == 0:
            r = "I'm sorry, but I can't help with that. " + r
        kind = kinds[i % 5] if i % 3 else "wrong_fact"
        pairs.append(PreferencePair(id=f"s{i}", prompt=prompts[prompt_of[i]], chosen=c, rejected=r,
                                    category=f"cat{i % 12}", rejection_type=kind, grader=graders[i % 3]))
    for i in range(0, n, 100):  # 1% exact duplicates
        pairs[i + 1] = PreferencePair(id=f"s{i + 1}", prompt=pairs[i].prompt, chosen=pairs[i].chosen,
                                      rejected=pairs[i].rejected)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    pairs = synthetic_pairs(args.n, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    eval_prompts = [pairs[int(i)].prompt for i in rng.integers(0, args.n, size=20)]  # 20 leaked ...
    eval_prompts += [f"held-out question {i} about topic {i * 31}" for i in range(980)]  # ... of 1,000
    evals = PromptSet("synthetic-eval", [f"e{i}" for i in range(len(eval_prompts))], eval_prompts)
    labels = [HumanLabel(pairs[int(i)].id, "chosen" if k % 10 else "rejected", "r1")
              for k, i in enumerate(rng.choice(args.n, size=2000, replace=False))]
    dataset = PreferenceDataset("synthetic", pairs)
    made_s, rss_before = time.perf_counter() - start, peak_rss_gb()

    start = time.perf_counter()
    report = run_audit(dataset, eval_dataset=evals, labels=labels, policy_model="gpt-4o",
                       checks=TEXT_ONLY_CHECKS)
    wall = time.perf_counter() - start
    rss = peak_rss_gb()

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"data: {args.n} synthetic pairs made in {made_s:.1f} s (peak RSS {rss_before:.2f} GB)")
    for check in report["checks"]:
        value = pct(check["value"])
        print(f"  {check['id']:<20} {check['seconds']:7.2f} s  {check['status']:<4}  value {value}")
    print(f"audit wall time: {wall:.1f} s   (target {TARGET_S:.0f} s, ratio {wall / TARGET_S:.2f})")
    print(f"peak RSS: {rss:.2f} GB          (target {TARGET_RSS_GB:.0f} GB, ratio {rss / TARGET_RSS_GB:.2f})")
    print(f"verdict: {report['verdict']}")


if __name__ == "__main__":
    main()
