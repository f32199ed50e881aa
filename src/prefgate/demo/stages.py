"""The demo's stages, each a thin call into prefgate's own stage functions, reading and writing files.

`Layout` names every file the demo writes under its output folder. Each stage function takes paths and
returns plain data for the report; none of them knows about the others.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from prefgate.demo.settings import MAX_LENGTH, RunSpec, Settings
from prefgate.reportio import read_json, write_json

CHECKPOINT = Path(__file__).resolve().parent / "checkpoint"
OWNED = ("data", "pairs", "labels", "audits", "runs", "evals", "gates", "diagnose", ".prefgate", "report.html",
         "report.json", "lr_choice.json")


@dataclass(frozen=True)
class Layout:
    root: Path

    def __getattr__(self, name: str) -> Path:  # layout.runs, layout.evals, ...
        return self.root / name

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def reset(self) -> None:
        """Remove what an earlier demo wrote here (only the demo's own names), so runs start clean."""
        for name in OWNED:
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        self.root.mkdir(parents=True, exist_ok=True)


# -- SFT ----------------------------------------------------------------------------------------------------


def install_checkpoint(dest: Path) -> Path:
    """Copy the shipped SFT run folder (manifest, metrics, model/) to `dest`; returns it."""
    if not (CHECKPOINT / "model" / "model.safetensors").exists():
        from prefgate.errors import InputError

        raise InputError("the shipped SFT checkpoint is missing; run `prefgate demo --from-scratch`",
                         where=str(CHECKPOINT))
    shutil.copytree(CHECKPOINT, dest, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return dest


def sft_config(init_dir: Path, data_path: Path, run_dir: Path):
    from prefgate.config import load_train_config
    from prefgate.demo.settings import SFT_CONFIG

    return load_train_config(None, model={"name_or_path": str(init_dir)},
                             data={"train": str(data_path), "max_length": MAX_LENGTH},
                             output_dir=str(run_dir), **SFT_CONFIG)


def train_sft(layout: Layout, split, *, show_progress: bool) -> Path:
    """`--from-scratch`: write the SFT data and a random init, then `prefgate train` with `loss: sft`."""
    from prefgate.demo.model import init_model
    from prefgate.demo.pairsets import write_jsonl
    from prefgate.demo.settings import SFT_INIT_SEED, SFT_PER_CATEGORY
    from prefgate.demo.task import sft_records
    from prefgate.train.loop import train

    data = write_jsonl(sft_records(split, per_category=SFT_PER_CATEGORY, seed=0), layout.data / "sft.jsonl")
    init = init_model(layout.runs / "sft-init", seed=SFT_INIT_SEED)
    config = sft_config(init, data, layout.runs / "sft")
    write_sft_yaml(config, layout.data / "sft.yaml")
    result = train(config, show_progress=show_progress)
    if result.status != "completed":
        raise RuntimeError(f"SFT training stopped: {result.reason}")
    return result.run_dir


def write_sft_yaml(config, path: Path) -> Path:
    import yaml

    data = json.loads(config.model_dump_json(exclude_defaults=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# -- eval -------------------------------------------------------------------------------------------------


def evaluate(model: Path, suite: Path, out: Path, settings: Settings) -> dict:
    """`prefgate eval` (greedy, exact match) of a run folder or model folder on the suite."""
    from prefgate.eval.runner import EvalOptions, run_eval
    from prefgate.lm.generate import GenerationConfig

    options = EvalOptions(generation=GenerationConfig(max_new_tokens=6, batch_size=settings.eval_batch_size),
                          dtype="float32", device="cpu", progress=False)
    report = run_eval(str(model), str(suite), options=options)
    write_json(report, out)
    return report


def write_dev_suite(split, settings: Settings, out: Path) -> Path:
    """The dev suite: the dev split, plus (`settings.dev_unseen`) every train prompt that SFT never drew."""
    from prefgate.demo.pairsets import write_jsonl
    from prefgate.demo.settings import SFT_PER_CATEGORY
    from prefgate.demo.task import dev_problems, suite_items

    problems = dev_problems(split, add_unseen=settings.dev_unseen, sft_per_category=SFT_PER_CATEGORY)
    return write_jsonl(suite_items(problems), out)


# -- audit ------------------------------------------------------------------------------------------------

# Answers here are 1-4 characters, so one changed digit is a normalised edit distance of 0.25-0.5; the
# default low-edit cut (0.1) is sized for sentence-long answers. The demo's policy says so explicitly.
AUDIT_POLICY = {"edit_distance": {"low_edit_below": 0.51}}


MIN_LABELS = 30  # the audit warns below 30 labelled pairs, so the simulated team labels at least that many


def oracle_labels(pairs_path: Path, answers: dict[str, str], out: Path, fraction: float, seed: int) -> Path:
    """The simulated 10% human label sample: prefgate's stratified label sample, judged by the oracle."""
    from prefgate.data import read_dataset
    from prefgate.demo.graders import ORACLE_RATER, oracle_preference
    from prefgate.label import label_sample

    records = read_dataset(pairs_path).records
    rows = [{"id": rec.id, "preferred": oracle_preference(rec.chosen, rec.rejected, answers[rec.meta["source_id"]]),
             "rater": ORACLE_RATER} for rec in label_sample(records, fraction, seed=seed)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return out


def audit(pairs_path: Path, labels: Path, suite: Path, out: Path, home: Path) -> dict:
    """`prefgate audit PAIRS --labels LABELS --eval SUITE --json OUT --record` with the demo's policy: the verdict
    is recorded in the registry home by the data's fingerprint, so `train` refuses a set whose audit failed."""
    from prefgate.audit import policy_from_dict, run_audit
    from prefgate.data import read_dataset
    from prefgate.registry.audits import record_audit

    report = run_audit(read_dataset(pairs_path), eval_dataset=str(suite), labels=str(labels),
                       policy=policy_from_dict(AUDIT_POLICY))
    write_json(report, out)
    record_audit(home, out)
    return report


# -- preference training ----------------------------------------------------------------------------------


def pref_config(spec: RunSpec, sft_model: Path, pairs_path: Path, run_dir: Path, settings: Settings, seed: int, *,
                dev_suite: Path | None, home: Path):
    """The run's train config: the collapse monitor on its defaults (the probe of `probe_pairs` pairs every step)
    and, with `dev_suite`, the in-training gate on it every `gate_every` steps against the SFT model's dev eval
    (cached in the demo's registry home, whose recorded audits the trainer checks)."""
    from prefgate.config import load_train_config

    gate = {} if dev_suite is None else {
        "every": settings.gate_every, "suite": str(dev_suite), "on_block": spec.on_block, "max_new_tokens": 6,
        "batch_size": settings.eval_batch_size, "cache_dir": str(home / "cache" / "eval")}
    return load_train_config(
        None, model={"name_or_path": str(sft_model)}, data={"train": str(pairs_path), "max_length": MAX_LENGTH},
        loss={"type": spec.loss, **spec.hyperparameters}, reference={"cache_dir": str(home / "cache" / "reference")},
        optim={"lr": spec.lr or settings.lr, "schedule": "cosine", "warmup_steps": settings.warmup_steps},
        batch_size=settings.batch_size, epochs=settings.epochs, seed=seed, output_dir=str(run_dir), log_every=1,
        memory_probe=False, diagnose_pairs=settings.probe_pairs, eval=gate, registry_home=str(home))


def train_preference(spec: RunSpec, sft_model: Path, pairs_path: Path, run_dir: Path, settings: Settings,
                     seed: int, *, dev_suite: Path | None, home: Path) -> dict:
    """`prefgate train` on one set; a refusal by the trainer's audit gate (its own audit, or the set's recorded
    audit) is an outcome, not an error."""
    from prefgate.train.loop import train
    from prefgate.train.monitors import TrainingAborted

    config = pref_config(spec, sft_model, pairs_path, run_dir, settings, seed, dev_suite=dev_suite, home=home)
    try:
        result = train(config, allow_audit_fail=spec.allow_audit_fail, show_progress=False)
    except TrainingAborted as err:
        return {"status": "refused", "reason": str(err), "run_dir": None}
    manifest = read_json(run_dir / "manifest.json")
    return {"status": result.status, "reason": result.reason, "run_dir": str(result.run_dir),
            "steps": result.steps, "final_metrics": result.final_metrics, "run_id": manifest["run_id"],
            "monitor": manifest.get("monitor"), "in_training_gate": manifest.get("in_training_gate")}


def metric_series(run_dir: Path, name: str) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r[name]) for r in rows if r.get(name) is not None]


# -- gate and registry ------------------------------------------------------------------------------------


def gate(baseline_eval: Path, candidate_eval: Path, out: Path) -> dict:
    """`prefgate gate BASELINE CANDIDATE --json OUT` with the default policy."""
    from prefgate.gate import GatePolicy, gate_files

    return read_json(write_json(gate_files(baseline_eval, candidate_eval, GatePolicy()), out))


ALIAS = "prod"


def register_baseline(home: Path, sft_run: Path, sft_eval: Path) -> dict:
    """Register the SFT run with its eval and make it the first holder of `prod`. There is nothing to gate
    the first holder against, so this promotion is an override, recorded with its reason."""
    from prefgate.registry import Registry

    registry = Registry(home)
    added = registry.add(sft_run, evals=[sft_eval])
    entry = registry.promote(added["run_id"], ALIAS, force=True,
                             reason="bootstrap: the SFT baseline is the first holder of prod")
    return {"run_id": added["run_id"], "alias": ALIAS, "forced": bool(entry.get("forced")),
            "reason": entry.get("reason")}


def register(home: Path, run_dir: Path, eval_path: Path) -> str:
    from prefgate.registry import Registry

    return Registry(home).add(run_dir, evals=[eval_path])["run_id"]


def promote(home: Path, run_id: str, gate_path: Path) -> dict:
    """`prefgate registry promote RUN --alias prod --gate GATE`: the registry checks the gate itself."""
    from prefgate.registry import PromotionRefused, Registry

    try:
        Registry(home).promote(run_id, ALIAS, gate_path)
    except PromotionRefused as err:
        return {"run_id": run_id, "alias": ALIAS, "promoted": False, "outcome": "refused", "message": str(err)}
    return {"run_id": run_id, "alias": ALIAS, "promoted": True, "outcome": "promoted",
            "message": f"{run_id} now holds {ALIAS}"}


def alias_history(home: Path) -> list[dict]:
    from prefgate.registry import Registry

    return Registry(home).history(ALIAS)


# -- diagnose ---------------------------------------------------------------------------------------------


def diagnose_runs(run_dirs: dict[str, Path], sft_model: Path, pairs_path: Path, out_dir: Path) -> dict[str, dict]:
    """`prefgate diagnose` of each run against the SFT model on the same pairs; reports by run name."""
    from prefgate.data import read_dataset
    from prefgate.diagnose import diagnose
    from prefgate.lm.load import load_model

    dataset = read_dataset(pairs_path)
    reference = load_model(str(sft_model), dtype="float32", device="cpu")
    reports = {}
    for name, run_dir in run_dirs.items():
        policy = load_model(str(run_dir), dtype="float32", device="cpu")
        report = diagnose(policy.model, reference.model, dataset, reference.tokenizer, MAX_LENGTH, batch_size=256,
                          policy_info=policy.info, reference_info=reference.info)
        reports[name] = report
        write_json(report, out_dir / f"{name}.json")
    return reports
