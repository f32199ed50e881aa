"""Every setting of the demo in one place: the SFT recipe of the shipped checkpoint, and the preference runs.

The preference settings follow the feasibility study quoted in issue 11 (beta 0.1, lambda 50, 5 epochs); the
learning rate is chosen on the dev suite (`prefgate.demo.choose`, `LR_CHOICE`), never on test, and the report
states how. In default mode the dev suite is the dev split plus every add and max training prompt the SFT recipe
never drew (3,300 prompts; `task.dev_problems`); `--quick` keeps the dev split alone (200). While training, every
run is watched by the collapse monitor (the chosen answer's log-prob shift after the first differing token, on a
fixed probe sample of its pairs) and gated on the dev suite every `gate_every` steps against the SFT model. Extra
runs at rates dev rejected, labelled with their rate wherever shown: `dpo-v8-lr1e-4` (the rate the 200-prompt dev
split chose before the dev suite grew), `dpo-v8-keep-lr1e-4` (the same with `eval.on_block: keep_best`: it ends
with the latest model the gate promoted) and, in `--quick`, `dpo-v8-keep-lr1e-3` (the grid's highest rate).
The split seed is fixed: the shipped SFT checkpoint was trained on the train prompts of split 0, so any other
split would put some of its training prompts in the preference pool or the test set. `--seed` changes
everything after SFT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SPLIT_SEED = 0
MAX_LENGTH = 24  # tokens: the longest prompt ("max(99,98)=") plus answer and EOS is 15

# The SFT recipe of the shipped checkpoint (`prefgate demo --from-scratch` re-runs it).
SFT_PER_CATEGORY = 8000  # records per category (mul, with 600 distinct train prompts, repeats them)
SFT_INIT_SEED = 0
SFT_CONFIG = {
    "loss": {"type": "sft"},
    "optim": {"lr": 2.0e-3, "schedule": "cosine", "warmup_steps": 100, "weight_decay": 0.0},
    "batch_size": 256,
    "max_steps": 3000,
    "seed": 0,
    "log_every": 25,
    "checkpoint_every": 500,
    "checkpoint_keep": 6,
    "memory_probe": False,
}


@dataclass(frozen=True)
class RunSpec:
    """One preference run: a loss on a pair set, from the SFT checkpoint."""

    name: str
    loss: str
    pairs: str
    hyperparameters: dict = field(default_factory=dict)
    allow_audit_fail: str | None = None  # set only to show what an ignored audit costs
    seed_offset: int = 0  # a repeat of a run on another preference seed (pairs and training)
    on_block: str = "warn"  # what the in-training gate does when it blocks (eval.on_block)
    lr: float | None = None  # a run at another rate than the dev-chosen one (said wherever it is shown)

    @property
    def label(self) -> str:
        return f"{self.loss.upper()} on {self.pairs}"


@dataclass(frozen=True)
class Settings:
    mode: str
    pairs_per_category: int  # training prompts per category (a constructed set has one pair per prompt)
    runs: tuple[RunSpec, ...]
    lr: float = 3e-5  # chosen on dev: LR_CHOICE
    epochs: int = 5
    batch_size: int = 32
    warmup_steps: int = 10
    label_fraction: float = 0.10  # the human label sample (here: the simulated oracle rater)
    sample_k: int = 4
    threads: int = 1  # one thread: bit-reproducible, and faster than two on a shared 2-core machine
    eval_batch_size: int = 1000  # prompts a generation batch (eval, in-training gate): the tiny model fits 1,000
    repeat_seeds: int = 0  # DPO and DPOP on v8 again with seed + 1, ..., seed + repeat_seeds (no in-training gate)
    gate_every: int = 10  # the in-training gate: the dev suite every N optimizer steps (eval.every)
    probe_pairs: int = 16  # the collapse monitor's probe sample (diagnose_pairs; the trainer's default)
    dev_unseen: bool = False  # add every train prompt SFT never drew to the dev suite (add 1,600, max 1,500)

    @property
    def all_runs(self) -> tuple[RunSpec, ...]:
        """`runs`, then the seed repeats of the two v8 runs (they get their own v8 set, `v8-s<k>`)."""
        repeats = tuple(RunSpec(f"{r.name}-s{k}", r.loss, f"v8-s{k}", r.hyperparameters, seed_offset=k,
                                on_block=r.on_block)
                        for k in range(1, self.repeat_seeds + 1) for r in self.runs if r.name in REPEATED)
        return self.runs + repeats

    def describe(self) -> dict:
        return {"mode": self.mode, "rationale": RATIONALE, "pairs_per_category": self.pairs_per_category,
                "beta": BETA, "lam": LAMBDA,
                "lr": self.lr,
                "epochs": self.epochs, "batch_size": self.batch_size, "warmup_steps": self.warmup_steps,
                "schedule": "cosine", "label_fraction": self.label_fraction, "sample_k": self.sample_k,
                "threads": self.threads, "split_seed": SPLIT_SEED, "max_length": MAX_LENGTH,
                "repeat_seeds": self.repeat_seeds, "gate_every": self.gate_every, "gate_suite": "dev",
                "dev_unseen": self.dev_unseen,
                "probe_pairs": self.probe_pairs, "lr_choice": LR_CHOICE,
                "runs": [{"name": r.name, "loss": r.loss, "pairs": r.pairs, **r.hyperparameters,
                          **({"allow_audit_fail": r.allow_audit_fail} if r.allow_audit_fail else {}),
                          **({"on_block": r.on_block} if r.on_block != "warn" else {}),
                          **({"lr": r.lr} if r.lr is not None else {})}
                         for r in self.all_runs]}


REPEATED = ("dpo-v8", "dpop-v8")
RATIONALE = (
    "Why these settings: beta 0.1, lambda 50 and 5 epochs are those of the feasibility study behind this demo. The "
    "learning rate was chosen on the dev suite (3,300 prompts: the dev split's 50 a category, plus the 3,100 add and "
    "max training prompts the SFT recipe never drew), never on test: one rate for the main runs, "
    "the one of the grid 3e-5, 1e-4, 3e-4, 1e-3 with the best mean dev exact match of DPO and DPO-Positive on v8 "
    "(seed 0 for the whole grid; seeds 1 and 2 for the rates within reach of the best; ties to the smaller rate). "
    "Test accuracy was then measured once, with that rate; runs at another rate say so. The table lr_choice gives "
    "the dev numbers.")
BETA = 0.1
LAMBDA = 50.0

DEFAULT_RUNS = (
    RunSpec("dpo-v8", "dpo", "v8", {"beta": BETA}),
    RunSpec("dpo-v8-lr1e-4", "dpo", "v8", {"beta": BETA}, lr=1e-4),
    RunSpec("dpo-v8-keep-lr1e-4", "dpo", "v8", {"beta": BETA}, on_block="keep_best", lr=1e-4),
    RunSpec("dpop-v8", "dpop", "v8", {"beta": BETA, "lam": LAMBDA}),
    RunSpec("ipo-v8", "ipo", "v8", {"beta": BETA}),
    RunSpec("dpo-v7", "dpo", "v7", {"beta": BETA}),
    RunSpec("dpop-v7", "dpop", "v7", {"beta": BETA, "lam": LAMBDA}),
    RunSpec("dpo-v6", "dpo", "v6", {"beta": BETA}),
)
QUICK_RUNS = (
    RunSpec("dpo-v8", "dpo", "v8", {"beta": BETA}),
    RunSpec("dpo-v8-keep-lr1e-3", "dpo", "v8", {"beta": BETA}, on_block="keep_best", lr=1e-3),
    RunSpec("dpop-v8", "dpop", "v8", {"beta": BETA, "lam": LAMBDA}),
    RunSpec("dpo-v6", "dpo", "v6", {"beta": BETA}),
)


# How the learning rate was chosen (`prefgate demo --choose-lr` reruns it; `prefgate.demo.choose`): dev exact match
# of the v8 runs from the shipped checkpoint, default mode (the 3,300-prompt dev suite), measured 2026-12-02 on the
# 2-core machine. Only dev decided; the SFT model scores 0.9924 on dev.
LR_CHOICE: dict = {
    "split": "dev",
    "rule": "the best mean dev exact match over DPO-v8 and DPOP-v8 and the seeds run at that rate (seed 0 for every "
            "rate; seeds 1, 2 for rates within 5 points of the best on seed 0); ties to the smaller rate",
    "sft_dev": 0.9924, "grid": [3e-5, 1e-4, 3e-4, 1e-3], "chosen": 3e-5,
    "dev": {"3e-05": {"mean": 0.9927, "n_runs": 6}, "0.0001": {"mean": 0.9881, "n_runs": 6},
            "0.0003": {"mean": 0.9715, "n_runs": 6}, "0.001": {"mean": 0.8383, "n_runs": 2}},
    # [lr, seed, loss, dev exact match]
    "runs": [[3e-05, 0, "dpo", 0.991818], [3e-05, 0, "dpop", 0.992424], [0.0001, 0, "dpo", 0.973636],
             [0.0001, 0, "dpop", 0.992424], [0.0003, 0, "dpo", 0.93], [0.0003, 0, "dpop", 0.988485],
             [0.001, 0, "dpo", 0.709697], [0.001, 0, "dpop", 0.96697], [3e-05, 1, "dpo", 0.99303],
             [3e-05, 1, "dpop", 0.993333], [3e-05, 2, "dpo", 0.992727], [3e-05, 2, "dpop", 0.99303],
             [0.0001, 1, "dpo", 0.990909], [0.0001, 1, "dpop", 0.991515], [0.0001, 2, "dpo", 0.98697],
             [0.0001, 2, "dpop", 0.993333], [0.0003, 1, "dpo", 0.958182], [0.0003, 1, "dpop", 0.988788],
             [0.0003, 2, "dpo", 0.974545], [0.0003, 2, "dpop", 0.989091]],
}


def settings_for(quick: bool) -> Settings:
    if quick:
        return Settings("quick", pairs_per_category=100, runs=QUICK_RUNS, gate_every=6)
    return Settings("default", pairs_per_category=250, runs=DEFAULT_RUNS, repeat_seeds=2, dev_unseen=True,
                    gate_every=20)
