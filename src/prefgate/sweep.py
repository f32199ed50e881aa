"""`sweep(config, betas, losses, options)`: one training run per (loss, beta), each measured against the reference.

"Sweep beta on validation preferences; plot win-rate vs KL to reference." Read top to bottom:

1. Grid and configs: every point's config is the user's config with `loss.type`, `loss.beta` and
   `output_dir = <out_dir>/<loss>-beta<beta>` set (the loss's other hyperparameters are kept where the new
   loss takes them). All are validated before anything trains; the config must name held-out pairs
   (`data.eval`).
2. Train, sequentially. A point whose folder holds a finished run (manifest status "completed", or
   "aborted" by a monitor, which would abort again) is not trained again; its config must match the one
   recorded in the manifest. A point with checkpoints but no manifest resumes from the last one.
3. Measure each finished point against the reference (`reference.model`, else the base model):
   held-out preference accuracy on `data.eval` (`eval.reference.preference_accuracy`) and the exact
   token-level KL(policy || reference) on the policy's greedy answers to (up to `kl_prompts`) distinct
   held-out prompts (`eval.reference.mean_kl`, the same estimator as `prefgate eval --reference`). With a
   suite: the eval of the base model (once, cached) and of each point, and the gate (`gate.decide`) of each
   point against the base. Measures are cached per point in `<out_dir>/evals/`, keyed by the run id, the
   data and suite fingerprints and the settings. Each run is registered (unless `options.register` is off).
4. Recommend: among the completed points whose gate promotes (every completed point when there is no
   suite, and it says so), the best held-out preference accuracy; a tie goes to the lower KL.
5. Write `<out_dir>/sweep.json` and return the report.

The page (accuracy against KL, one curve per loss; the per-category grades of every point) is drawn from
the report by `prefgate.report.sweep`; `prefgate sweep` writes it to `<out_dir>/sweep.html`. From Python:

    from prefgate.report.sweep import write_sweep_html
    from prefgate.sweep import SweepOptions, sweep

    report = sweep("sweep.yaml", [0.1, 0.3], ["dpo", "dpop"], SweepOptions(suite="suite.jsonl"))
    write_sweep_html(report, Path(report["out_dir"]) / "sweep.html")
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefgate.console import note
from prefgate.errors import InputError
from prefgate.reportio import header, read_json, sha256_file, write_json

__all__ = [
    "DEFAULT_BETAS", "SWEEP_VERSION", "GridPoint", "SweepOptions", "grid", "parse_betas", "parse_losses",
    "point_config", "recommend", "sweep",
]

SWEEP_VERSION = 1
DEFAULT_BETAS = (0.05, 0.1, 0.3, 0.5)
RESERVED_OVERRIDES = ("loss.type", "loss.beta", "output_dir")


@dataclass
class SweepOptions:
    """How a sweep runs; every default is the CLI's.

    `suite`: an eval suite (no judge items): each point is evaluated and gated against the base model.
    `out_dir`: where the runs, evals and sweep.json go (None: `sweeps/<config name>`). `overrides`:
    `key=value` for every point's config (not loss.type, loss.beta or output_dir). `policy`: the gate policy
    (None: the defaults). `register`: add each run to the registry. `allow_audit_fail`: train despite an
    audit fail, with this reason. `kl_prompts`, `max_new_tokens`, `batch_size`, `dtype`, `device`: the
    measurements. `progress`: progress bars while training and evaluating.
    """

    suite: str | Path | None = None
    out_dir: str | Path | None = None
    overrides: list[str] = field(default_factory=list)
    policy: Any = None  # gate.GatePolicy
    register: bool = True
    allow_audit_fail: str | None = None
    kl_prompts: int = 256
    max_new_tokens: int = 64
    batch_size: int = 8
    dtype: str = "auto"
    device: str | None = None
    progress: bool = True


@dataclass(frozen=True)
class GridPoint:
    loss: str
    beta: float

    @property
    def name(self) -> str:
        return f"{self.loss}-beta{self.beta:g}"


# ---------------------------------------------------------------------------------------------------------
# 1. Grid and configs


def parse_betas(text: str) -> list[float]:
    """'0.05,0.1' -> [0.05, 0.1]; each a positive number, none twice."""
    betas = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(part)
        except ValueError:
            raise InputError(f"expected comma-separated numbers, got {part!r}", field="beta") from None
        if not value > 0 or value == float("inf"):
            raise InputError(f"every beta must be a positive number, got {part}", field="beta")
        if value in betas:
            raise InputError(f"beta {part} is given twice", field="beta")
        betas.append(value)
    return betas


def parse_losses(text: str) -> list[str]:
    """'dpo,dpop' -> ['dpo', 'dpop']; each a loss type that takes a beta."""
    from prefgate.losses import LossType

    losses = []
    for part in (p.strip() for p in text.split(",")):
        try:
            loss = LossType.parse(part)
        except ValueError as err:
            raise InputError(str(err), field="loss") from None
        if "beta" not in loss.defaults:
            raise InputError(f"loss '{loss.value}' has no beta to sweep", field="loss")
        if loss.value in losses:
            raise InputError(f"loss '{loss.value}' is given twice", field="loss")
        losses.append(loss.value)
    return losses


def grid(betas: list[float], losses: list[str]) -> list[GridPoint]:
    """Loss-major: every beta of the first loss, then the next loss."""
    return [GridPoint(loss, beta) for loss in losses for beta in betas]


def point_config(config_path: str | Path, point: GridPoint, run_dir: Path, overrides: list[str] | None = None):
    """The user's config with this point's loss, beta and output folder (see the module docstring)."""
    from prefgate.config import load_train_config
    from prefgate.losses import LossType
    from prefgate.yamlio import read_yaml_mapping

    for override in overrides or []:
        if override.partition("=")[0].strip() in RESERVED_OVERRIDES:
            raise InputError(f"override {override!r}: the sweep sets {', '.join(RESERVED_OVERRIDES)} itself")
    raw = read_yaml_mapping(config_path)
    section = raw.get("loss") or {}
    if not isinstance(section, dict):
        raise InputError("expected a mapping (type, beta, ...)", where=str(config_path), field="loss")
    takes = LossType(point.loss).defaults
    kept = {k: v for k, v in section.items() if k in takes and k != "beta"}
    raw.update(loss={**kept, "type": point.loss, "beta": point.beta}, output_dir=str(run_dir))
    try:
        return load_train_config(None, overrides or [], **raw)
    except InputError as err:
        raise InputError(f"{err.message} (grid point {point.name})", where=str(config_path), field=err.field) from None


# ---------------------------------------------------------------------------------------------------------
# 2. Train


def _check_same_config(manifest: dict[str, Any], config, run_dir: Path) -> None:
    recorded, wanted = manifest.get("config") or {}, json.loads(config.model_dump_json())
    changed = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
    if changed:
        raise InputError(f"holds a finished run whose config differs in {', '.join(changed)}; delete the folder to "
                         "train this point again, or choose another --out-dir", where=str(run_dir))


def train_point(config, *, allow_audit_fail: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train one point unless its folder holds a finished run; returns {"status", "reason", "reused", "manifest"}."""
    from prefgate.train.loop import train
    from prefgate.train.monitors import TrainingAborted

    run_dir = Path(config.output_dir)
    manifest = read_json(run_dir / "manifest.json", what="a run manifest", missing_ok=True)
    if manifest is not None and manifest.get("status") in ("completed", "aborted"):
        _check_same_config(manifest, config, run_dir)
        return {"status": manifest["status"], "reason": manifest.get("reason"), "reused": True, "manifest": manifest}
    resume = (run_dir / "checkpoints").is_dir()
    if not resume and (run_dir / "metrics.jsonl").exists():
        (run_dir / "metrics.jsonl").unlink()  # a start interrupted before its first checkpoint: begin again
    try:
        result = train(config, resume=resume, allow_audit_fail=allow_audit_fail, show_progress=progress)
    except TrainingAborted as err:  # before step 1: the audit gate or the memory probe
        return {"status": "aborted", "reason": str(err), "reused": False, "manifest": None}
    return {"status": result.status, "reason": result.reason, "reused": False,
            "manifest": read_json(run_dir / "manifest.json", what="a run manifest")}


# ---------------------------------------------------------------------------------------------------------
# 3. Measure


@dataclass
class _Measure:
    """What every point is measured with: settings, the held-out data, and lazily loaded models and reports."""

    out_dir: Path
    reference_path: str
    base_path: str
    eval_path: str
    max_length: int
    suite_path: str | None
    policy: Any
    options: SweepOptions
    eval_ds: Any = None
    suite_fingerprint: str | None = None
    _reference: Any = field(default=None, repr=False)
    _base_eval: dict | None = field(default=None, repr=False)

    def reference(self):
        from prefgate.lm.load import load_model

        if self._reference is None:
            self._reference = load_model(self.reference_path, dtype=self.options.dtype, device=self.options.device)
        return self._reference

    def eval_options(self):
        from prefgate.eval.runner import EvalOptions
        from prefgate.lm.generate import GenerationConfig

        o = self.options
        return EvalOptions(generation=GenerationConfig(max_new_tokens=o.max_new_tokens, batch_size=o.batch_size),
                           dtype=o.dtype, device=o.device, progress=o.progress)

    def base_eval(self) -> dict[str, Any]:
        """The base model's eval on the suite, cached in <out_dir>/evals/base.eval.json."""
        from prefgate.eval.runner import run_eval

        if self._base_eval is None:
            path = self.out_dir / "evals" / "base.eval.json"
            cached = read_json(path, what="an eval report", missing_ok=True)
            if cached is None or (cached.get("suite") or {}).get("fingerprint") != self.suite_fingerprint or \
                    (cached.get("model") or {}).get("path") != self.base_path:
                cached = run_eval(self.base_path, self.suite_path, options=self.eval_options())
                write_json(cached, path)
            self._base_eval = cached
        return self._base_eval

    def key(self, run_id: str) -> dict[str, Any]:
        return {"run_id": run_id, "eval_data": self.eval_ds.fingerprint, "reference": self.reference_path,
                "suite": self.suite_fingerprint, "kl_prompts": self.options.kl_prompts,
                "max_new_tokens": self.options.max_new_tokens, "max_length": self.max_length}


def held_out_prompts(eval_ds, limit: int, seed: int = 0) -> list[Any]:
    """The distinct prompts of the held-out pairs, in file order; a seeded sample of `limit` when more."""
    from prefgate.data import prompt_key

    seen, prompts = set(), []
    for rec in eval_ds.records:
        key = prompt_key(rec.prompt)
        if key not in seen:
            seen.add(key)
            prompts.append(rec.prompt)
    if len(prompts) > limit:
        keep = sorted(random.Random(seed).sample(range(len(prompts)), limit))
        prompts = [prompts[i] for i in keep]
    return prompts


def measure_point(run_dir: Path, beta: float, m: _Measure) -> dict[str, Any]:
    """Held-out preference accuracy and KL to the reference; with a suite, the eval report (path and summary)."""
    from prefgate.eval.reference import mean_kl, preference_accuracy
    from prefgate.lm.generate import GenerationConfig, generate_ids
    from prefgate.lm.load import load_model, pad_token_id

    o = m.options
    loaded = load_model(run_dir, dtype=o.dtype, device=o.device)
    ref = m.reference()
    tok = loaded.tokenizer
    preference = preference_accuracy(loaded.model, ref.model, tok, m.eval_path, beta=beta, batch_size=o.batch_size,
                                     max_length=m.max_length)
    generations = generate_ids(loaded.model, tok, held_out_prompts(m.eval_ds, o.kl_prompts),
                               GenerationConfig(max_new_tokens=o.max_new_tokens, batch_size=o.batch_size),
                               progress=False)
    kl = mean_kl(loaded.model, ref.model, [g.prompt_ids for g in generations], [g.completion_ids for g in generations],
                 pad_id=pad_token_id(tok), batch_size=o.batch_size)
    del loaded
    out = {"preference": {k: preference[k] for k in ("n", "beta", "accuracy", "mean_margin")},
           "kl": {k: kl[k] for k in ("n_prompts", "n_tokens", "mean_per_token", "mean_per_sequence")}, "eval": None}
    if m.suite_path:
        from prefgate.eval.runner import run_eval

        report = run_eval(str(run_dir), m.suite_path, options=m.eval_options())
        path = m.out_dir / "evals" / f"{run_dir.name}.eval.json"
        write_json(report, path)
        out["eval"] = {"path": str(path), "overall": report["overall"],
                       "categories": {name: {k: c.get(k) for k in ("n", "score", "grade")}
                                      for name, c in report["categories"].items()}}
    return out


def _cached_measure(run_dir: Path, beta: float, run_id: str, m: _Measure) -> dict[str, Any]:
    path = m.out_dir / "evals" / f"{run_dir.name}.point.json"
    cached = read_json(path, what="a sweep point's measures", missing_ok=True)
    key = m.key(run_id)
    if cached is not None and cached.get("key") == key and (
            cached["measures"]["eval"] is None or Path(cached["measures"]["eval"]["path"]).exists()):
        return cached["measures"]
    measures = measure_point(run_dir, beta, m)
    write_json({"key": key, "measures": measures}, path)
    return measures


def _gate(point_eval: dict[str, Any], name: str, m: _Measure) -> dict[str, Any]:
    from prefgate.gate import gate_files

    m.base_eval()  # computed (or found) once: <out_dir>/evals/base.eval.json
    result = gate_files(m.out_dir / "evals" / "base.eval.json", point_eval["path"], m.policy)  # paths and sha256s
    path = m.out_dir / "evals" / f"{name}.gate.json"
    write_json(result, path)
    return {"decision": result["decision"], "reasons": result["reasons"], "warnings": result["warnings"],
            "path": str(path)}


def register(run_dir: Path, evals: list[str]) -> dict[str, Any] | None:
    """Add the run (and its eval) to the registry; a refusal is a warning."""
    from prefgate.registry import Registry

    try:
        added = Registry().add(run_dir, evals=evals)
    except InputError as err:
        note(f"warning: {run_dir} was not registered: {err}")
        return {"run_id": None, "error": str(err)}
    return {"run_id": added["run_id"], "outcome": added["outcome"]}


# ---------------------------------------------------------------------------------------------------------
# 4. Recommend


def _acc(p: dict[str, Any]) -> float:
    return p["preference"]["accuracy"]


def _kl(p: dict[str, Any]) -> float:
    value = p["kl"]["mean_per_token"]
    return value if value is not None else float("inf")


def recommend(points: list[dict[str, Any]], *, gated: bool) -> dict[str, Any]:
    """The completed point with the best held-out preference accuracy among those whose gate promotes (all
    completed points when `gated` is False); a tie goes to the lower KL. Returns {"point", "reason"}."""
    done = [p for p in points if p["status"] == "completed"]
    aborted = [p["name"] for p in points if p["status"] != "completed"]
    passing = [p for p in done if p["gate"]["decision"] == "promote"] if gated else done
    blocked = [p for p in done if p not in passing]
    tail = (f"; gate blocked: {', '.join(p['name'] for p in blocked)}" if blocked else "") + \
        (f"; aborted: {', '.join(aborted)}" if aborted else "")
    if not passing:
        why = "no point completed" if not done else "the gate blocks every completed point"
        return {"point": None, "reason": why + tail}
    best = max(passing, key=lambda p: (_acc(p), -_kl(p)))
    among = f"the {len(passing)} points whose gate promotes" if gated else \
        f"all {len(passing)} completed points (no --suite, so no gate ran: add one to check for regressions)"
    reason = (f"{best['name']}: the best held-out preference accuracy ({_acc(best):.3f}, KL to the reference "
              f"{_kl(best):.4g} per token) among {among}")
    tied = [p["name"] for p in passing if p is not best and _acc(p) == _acc(best)]
    if tied:
        reason += f"; tied with {', '.join(tied)} and chosen for its lower KL"
    better = [p for p in blocked if _acc(p) > _acc(best)]
    if better:
        top = max(better, key=_acc)
        reason += (f"; {top['name']} scored higher ({_acc(top):.3f}) but its gate blocks: "
                   f"{(top['gate']['reasons'] or ['see its gate report'])[0]}")
    return {"point": best["name"], "reason": reason + tail}


# ---------------------------------------------------------------------------------------------------------
# 5. The sweep


def _measure_context(config_path: Path, first, out_dir: Path, options: SweepOptions) -> _Measure:
    from prefgate.data import read_dataset
    from prefgate.gate import GatePolicy

    if not first.data.eval:
        raise InputError("the sweep measures held-out preference accuracy and KL on data.eval, and this config has "
                         "none; add held-out pairs (e.g. `prefgate data split`)", where=str(config_path),
                         field="data.eval")
    suite = str(options.suite) if options.suite else None
    m = _Measure(out_dir=out_dir, reference_path=first.reference.model or first.model.name_or_path,
                 base_path=first.model.name_or_path, eval_path=first.data.eval, max_length=first.data.max_length,
                 suite_path=suite, policy=options.policy or GatePolicy(), options=options)
    m.eval_ds = read_dataset(first.data.eval, skip_invalid=first.data.skip_invalid)
    if not m.eval_ds.paired:
        raise InputError("expected paired held-out records (prompt, chosen, rejected)", where=first.data.eval)
    if suite:
        from prefgate.eval.suite import load_suite

        loaded = load_suite(suite)
        if any(it.scorer == "judge" for it in loaded.items):
            raise InputError("the suite has judge items, and the sweep runs no judge; use a suite without them (or "
                             "evaluate the points with `prefgate eval --judge-...`)", where=str(suite))
        m.suite_fingerprint = loaded.fingerprint
    return m


def _point_row(point: GridPoint, run_dir: Path, trained: dict[str, Any]) -> dict[str, Any]:
    manifest = trained["manifest"] or {}
    metrics = manifest.get("final_metrics") or {}
    return {"name": point.name, "loss": point.loss, "beta": point.beta, "run_dir": str(run_dir),
            "status": trained["status"], "reason": trained["reason"], "reused": trained["reused"],
            "run_id": manifest.get("run_id"), "steps": manifest.get("steps"),
            "train_metrics": {k: metrics.get(k) for k in ("loss", "rewards/accuracies", "logps/chosen_shift")},
            "preference": None, "kl": None, "eval": None, "gate": None, "registry": None}


def _finish_point(row: dict[str, Any], m: _Measure) -> None:
    run_dir = Path(row["run_dir"])
    if row["status"] == "completed":
        note(f"measuring {row['name']} against {m.reference_path}")
        row.update(_cached_measure(run_dir, row["beta"], row["run_id"], m))
        if row["eval"] is not None:
            row["gate"] = _gate(row["eval"], row["name"], m)
    if m.options.register and row["run_id"]:
        row["registry"] = register(run_dir, [row["eval"]["path"]] if row["eval"] else [])


def _report(config_path: Path, overrides: list[str], betas: list[float], losses: list[str], m: _Measure,
            rows: list[dict[str, Any]]) -> dict[str, Any]:
    from prefgate.eval.reference import KL_ESTIMATOR

    return {
        **header("sweep", SWEEP_VERSION,
                 config={"path": str(config_path), "sha256": sha256_file(config_path), "overrides": overrides}),
        "grid": {"losses": losses, "betas": betas}, "out_dir": str(m.out_dir),
        "base_model": m.base_path, "reference": m.reference_path,
        "eval_data": {"path": m.eval_path, "fingerprint": m.eval_ds.fingerprint, "n_records": len(m.eval_ds)},
        "kl": {"estimator": KL_ESTIMATOR, "prompts": f"up to {m.options.kl_prompts} distinct held-out prompts",
               "max_new_tokens": m.options.max_new_tokens},
        "suite": {"path": m.suite_path, "fingerprint": m.suite_fingerprint} if m.suite_path else None,
        "base_eval": str(m.out_dir / "evals" / "base.eval.json") if m.suite_path else None,
        "policy": m.policy.model_dump(mode="json") if m.suite_path else None,
        "points": rows, "recommendation": recommend(rows, gated=bool(m.suite_path)),
    }


def sweep(config_path: str | Path, betas: list[float], losses: list[str] | None = None,
          options: SweepOptions | None = None) -> dict[str, Any]:
    """Run the grid (see the module docstring); returns the sweep report, also written to <out_dir>/sweep.json.
    `losses` defaults to ["dpo"]. The page is the caller's: `prefgate.report.sweep.write_sweep_html(report,
    path)` (the CLI writes <out_dir>/sweep.html)."""
    options = options or SweepOptions()
    config_path = Path(config_path)
    losses, overrides = list(losses or ["dpo"]), list(options.overrides)
    out_dir = Path(options.out_dir) if options.out_dir is not None else Path("sweeps") / config_path.stem
    points = grid(list(betas), losses)
    if not points:
        raise InputError("the grid is empty: give at least one beta and one loss", field="beta")
    configs = [point_config(config_path, p, out_dir / p.name, overrides) for p in points]  # all valid first
    m = _measure_context(config_path, configs[0], out_dir, options)
    rows = []
    for i, (point, config) in enumerate(zip(points, configs, strict=True), start=1):
        note(f"[{i}/{len(points)}] {point.name} -> {config.output_dir}")
        trained = train_point(config, allow_audit_fail=options.allow_audit_fail, progress=options.progress)
        if trained["reused"]:
            note(f"  {trained['status']} run found in {config.output_dir}: not trained again")
        rows.append(_point_row(point, Path(config.output_dir), trained))
    for row in rows:
        _finish_point(row, m)
    report = _report(config_path, overrides, list(betas), losses, m, rows)
    write_json(report, out_dir / "sweep.json")
    return report
