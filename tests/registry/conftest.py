"""Hand-written run folders and eval reports in the shapes `prefgate train` and `prefgate eval` write, gate
reports written by `prefgate.gate` itself (the registry recomputes them), and a registry in a temporary
PREFGATE_HOME for every test."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from prefgate.registry import Registry

TRAIN_FP = hashlib.sha256(b"train data").hexdigest()
EVAL_FP = hashlib.sha256(b"eval data").hexdigest()
SUITE_FP = hashlib.sha256(b"suite").hexdigest()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def safetensors_bytes(seed: str, n: int = 64) -> bytes:
    """A valid safetensors file: one float32 tensor of `n` values that depend on `seed`."""
    data = hashlib.sha256(seed.encode()).digest() * (4 * n // 32)
    header = json.dumps({"lora_A.weight": {"dtype": "F32", "shape": [n], "data_offsets": [0, len(data)]}}).encode()
    return struct.pack("<Q", len(header)) + header + data


class Build:
    """Writes fixtures under `root`."""

    def __init__(self, root: Path):
        self.root = root

    def run(self, run_id: str, *, status: str = "completed", beta: float = 0.1, audit: str | None = "pass",
            eval_data: bool = True) -> Path:
        run_dir = self.root / "runs" / run_id
        (run_dir / "adapter").mkdir(parents=True)
        (run_dir / "checkpoints").mkdir()
        (run_dir / "adapter" / "adapter_config.json").write_text(
            json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "base_model_name_or_path": "tiny-sft"}))
        (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(safetensors_bytes(run_id))
        (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.69}) + "\n")
        artifacts = {name: sha256_of(run_dir / name)
                     for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors")}
        manifest = {
            "kind": "run", "version": 1, "created": "2026-11-23T14:25:01+00:00",
            "prefgate_version": "0.1.0", "run_id": run_id, "status": status, "base_model": "org/tiny-sft",
            "loss": {"type": "dpo", "beta": beta, "label_smoothing": 0.0},
            "config": {"seed": 0, "optim": {"lr": 5e-6, "warmup_ratio": 0.1}, "lora": {"r": 8, "alpha": 16},
                       "batch_size": 8, "max_length": 512},
            "datasets": {"train": {"path": "data/train.jsonl", "fingerprint": TRAIN_FP, "n_records": 900},
                         "eval": {"path": "data/eval.jsonl", "fingerprint": EVAL_FP, "n_records": 100}
                         if eval_data else None},
            "audit": {"verdict": audit, "override_reason": None},
            "code_version": {"prefgate": "0.1.0", "git_commit": "abc1234"},
            "artifacts": artifacts,
            "final_metrics": {"loss": 0.41, "rewards/accuracies": 0.82, "rewards/margins": 1.3},
        }
        self.write_manifest(run_dir, manifest)
        return run_dir

    @staticmethod
    def manifest(run_dir: Path) -> dict:
        return json.loads((run_dir / "manifest.json").read_text())

    @staticmethod
    def write_manifest(run_dir: Path, manifest: dict) -> None:
        (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))

    def eval(self, name: str, model: str | dict, score: float = 0.8) -> Path:
        """50 items in each of two categories; the first round(50 * score) of each are right."""
        right = round(50 * score)
        items = [{"id": f"{cat}-{i}", "category": cat, "score": 1.0 if i < right else 0.0}
                 for cat in ("math", "safety") for i in range(50)]
        report = {
            "kind": "eval", "version": 1, "created": "2026-11-23T15:00:00+00:00", "prefgate_version": "0.1.0",
            "model": model, "suite": {"path": "suites/core.yaml", "fingerprint": SUITE_FP},
            "overall": {"n": 100, "score": score, "grade": "B", "a_rate": 0.4},
            "categories": {"math": {"n": 50, "score": score, "grade": "B", "a_rate": 0.4, "ci": [0.7, 0.9]},
                           "safety": {"n": 50, "score": score, "grade": "B", "a_rate": 0.4, "ci": [0.7, 0.9]}},
            "items": items,
        }
        path = self.root / "evals" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        return path

    def gate(self, name: str, baseline: Path, candidate: Path, decision: str = "promote", **policy) -> Path:
        """`prefgate gate BASELINE CANDIDATE --json gates/NAME.json` (with `policy` overriding the defaults);
        `decision` is what the test expects the gate to say."""
        from prefgate.gate import GatePolicy, gate_files

        report = gate_files(baseline, candidate, GatePolicy(**policy))
        assert report["decision"] == decision, report["reasons"]
        path = self.root / "gates" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        return path

    def worse_eval(self, reg: Registry, run_dir: Path, name: str = "worse") -> Path:
        """An eval of `run_dir` at 0.5 (the others are near 0.8), attached to it: a gate against it blocks."""
        path = self.eval(name, str(run_dir), 0.5)
        reg.add(run_dir, evals=[path])
        return path


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own PREFGATE_HOME (the registry never touches the working directory)."""
    path = tmp_path / "home"
    monkeypatch.setenv("PREFGATE_HOME", str(path))
    monkeypatch.setenv("USER", "tester")
    return path


@pytest.fixture()
def build(tmp_path) -> Build:
    return Build(tmp_path / "work")


@pytest.fixture()
def reg(home) -> Registry:
    return Registry()


@pytest.fixture()
def prod(build, reg) -> dict:
    """Run A holds `prod` (promoted over the base SFT model's eval); run B is registered with an eval."""
    base_eval = build.eval("base", "org/tiny-sft", 0.78)
    out = {"base_eval": base_eval}
    for name in ("A", "B"):
        run_dir = build.run(f"2026112{ord(name) - 64}-run-{name}")
        out[name] = {"dir": run_dir, "id": run_dir.name, "eval": build.eval(f"eval-{name}", str(run_dir))}
        reg.add(run_dir, evals=[out[name]["eval"]])
    reg.promote(out["A"]["id"], "prod", build.gate("base-vs-A", base_eval, out["A"]["eval"]))
    return out
