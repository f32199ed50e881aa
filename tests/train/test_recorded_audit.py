"""Issue 16, 5b: `prefgate train` refuses data whose recorded audit failed (by fingerprint), unless overridden
with a reason, which the manifest records; the trainer's own audit (no labels) cannot clear it."""

from __future__ import annotations

import json

from prefgate.cli import app
from prefgate.data import read_dataset
from tests.train.conftest import arithmetic_pairs, make_config, write_pairs


def test_a_recorded_failed_audit_stops_training_unless_overridden(tiny_dir, tmp_path, runner, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("PREFGATE_HOME", str(home))
    pairs = write_pairs(tmp_path / "pairs.jsonl", arithmetic_pairs(40))
    ids = [r.id for r in read_dataset(str(pairs)).records][:30]
    labels = write_pairs(tmp_path / "labels.jsonl", [{"id": i, "preferred": "chosen" if k < 8 else "rejected",
                                                      "rater": "ann"} for k, i in enumerate(ids)])  # 27% agree
    audited = runner.invoke(app, ["audit", str(pairs), "--labels", str(labels), "--json", str(tmp_path / "a.json"),
                                  "--record"])
    assert audited.exit_code == 1 and "recorded the fail verdict" in audited.stderr

    # the training config has no labels: the trainer's own audit alone would only warn
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(make_config(tiny_dir, pairs, tmp_path / "run", max_steps=2).model_dump(mode="json")))
    result = runner.invoke(app, ["train", str(cfg)])
    assert result.exit_code == 1
    stderr = " ".join(result.stderr.split())
    assert "the recorded audit of" in stderr and "label_agreement failed, label agreement 27%" in stderr
    assert "--allow-audit-fail" in stderr and not (tmp_path / "run" / "manifest.json").exists()

    result = runner.invoke(app, ["train", str(cfg), "--allow-audit-fail", "labels under review (ticket 7)"])
    assert result.exit_code == 0, result.stderr
    audit = json.loads((tmp_path / "run" / "manifest.json").read_text())["audit"]
    assert audit["verdict"] != "fail"  # its own audit
    assert [a["verdict"] for a in audit["recorded"]] == ["fail"]
    assert audit["recorded"][0]["failed"] == ["label_agreement"]
    assert audit["override_reason"] == "labels under review (ticket 7)"

    # and the registry will not promote that run without a reasoned override
    from prefgate.registry import Registry

    reg = Registry()
    run_id = reg.add(tmp_path / "run")["run_id"]
    row = reg.promote(run_id, "prod", force=True, reason="bootstrap, data under review")
    assert row["forced"] and f"run {run_id} was trained on data whose audit failed" in row["overridden"]
    assert "the recorded audit of its training data failed: label_agreement failed" in row["overridden"]
