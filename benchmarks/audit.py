"""Benchmark: `run_audit` over synthetic pairs through every text-only check (all but `truncation`).

    .venv/bin/python benchmarks/audit.py [--pairs 100000] [--seed 0]

Targets on a 2-core machine: 100k pairs in under 60 s and 2 GB peak RSS (issue 5); 1M pairs in under
240 s and 4 GB (issue 17). Prints, for each check, its wall and CPU time (all threads), the process's RSS
after it and the peak RSS so far; then the wall and CPU time of the audit alone, the peak RSS of the whole
process (data generation included), the ratios to the target for this size (below 1.0 is within it: sizes
up to 100k are held to issue 5's, larger ones to issue 17's), and the load average, since on a shared
2-core machine other work stretches the wall time (CPU time is the steadier figure).

The data imitate a real preference set: 0.7 x pairs prompts drawn with replacement (~53k distinct at 100k,
~530k at 1M; several pairs for some), answers of log-normal length around 80 words (~500 characters)
from a 5,000-word vocabulary, markdown lists in some, apologies in some rejected answers, 5% low-edit
pairs, 1% exact duplicates, categories, rejection types and graders; plus a 1,000-prompt eval set (some
leaked) and 2,000 human labels, so that `leakage`, `label_agreement` and `grader_independence` do their
full work too. The same seed gives the same data at any version of this script since issue 5.
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

TARGETS = ((100_000, 60.0, 2.0, "issue 5"), (1_000_000, 240.0, 4.0, "issue 17"))  # (up to n pairs, s, GB)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def rss_gb() -> float:
    """The resident set size now (Linux /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024**2
    except (OSError, StopIteration):
        return peak_rss_gb()


def target_for(n: int) -> tuple[float, float, str]:
    for up_to, seconds, gigabytes, issue in TARGETS:
        if n <= up_to:
            return seconds, gigabytes, issue
    return TARGETS[-1][1:]


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
    parser.add_argument("--pairs", "--n", dest="pairs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = args.pairs

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    start = time.perf_counter()
    pairs = synthetic_pairs(n, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    eval_prompts = [pairs[int(i)].prompt for i in rng.integers(0, n, size=20)]  # 20 leaked ...
    eval_prompts += [f"held-out question {i} about topic {i * 31}" for i in range(980)]  # ... of 1,000
    evals = PromptSet("synthetic-eval", [f"e{i}" for i in range(len(eval_prompts))], eval_prompts)
    labels = [HumanLabel(pairs[int(i)].id, "chosen" if k % 10 else "rejected", "r1")
              for k, i in enumerate(rng.choice(n, size=min(2000, n), replace=False))]
    dataset = PreferenceDataset("synthetic", pairs)
    print(f"data: {n} synthetic pairs made in {time.perf_counter() - start:.1f} s (RSS {rss_gb():.2f} GB, "
          f"peak {peak_rss_gb():.2f} GB)", flush=True)

    after: dict[str, tuple[float, float, float]] = {}  # check id -> (CPU seconds so far, RSS, peak RSS)

    def progress(check_id: str, _seconds: float) -> None:
        after[check_id] = (time.process_time(), rss_gb(), peak_rss_gb())

    start, cpu = time.perf_counter(), time.process_time()
    report = run_audit(dataset, eval_dataset=evals, labels=labels, policy_model="gpt-4o",
                       checks=TEXT_ONLY_CHECKS, progress=progress)
    wall, cpu_end = time.perf_counter() - start, time.process_time()
    rss = peak_rss_gb()

    print(f"  {'check':<20} {'seconds':>8} {'CPU s':>7}  {'RSS GB':>6}  {'peak':>5}  status value")
    before = cpu
    for check in report["checks"]:
        cpu_now, now, peak = after[check["id"]]
        print(f"  {check['id']:<20} {check['seconds']:8.2f} {cpu_now - before:7.2f}  {now:6.2f}  {peak:5.2f}  "
              f"{check['status']:<6} {pct(check['value'])}")
        before = cpu_now
    cpu = cpu_end - cpu
    target_s, target_gb, issue = target_for(n)
    print(f"audit wall time: {wall:.1f} s, CPU {cpu:.1f} s   (target {target_s:.0f} s for {issue}, "
          f"ratio {wall / target_s:.2f})")
    print(f"peak RSS: {rss:.2f} GB   (target {target_gb:.0f} GB, ratio {rss / target_gb:.2f})")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (1-minute; this process counts for about 1, so "
          f"more than {os.cpu_count()} means other work competed for the CPUs)")
    print(f"verdict: {report['verdict']}")


if __name__ == "__main__":
    main()
