"""Issue 16, 5b: a run trained on data whose audit failed is not promoted, unless forced with a reason (recorded).

The audit can have failed in the run itself (trained with --allow-audit-fail: the manifest's `audit.verdict`),
or have been recorded for its training data (`prefgate audit --record`, by the data's fingerprint), before or
after the run was registered."""

from __future__ import annotations

import json

import pytest

from prefgate.cli import app
from prefgate.registry import PromotionRefused
from prefgate.registry.audits import failed_audits, record_audit, recorded_audits
from tests.registry.conftest import TRAIN_FP


def _audit_report(tmp_path, verdict: str, name: str = "audit", day: int = 20) -> str:
    report = {"kind": "audit", "version": 1, "created": f"2026-11-{day}T10:00:00+00:00", "prefgate_version": "0.1.0",
              "verdict": verdict, "dataset": {"path": "data/train.jsonl", "fingerprint": TRAIN_FP, "n_records": 900},
              "checks": [{"id": "label_agreement", "status": "fail" if verdict == "fail" else "pass", "value": 0.27,
                          "threshold": 0.8, "message": "27% of 30 labelled pairs agree", "examples": []}]}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(report))
    return str(path)


def _candidate(build, reg, name: str, **run):
    run_dir = build.run(name, **run)
    eval_path = build.eval(f"eval-{name}", str(run_dir))
    reg.add(run_dir, evals=[eval_path])
    return run_dir.name, eval_path


def test_a_recorded_failed_audit_of_the_training_data_refuses_promotion_until_forced(prod, reg, build, home,
                                                                                     tmp_path):
    run_id, eval_path = _candidate(build, reg, "20261125-run-C")
    gate = build.gate("A-vs-C", prod["A"]["eval"], eval_path)  # the gate itself promotes
    recorded = record_audit(home, _audit_report(tmp_path, "fail"))
    assert recorded["path"].startswith(str(home / "audits" / TRAIN_FP))
    assert [a["verdict"] for a in failed_audits(home, TRAIN_FP)] == ["fail"]

    with pytest.raises(PromotionRefused) as err:
        reg.promote(run_id, "prod", gate)
    message = str(err.value)
    assert message.startswith(f"run {run_id} was trained on data whose audit failed: the recorded audit of its "
                              "training data failed: label_agreement failed, label agreement 27%")
    assert "--force --reason" in message and "\n" not in message
    assert reg.holder("prod") == prod["A"]["id"]

    row = reg.promote(run_id, "prod", gate, force=True, reason="relabelled by two raters: 91% agree (audit v2)")
    assert row["forced"] and "was trained on data whose audit failed" in row["overridden"]
    assert row["reason"] == "relabelled by two raters: 91% agree (audit v2)"
    assert reg.holder("prod") == run_id


def test_a_run_that_overrode_its_own_failing_audit_is_refused_and_both_refusals_are_recorded(prod, reg, build):
    run_id, eval_path = _candidate(build, reg, "20261125-run-D", audit="fail")
    worse = build.worse_eval(reg, build.root / "runs" / run_id, "worse-D")
    gate = build.gate("A-vs-D", prod["A"]["eval"], worse, decision="block")
    with pytest.raises(PromotionRefused, match="its pre-training audit failed .* and the gate's decision is block"):
        reg.promote(run_id, "prod", gate)
    row = reg.promote(run_id, "prod", gate, force=True, reason="incident 12")
    assert "audit failed" in row["overridden"] and "the gate's decision is block" in row["overridden"]


def test_a_passing_recorded_audit_changes_nothing_and_a_later_pass_does_not_clear_a_fail(prod, reg, build, home,
                                                                                        tmp_path):
    run_id, eval_path = _candidate(build, reg, "20261125-run-E")
    record_audit(home, _audit_report(tmp_path, "pass", "first", day=20))
    assert reg.promote(run_id, "prod", build.gate("A-vs-E", prod["A"]["eval"], eval_path))["forced"] is False
    record_audit(home, _audit_report(tmp_path, "fail", "second", day=21))
    record_audit(home, _audit_report(tmp_path, "pass", "third", day=22))  # an audit without the labels, say
    record_audit(home, _audit_report(tmp_path, "pass", "third", day=22))  # the same bytes again: a no-op
    assert [a["verdict"] for a in recorded_audits(home, TRAIN_FP)] == ["pass", "fail", "pass"]
    assert len(failed_audits(home, TRAIN_FP)) == 1


def test_record_audit_refuses_what_is_not_an_audit_report(home, tmp_path):
    from prefgate.errors import InputError

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "eval"}))
    with pytest.raises(InputError, match="is not an audit report"):
        record_audit(home, bad)
    assert not (home / "audits").exists()


def test_prefgate_audit_record_needs_json(runner, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    result = runner.invoke(app, ["audit", str(data), "--record"])
    assert result.exit_code == 2 and "--record" in result.stderr and "needs --json" in result.stderr
