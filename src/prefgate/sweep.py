"""`sweep(config, betas, losses)`: one training run per (loss, beta), each measured against the reference.

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
   data and suite fingerprints and the settings. Each run is registered when the registry is installed.
4. Recommend: among the completed points whose gate promotes (every completed point when there is no
   suite, and it says so), the best held-out preference accuracy; a tie goes to the lower KL.
5. Write `<out_dir>/sweep.json` and `<out_dir>/sweep.html` (accuracy against KL, one curve per loss; the
   per-category grades of every point).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefgate import __version__
from prefgate.console import note
from prefgate.errors import InputError

__all__ = [
    "DEFAULT_BETAS", "SWEEP_VERSION", "GridPoint", "grid", "parse_betas", "parse_losses", "point_config",
    "recommend", "sweep", "sweep_html", "write_sweep_html",
]

SWEEP_VERSION = 1
DEFAULT_BETAS = (0.05, 0.1, 0.3, 0.5)
RESERVED_OVERRIDES = ("loss.type", "loss.beta", "output_dir")


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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err}", where=str(path)) from None


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
    manifest = _read_json(run_dir / "manifest.json")
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
            "manifest": _read_json(run_dir / "manifest.json")}


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
    kl_prompts: int = 256
    max_new_tokens: int = 64
    batch_size: int = 8
    dtype: str = "auto"
    device: str | None = None
    progress: bool = True
    eval_ds: Any = None
    suite_fingerprint: str | None = None
    _reference: Any = field(default=None, repr=False)
    _base_eval: dict | None = field(default=None, repr=False)

    def reference(self):
        from prefgate.lm.load import load_model

        if self._reference is None:
            self._reference = load_model(self.reference_path, dtype=self.dtype, device=self.device)
        return self._reference

    def eval_options(self):
        from prefgate.eval.runner import EvalOptions
        from prefgate.lm.generate import GenerationConfig

        return EvalOptions(generation=GenerationConfig(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size),
                           dtype=self.dtype, device=self.device, progress=self.progress)

    def base_eval(self) -> dict[str, Any]:
        """The base model's eval on the suite, cached in <out_dir>/evals/base.eval.json."""
        from prefgate.eval.runner import run_eval

        if self._base_eval is None:
            path = self.out_dir / "evals" / "base.eval.json"
            cached = _read_json(path)
            if cached is None or (cached.get("suite") or {}).get("fingerprint") != self.suite_fingerprint or \
                    (cached.get("model") or {}).get("path") != self.base_path:
                cached = run_eval(self.base_path, self.suite_path, options=self.eval_options())
                _write_json(cached, path)
            self._base_eval = cached
        return self._base_eval

    def key(self, run_id: str) -> dict[str, Any]:
        return {"run_id": run_id, "eval_data": self.eval_ds.fingerprint, "reference": self.reference_path,
                "suite": self.suite_fingerprint, "kl_prompts": self.kl_prompts, "max_new_tokens": self.max_new_tokens,
                "max_length": self.max_length}


def _write_json(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


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

    loaded = load_model(run_dir, dtype=m.dtype, device=m.device)
    ref = m.reference()
    tok = loaded.tokenizer
    preference = preference_accuracy(loaded.model, ref.model, tok, m.eval_path, beta=beta, batch_size=m.batch_size,
                                     max_length=m.max_length)
    generations = generate_ids(loaded.model, tok, held_out_prompts(m.eval_ds, m.kl_prompts),
                               GenerationConfig(max_new_tokens=m.max_new_tokens, batch_size=m.batch_size),
                               progress=False)
    kl = mean_kl(loaded.model, ref.model, [g.prompt_ids for g in generations], [g.completion_ids for g in generations],
                 pad_id=pad_token_id(tok), batch_size=m.batch_size)
    del loaded
    out = {"preference": {k: preference[k] for k in ("n", "beta", "accuracy", "mean_margin")},
           "kl": {k: kl[k] for k in ("n_prompts", "n_tokens", "mean_per_token", "mean_per_sequence")}, "eval": None}
    if m.suite_path:
        from prefgate.eval.runner import run_eval

        report = run_eval(str(run_dir), m.suite_path, options=m.eval_options())
        path = m.out_dir / "evals" / f"{run_dir.name}.eval.json"
        _write_json(report, path)
        out["eval"] = {"path": str(path), "overall": report["overall"],
                       "categories": {name: {k: c.get(k) for k in ("n", "score", "grade")}
                                      for name, c in report["categories"].items()}}
    return out


def _cached_measure(run_dir: Path, beta: float, run_id: str, m: _Measure) -> dict[str, Any]:
    path = m.out_dir / "evals" / f"{run_dir.name}.point.json"
    cached = _read_json(path)
    key = m.key(run_id)
    if cached is not None and cached.get("key") == key and (
            cached["measures"]["eval"] is None or Path(cached["measures"]["eval"]["path"]).exists()):
        return cached["measures"]
    measures = measure_point(run_dir, beta, m)
    _write_json({"key": key, "measures": measures}, path)
    return measures


def _gate(point_eval: dict[str, Any], name: str, m: _Measure) -> dict[str, Any]:
    from prefgate.gate import gate_files

    m.base_eval()  # computed (or found) once: <out_dir>/evals/base.eval.json
    result = gate_files(m.out_dir / "evals" / "base.eval.json", point_eval["path"], m.policy)  # paths and sha256s
    path = m.out_dir / "evals" / f"{name}.gate.json"
    _write_json(result, path)
    return {"decision": result["decision"], "reasons": result["reasons"], "warnings": result["warnings"],
            "path": str(path)}


def register(run_dir: Path, evals: list[str]) -> dict[str, Any] | None:
    """Add the run (and its eval) to the registry when the registry is installed; a refusal is a warning."""
    try:
        from prefgate.registry import Registry
    except ImportError:  # pragma: no cover - the registry stage is not in this build
        return None
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _measure_context(config_path: Path, first, suite: str | None, out_dir: Path, policy, options: dict) -> _Measure:
    from prefgate.data import read_dataset

    if not first.data.eval:
        raise InputError("the sweep measures held-out preference accuracy and KL on data.eval, and this config has "
                         "none; add held-out pairs (e.g. `prefgate data split`)", where=str(config_path),
                         field="data.eval")
    m = _Measure(out_dir=out_dir, reference_path=first.reference.model or first.model.name_or_path,
                 base_path=first.model.name_or_path, eval_path=first.data.eval, max_length=first.data.max_length,
                 suite_path=str(suite) if suite else None, policy=policy, **options)
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


def _finish_point(row: dict[str, Any], m: _Measure, do_register: bool) -> None:
    run_dir = Path(row["run_dir"])
    if row["status"] == "completed":
        note(f"measuring {row['name']} against {m.reference_path}")
        row.update(_cached_measure(run_dir, row["beta"], row["run_id"], m))
        if row["eval"] is not None:
            row["gate"] = _gate(row["eval"], row["name"], m)
    if do_register and row["run_id"]:
        row["registry"] = register(run_dir, [row["eval"]["path"]] if row["eval"] else [])


def _report(config_path: Path, overrides: list[str], betas: list[float], losses: list[str], m: _Measure,
            rows: list[dict[str, Any]]) -> dict[str, Any]:
    from prefgate.eval.reference import KL_ESTIMATOR

    return {
        "kind": "sweep", "version": SWEEP_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "prefgate_version": __version__,
        "config": {"path": str(config_path), "sha256": _sha256(config_path), "overrides": overrides},
        "grid": {"losses": losses, "betas": betas}, "out_dir": str(m.out_dir),
        "base_model": m.base_path, "reference": m.reference_path,
        "eval_data": {"path": m.eval_path, "fingerprint": m.eval_ds.fingerprint, "n_records": len(m.eval_ds)},
        "kl": {"estimator": KL_ESTIMATOR, "prompts": f"up to {m.kl_prompts} distinct held-out prompts",
               "max_new_tokens": m.max_new_tokens},
        "suite": {"path": m.suite_path, "fingerprint": m.suite_fingerprint} if m.suite_path else None,
        "base_eval": str(m.out_dir / "evals" / "base.eval.json") if m.suite_path else None,
        "policy": m.policy.model_dump(mode="json") if m.suite_path else None,
        "points": rows, "recommendation": recommend(rows, gated=bool(m.suite_path)),
    }


def sweep(config_path: str | Path, betas: list[float], losses: list[str] | None = None, suite: str | Path | None = None,
          out_dir: str | Path | None = None, *, overrides: list[str] | None = None, policy=None,
          do_register: bool = True, allow_audit_fail: str | None = None, kl_prompts: int = 256,
          max_new_tokens: int = 64, batch_size: int = 8, dtype: str = "auto", device: str | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Run the grid (see the module docstring); returns the sweep report, also written to <out_dir>/sweep.json
    with its page <out_dir>/sweep.html. `out_dir` defaults to `sweeps/<config name>`."""
    from prefgate.gate import GatePolicy

    config_path = Path(config_path)
    losses, overrides = list(losses or ["dpo"]), list(overrides or [])
    out_dir = Path(out_dir) if out_dir is not None else Path("sweeps") / config_path.stem
    points = grid(list(betas), losses)
    if not points:
        raise InputError("the grid is empty: give at least one beta and one loss", field="beta")
    configs = [point_config(config_path, p, out_dir / p.name, overrides) for p in points]  # all valid first
    options = {"kl_prompts": kl_prompts, "max_new_tokens": max_new_tokens, "batch_size": batch_size, "dtype": dtype,
               "device": device, "progress": progress}
    m = _measure_context(config_path, configs[0], str(suite) if suite else None, out_dir, policy or GatePolicy(),
                         options)
    rows = []
    for i, (point, config) in enumerate(zip(points, configs, strict=True), start=1):
        note(f"[{i}/{len(points)}] {point.name} -> {config.output_dir}")
        trained = train_point(config, allow_audit_fail=allow_audit_fail, progress=progress)
        if trained["reused"]:
            note(f"  {trained['status']} run found in {config.output_dir}: not trained again")
        rows.append(_point_row(point, Path(config.output_dir), trained))
    for row in rows:
        _finish_point(row, m, do_register)
    report = _report(config_path, overrides, list(betas), losses, m, rows)
    _write_json(report, out_dir / "sweep.json")
    write_sweep_html(report, out_dir / "sweep.html")
    return report


# ---------------------------------------------------------------------------------------------------------
# The page


def accuracy_kl_plot(report: dict[str, Any]) -> str | None:
    """Held-out preference accuracy against KL to the reference, one curve per loss (points in beta order);
    a red cross marks a point the gate blocks, a star the recommended one."""
    from prefgate.report import plots

    done = [p for p in report["points"] if p["status"] == "completed" and p["kl"]["mean_per_token"] is not None]
    if not done:
        return None
    fig = plots.figure(6.0, 4.2)
    ax = fig.add_subplot()
    for loss in report["grid"]["losses"]:
        pts = sorted((p for p in done if p["loss"] == loss), key=lambda p: p["beta"])
        if not pts:
            continue
        ax.plot([_kl(p) for p in pts], [_acc(p) for p in pts], marker="o", label=loss)
        for p in pts:
            ax.annotate(f"β={p['beta']:g}", (_kl(p), _acc(p)), textcoords="offset points", xytext=(4, 4), fontsize=7)
    blocked = [p for p in done if p["gate"] and p["gate"]["decision"] == "block"]
    if blocked:
        ax.scatter([_kl(p) for p in blocked], [_acc(p) for p in blocked], marker="x", s=70, color=plots.ACCENT,
                   label="gate blocks", zorder=3)
    best = [p for p in done if p["name"] == report["recommendation"]["point"]]
    if best:
        ax.scatter([_kl(best[0])], [_acc(best[0])], marker="*", s=220, color="#f1c40f", edgecolor="#555555",
                   label="recommended", zorder=4)
    kls = [_kl(p) for p in done]
    if min(kls) > 0 and max(kls) / min(kls) > 20:  # betas far apart: a linear axis crowds the low-KL points
        ax.set_xscale("log")
    ax.set(title="Preference accuracy against KL", xlabel="KL(policy || reference), nats per token",
           ylabel="held-out preference accuracy")
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return plots.to_data_uri(fig)


def _grade_rows(report: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """(categories, rows): the base model's and each point's per-category grade and score."""
    rows, categories = [], set()
    base = _read_json(Path(report["base_eval"])) if report.get("base_eval") else None
    if base is not None:
        rows.append({"name": "base", "overall": base["overall"], "categories": base["categories"], "gate": None})
    for p in report["points"]:
        if p.get("eval"):
            rows.append({"name": p["name"], "overall": p["eval"]["overall"], "categories": p["eval"]["categories"],
                         "gate": p["gate"]})
    for row in rows:
        categories |= set(row["categories"])
    return sorted(categories), rows


_TEMPLATE = """{% extends "base.html.j2" %}
{% block title %}prefgate sweep — {{ name }}{% endblock %}
{% block content %}
<h1>Beta sweep</h1>
<div class="meta">
  config <code>{{ report.config.path }}</code> · losses {{ report.grid.losses | join(", ") }} · betas
  {{ report.grid.betas | join(", ") }} · reference <code>{{ report.reference }}</code><br>
  held-out pairs <code>{{ report.eval_data.path }}</code> ({{ report.eval_data.n_records }}) ·
  {% if report.suite %}suite <code>{{ report.suite.path }}</code>{% else %}no suite, no gate{% endif %} ·
  {{ report.created }} · prefgate {{ report.prefgate_version }}
</div>
<div class="verdict {{ 'pass' if report.recommendation.point else 'fail' }}" id="recommendation">
  <span class="word">{{ report.recommendation.point or "none" }}</span>
  <span>{{ report.recommendation.reason }}</span>
</div>
<h2>Points</h2>
<table id="points">
  <thead><tr><th>point</th><th>status</th><th>preference accuracy</th><th>KL per token</th>
    <th>train chosen shift</th><th>gate</th></tr></thead>
  <tbody>
  {% for p in report.points %}
    <tr><td><code>{{ p.name }}</code></td><td>{{ p.status }}{% if p.reused %} (reused){% endif %}</td>
      <td class="num">{{ p.preference.accuracy | num if p.preference else "–" }}</td>
      <td class="num">{{ p.kl.mean_per_token | num if p.kl else "–" }}</td>
      <td class="num">{{ p.train_metrics["logps/chosen_shift"] | num }}</td>
      <td>{% if p.gate %}<span class="chip {{ 'pass' if p.gate.decision == 'promote' else 'fail' }}">
        {{ p.gate.decision }}</span> {{ p.gate.reasons | join("; ") }}
      {% else %}{{ p.reason or "–" }}{% endif %}</td></tr>
  {% endfor %}
  </tbody>
</table>
<h2>Plots</h2>
<div class="plots">
  <figure id="plot-accuracy-kl">
    {% if plot %}<img src="{{ plot }}" alt="Preference accuracy against KL">
    {% else %}<div class="empty">no completed point to plot</div>{% endif %}
    <figcaption>KL: {{ report.kl.estimator }}, on {{ report.kl.prompts }}.</figcaption>
  </figure>
</div>
<h2>Grades per category</h2>
{% if grade_rows %}
<table id="grades">
  <thead><tr><th>model</th><th>overall</th>{% for c in categories %}<th>{{ c }}</th>{% endfor %}</tr></thead>
  <tbody>
  {% for r in grade_rows %}
    <tr><td><code>{{ r.name }}</code></td><td>{{ r.overall.grade }} ({{ r.overall.score | num }})</td>
      {% for c in categories %}<td>{% if c in r.categories %}{{ r.categories[c].grade }}
        ({{ r.categories[c].score | num }}){% else %}–{% endif %}</td>{% endfor %}</tr>
  {% endfor %}
  </tbody>
</table>
{% else %}<div class="empty">no suite: run the sweep with --suite for per-category grades and the gate</div>{% endif %}
<footer>Generated by <code>prefgate sweep</code>; docs/sweep.md explains the measures and the recommendation.</footer>
{% endblock %}
"""


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:.4g}"


def sweep_html(report: dict[str, Any]) -> str:
    from prefgate.report.html import environment

    categories, grade_rows = _grade_rows(report)
    env = environment().overlay()
    env.filters["num"] = _num
    return env.from_string(_TEMPLATE).render(report=report, plot=accuracy_kl_plot(report), categories=categories,
                                             grade_rows=grade_rows, name=Path(report["config"]["path"]).name)


def write_sweep_html(report: dict[str, Any], path: str | Path) -> Path:
    from prefgate.report.html import write_html

    return write_html(sweep_html(report), path)
