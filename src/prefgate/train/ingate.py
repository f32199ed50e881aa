"""The in-training gate (`eval.suite`): every `eval.every` steps, evaluate the policy in memory on a suite and
gate it against a baseline with `prefgate.gate` (the code `prefgate gate` runs), so a regression shows while
training rather than after.

- `check_settings(config)`: `eval.suite`, `eval.gate` and `eval.baseline` loaded and checked against each other
  before anything else is (a bad suite, policy or baseline is one `InputError`: exit 2).
- The baseline: `eval.baseline` when given; else the starting model's eval on the suite, computed before step 1
  (the policy in memory, which is still the starting model) and cached under a key of the model, tokenizer,
  suite fingerprint and generation settings (`$PREFGATE_HOME/cache/eval`), so the next run from the same model
  reuses it. A copy goes in the run folder (`evals/baseline.json`), which a resumed run reads.
- `InTrainingGate.evaluate(step, model)`: `prefgate.eval.runner.score_suite` on the model in memory, the report
  written to `evals/step-NNNNNNN.json`, `gate_files(baseline, it, policy)` written to `gates/step-NNNNNNN.json`;
  returns the verdict row the manifest lists. Step 0 is the starting model: with the starting model as the
  baseline its verdict is the baseline against itself (promote), with `eval.baseline` it is evaluated.

No verdict promotes a model to an alias: `prefgate registry promote` still needs a final gate report.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefgate.errors import InputError

BASELINE = "baseline.json"


@dataclass
class GateSettings:
    """What `check_settings` loaded: the suite, the gate policy and, with `eval.baseline`, that report."""

    suite: Any  # prefgate.eval.suite.Suite
    policy: Any  # prefgate.gate.GatePolicy
    baseline: dict | None = None
    baseline_path: str | None = None

    @property
    def categories(self) -> list[str]:
        return sorted({item.category for item in self.suite.items})


def check_settings(config) -> GateSettings | None:
    """The in-training gate's settings, loaded and checked; None when `eval.suite` is not set."""
    ev = config.eval
    if ev.suite is None:
        return None
    from prefgate.eval.suite import load_suite
    from prefgate.gate import load_policy

    suite = load_suite(ev.suite)
    if any(item.scorer == "judge" for item in suite.items):
        raise InputError("has judge items, which the in-training gate cannot score (training configures no judge); "
                         "use a suite scored without a judge", where=ev.suite, field="eval.suite")
    policy = load_policy(ev.gate)
    settings = GateSettings(suite, policy)
    missing = [name for name in policy.protected if name not in settings.categories]
    if missing:
        raise InputError(f"protects category {missing[0]!r}, which eval.suite does not have (its categories: "
                         f"{', '.join(settings.categories)})", where=ev.gate, field="protected")
    if ev.baseline:
        settings.baseline = _checked_baseline(ev.baseline, settings)
        settings.baseline_path = ev.baseline
    return settings


def _checked_baseline(path: str, settings: GateSettings) -> dict:
    from prefgate.gate import read_report

    report, _ = read_report(path)
    if not isinstance(report, dict) or report.get("kind") != "eval":
        raise InputError("is not an eval report (expected \"kind\": \"eval\", as `prefgate eval` writes)", where=path,
                         field="eval.baseline")
    items = report.get("items") if isinstance(report.get("items"), list) else []
    found = sorted({it.get("category") for it in items if isinstance(it, dict) and isinstance(it.get("category"), str)})
    if found != settings.categories:
        raise InputError(f"its categories ({', '.join(found) or 'none with per-item scores'}) do not match "
                         f"eval.suite's ({', '.join(settings.categories)}); the baseline must be an eval of the same "
                         "suite", where=path, field="eval.baseline")
    suite = report.get("suite") if isinstance(report.get("suite"), dict) else {}
    if suite.get("fingerprint") != settings.suite.fingerprint:
        raise InputError(f"was evaluated on another suite (fingerprint {str(suite.get('fingerprint'))[:16]}) than "
                         f"eval.suite ({settings.suite.fingerprint[:16]}); the gate compares two evaluations of one "
                         "suite", where=path, field="eval.baseline")
    return report


# ---------------------------------------------------------------------------------------------------------
# Evaluating the policy in memory


def eval_options(config, settings: GateSettings, *, progress: bool = False):
    from prefgate.eval.runner import EvalOptions
    from prefgate.lm.generate import GenerationConfig

    generation = GenerationConfig(max_new_tokens=config.eval.max_new_tokens, batch_size=config.eval.batch_size)
    return EvalOptions(generation=generation, bands=settings.policy.bands, progress=progress)  # CI seed: 0, as eval


def evaluate_model(model, tokenizer, settings: GateSettings, options, info: dict[str, Any]) -> dict[str, Any]:
    """The eval report of `model` (in memory, left in the mode it was in) on the suite."""
    import torch

    from prefgate.eval.runner import build_report, score_suite
    from prefgate.lm.load import LoadedModel, eval_mode

    with eval_mode(model), torch.no_grad():
        items, _ = score_suite(LoadedModel(model, tokenizer, info), settings.suite, options)
    return build_report(info, settings.suite, items, options)


def baseline_key(config, settings: GateSettings, model, tokenizer) -> str:
    """The cache key of the starting model's eval: model, tokenizer, suite and how the suite is run."""
    from prefgate.eval.runner import EVAL_VERSION
    from prefgate.train.reference import model_identity, tokenizer_identity

    dtype = next(model.parameters()).dtype
    payload = {"model": model_identity(config.model.name_or_path, model), "tokenizer": tokenizer_identity(tokenizer),
               "suite": settings.suite.fingerprint, "max_new_tokens": config.eval.max_new_tokens,
               "bands": settings.policy.bands.model_dump(), "dtype": str(dtype),
               "load_in_4bit": bool(config.lora and config.lora.load_in_4bit), "eval_version": EVAL_VERSION,
               "format": 1}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def cache_dir(config) -> Path:
    return Path(config.eval.cache_dir or Path(os.environ.get("PREFGATE_HOME", ".prefgate")) / "cache" / "eval")


def _write_json(data: dict, path: Path) -> Path:
    from prefgate.reportio import write_json

    return write_json(data, path)


def _metrics(gate: dict[str, Any]) -> dict[str, Any]:
    """What metrics.jsonl logs of one evaluation: per-category accuracy and grade, overall, the decision."""
    out: dict[str, Any] = {"eval/suite/overall": gate["overall"]["candidate"],
                           "eval/suite_grade/overall": gate["overall"]["candidate_grade"]}
    for row in gate["categories"]:
        out[f"eval/suite/{row['name']}"] = row["candidate"]
        out[f"eval/suite_grade/{row['name']}"] = row["candidate_grade"]
    out["eval/gate"] = gate["decision"]
    return out


def verdict_row(step: int, gate: dict[str, Any], eval_path: str, gate_path: str, seconds: float) -> dict[str, Any]:
    """One in-training verdict as the manifest lists it."""
    return {"step": step, "decision": gate["decision"], "reasons": gate["reasons"],
            "overall": {"score": gate["overall"]["candidate"], "grade": gate["overall"]["candidate_grade"],
                        "p_value": gate["overall"]["p_value"]},
            "categories": {r["name"]: {"score": r["candidate"], "grade": r["candidate_grade"], "status": r["status"]}
                           for r in gate["categories"]},
            "eval": eval_path, "gate": gate_path, "seconds": round(seconds, 3), "metrics": _metrics(gate)}


class InTrainingGate:
    """The suite, policy and baseline of one run, and the files its evaluations write (main process only)."""

    def __init__(self, config, settings: GateSettings, run_dir: Path, tokenizer, *, progress: bool = False):
        self.config = config
        self.settings = settings
        self.run_dir = run_dir
        self.tokenizer = tokenizer
        self.options = eval_options(config, settings, progress=progress)  # progress: the suite's bars
        self.baseline_path = run_dir / "evals" / BASELINE
        self.baseline_source: dict[str, Any] = {}

    # -- the baseline (before step 1) ---------------------------------------------------------------------

    def prepare_baseline(self, model) -> float:
        """Make `evals/baseline.json`: the run's own copy (a resumed run), `eval.baseline`, the cache, or the
        starting model evaluated now (then cached). Returns the seconds spent evaluating (0 when read)."""
        if self.baseline_path.is_file():
            self.baseline_source = {"source": "run folder"}
            return 0.0
        self.baseline_path.parent.mkdir(parents=True, exist_ok=True)
        if self.settings.baseline_path:
            shutil.copyfile(self.settings.baseline_path, self.baseline_path)
            self.baseline_source = {"source": "eval.baseline", "path": self.settings.baseline_path}
            return 0.0
        key = baseline_key(self.config, self.settings, model, self.tokenizer)
        cached = cache_dir(self.config) / f"{key}.json"
        if cached.is_file() and _is_eval_of(cached, self.settings.suite.fingerprint):
            shutil.copyfile(cached, self.baseline_path)
            self.baseline_source = {"source": "starting model (cached)", "cache": str(cached)}
            return 0.0
        t0 = time.perf_counter()
        info = {"path": self.config.model.name_or_path, "base": None, "adapter": None, "step": 0,
                "note": "the starting model, evaluated in memory before step 1"}
        report = evaluate_model(model, self.tokenizer, self.settings, self.options, info)
        seconds = time.perf_counter() - t0
        _write_json(report, self.baseline_path)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".tmp{os.getpid()}")
            shutil.copyfile(self.baseline_path, tmp)
            os.replace(tmp, cached)
        except OSError:  # a cache that cannot be written costs the next run one evaluation, nothing more
            pass
        self.baseline_source = {"source": "starting model (evaluated now)", "cache": str(cached)}
        return seconds

    @property
    def baseline_is_start(self) -> bool:
        return not self.settings.baseline_path

    # -- an evaluation ------------------------------------------------------------------------------------

    def evaluate(self, step: int, model) -> dict[str, Any]:
        """Evaluate `model` at optimizer step `step`, gate it, write both reports; the verdict row."""
        from prefgate.gate import gate_files
        from prefgate.reportio import read_json

        t0 = time.perf_counter()
        name = f"step-{step:07d}.json"
        eval_path, gate_path = self.run_dir / "evals" / name, self.run_dir / "gates" / name
        if step == 0 and self.baseline_is_start:  # the starting model is the baseline: no second evaluation
            report = read_json(self.baseline_path)
        else:
            info = {"path": f"{self.run_dir} (in memory)", "base": self.config.model.name_or_path, "adapter": None,
                    "step": step}
            report = evaluate_model(model, self.tokenizer, self.settings, self.options, info)
        _write_json(report, eval_path)
        gate = gate_files(self.baseline_path, eval_path, self.settings.policy)
        _write_json(gate, gate_path)
        return verdict_row(step, gate, _rel(eval_path, self.run_dir), _rel(gate_path, self.run_dir),
                           time.perf_counter() - t0)

    def read_verdict(self, step: int, seconds: float = 0.0) -> dict[str, Any]:
        """The verdict the main process wrote for `step` (the other processes read it after a barrier)."""
        from prefgate.reportio import read_json

        name = f"step-{step:07d}.json"
        gate = read_json(self.run_dir / "gates" / name)
        return verdict_row(step, gate, f"evals/{name}", f"gates/{name}", seconds)

    def describe(self) -> dict[str, Any]:
        suite = self.settings.suite
        return {"suite": {"path": suite.path, "fingerprint": suite.fingerprint, "n_items": len(suite),
                          "categories": self.settings.categories},
                "policy": self.settings.policy.model_dump(mode="json"), "policy_file": self.config.eval.gate,
                "baseline": {"path": _rel(self.baseline_path, self.run_dir), **self.baseline_source},
                "every": self.config.eval.every, "on_block": self.config.eval.on_block,
                "generation": self.options.generation.describe()}


def _is_eval_of(path: Path, fingerprint: str) -> bool:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and report.get("kind") == "eval" and \
        (report.get("suite") or {}).get("fingerprint") == fingerprint


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def output_choice(verdicts: list[dict[str, Any]], snapshot_step: int | None, last_step: int) -> dict[str, Any]:
    """keep_best: which model the run ends with. The final step's when its evaluation passed (or was not
    blocked); else the latest step the gate promoted (its snapshot); else none (no evaluation passed)."""
    last = verdicts[-1] if verdicts else None
    blocked_after = [v["step"] for v in verdicts if v["decision"] == "block" and
                     (snapshot_step is None or v["step"] > snapshot_step)]
    if last is None or last["decision"] == "promote" or last["step"] != last_step:
        return {"step": last_step, "from": "final step", "why": "the final step's evaluation passed the gate"
                if last is not None and last["decision"] == "promote" and last["step"] == last_step else
                "the final step was not evaluated"}
    if snapshot_step is None:
        return {"step": None, "from": None, "why": f"no in-training evaluation passed the gate ({len(verdicts)} "
                                                   "evaluations, all blocked)"}
    shown = ", ".join(map(str, blocked_after[:6])) + (", ..." if len(blocked_after) > 6 else "")
    return {"step": snapshot_step, "from": "snapshots/gate-passed",
            "why": f"the gate blocked the evaluations after step {snapshot_step} (steps {shown}), so the run's model "
                   f"is step {snapshot_step}'s, the latest the gate promoted"}
