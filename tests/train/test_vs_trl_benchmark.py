"""`benchmarks/vs_trl.py` keeps running, and the trainer's first loss equals TRL's DPOTrainer's on its data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "vs_trl.py"


@pytest.mark.slow
def test_quick_benchmark_runs_and_step0_losses_agree(tmp_path):
    out = tmp_path / "vs_trl.jsonl"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--steps", "1", "--rounds", "1", "--shapes",
                           "prompt-heavy", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pairs/s" in proc.stdout and "prefix_shared: prefix sharing with sdpa" in proc.stdout
    summary = json.loads(out.read_text().splitlines()[0])["summary"]
    ours, trl, exact = summary["prefgate"]["loss0"], summary["trl"]["loss0"], summary["loss0_float64"]
    assert abs(exact - 0.6931471805599453) > 1e-2  # a reference of its own: not the trivial log 2
    assert abs(ours - trl) < 1e-5 and abs(ours - exact) < 1e-5
    assert summary["prefgate"]["ran_tokens"] < summary["trl"]["ran_tokens"]  # each prompt once, no padding


@pytest.mark.slow
def test_quick_memory_comparison_runs_three_sides_with_the_policy_as_reference(tmp_path):
    """`--reference policy --trl-precompute`: prefgate's auto precomputes and holds no model, TRL's default holds
    a frozen copy, TRL with precompute_ref_log_probs holds none; every step-0 loss is log 2."""
    out = tmp_path / "vs_trl.jsonl"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--steps", "1", "--rounds", "1", "--shapes",
                           "prompt-heavy", "--reference", "policy", "--trl-precompute", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "target (issue 17)" in proc.stdout
    summary = json.loads(out.read_text().splitlines()[0])["summary"]
    assert summary["prefgate"]["reference"].startswith("precomputed (auto: full fine-tuning")
    assert summary["trl"]["reference"] == "live (ref_model held: True)"
    assert summary["trl-precompute"]["reference"] == "precomputed (ref_model held: False)"
    for side in ("prefgate", "trl", "trl-precompute"):
        assert abs(summary[side]["loss0"] - 0.6931471805599453) < 1e-5, side
    assert summary["prefgate"]["reference_pass_s"] > 0 and summary["trl-precompute"]["reference_pass_s"] > 0
    assert summary["trl"]["reference_pass_s"] == 0
    assert summary["prefgate"]["pairs_per_s_with_pass"] < summary["prefgate"]["pairs_per_s"]
