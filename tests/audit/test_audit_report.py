"""`run_audit`: the report contract, the verdict, and the HTML page built from the report alone."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from prefgate.audit import CHECK_IDS, CheckResult, run_audit
from prefgate.audit.result import describe_threshold, pct, worst
from prefgate.data.dataset import PreferenceDataset
from prefgate.data.records import UnpairedExample
from prefgate.report import audit_html, write_audit_html


@pytest.fixture
def clean_report(pairs):
    return run_audit(PreferenceDataset("clean.jsonl", pairs))


def test_report_contract(clean_report):
    report = clean_report
    assert report["kind"] == "audit"
    assert isinstance(report["version"], int)
    assert re.match(r"\d{4}-\d\d-\d\dT", report["created"])
    assert report["prefgate_version"]
    assert set(report["dataset"]) >= {"path", "fingerprint", "n_records"}
    assert report["dataset"]["n_records"] == 60
    assert [c["id"] for c in report["checks"]] == list(CHECK_IDS)
    for check in report["checks"]:
        assert set(check) >= {"id", "status", "value", "threshold", "message", "examples"}
        assert check["status"] in ("pass", "warn", "fail", "skip")
        assert len(check["examples"]) <= 5
        assert "\n" not in check["message"]
    assert json.loads(json.dumps(report)) == report  # plain JSON, nothing lost


def test_clean_data_passes(clean_report):
    assert clean_report["verdict"] == "pass"
    skipped = {c["id"] for c in clean_report["checks"] if c["status"] == "skip"}
    assert skipped == {"truncation", "leakage", "label_agreement", "rejection_diversity",
                       "grader_independence"}


def test_verdict_is_the_worst_status(pairs):
    style = [replace(p, rejected=p.chosen.upper()) if i < 6 else p for i, p in enumerate(pairs)]
    assert run_audit(style)["verdict"] == "warn"
    both = [replace(p, rejected=p.chosen) if i < 3 else p for i, p in enumerate(style)]
    assert run_audit(both)["verdict"] == "fail"


def test_worst():
    assert worst(["skip", "skip"]) == "pass"
    assert worst(["pass", "warn", "skip"]) == "warn"
    assert worst(["warn", "fail", "pass"]) == "fail"


def test_check_result_rejects_unknown_status():
    with pytest.raises(ValueError, match="unknown status"):
        CheckResult("x", "ok", None, {}, "")


def test_formatting():
    values = (0.0, 0.05, 0.1234, 0.0004, 1.0, None)
    assert [pct(v) for v in values] == ["0%", "5.0%", "12.3%", "0.04%", "100%", "-"]
    assert describe_threshold({"warn_above": 0.05, "fail_above": 0.2}) == "warn >5.0%, fail >20%"
    assert describe_threshold({"warn_at_or_above": 0.7}) == "warn ≥70%"


def test_unpaired_data_skips_pair_checks_and_runs_the_rest():
    rows = [UnpairedExample(id=f"u{i}", prompt=f"Question {i} about item {i * 13}?",
                            completion=f"Answer {i}.", label=i % 2 == 0,
                            rejection_type="wrong" if i % 2 else None) for i in range(40)]
    report = run_audit(rows)
    status = {c["id"]: c["status"] for c in report["checks"]}
    for check_id in ("identical", "style_only", "edit_distance", "length_bias", "length_ratio", "shortcut",
                     "contradictions"):
        assert status[check_id] == "skip"
    assert status["duplicates"] == "pass"
    assert status["rejection_diversity"] == "warn"  # one type among the undesirable examples
    assert report["stats"]["paired"] is False


def test_run_audit_resolves_paths(tmp_path, pairs):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": p.id, "preferred": "chosen", "rater": "a"}) + "\n"
                              for p in pairs))
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"id": "e1", "prompt": pairs[0].prompt}) + "\n")
    report = run_audit(pairs, labels=labels, eval_dataset=evals)
    status = {c["id"]: c["status"] for c in report["checks"]}
    assert status["label_agreement"] == "pass"
    assert status["leakage"] == "fail"
    assert report["eval_dataset"]["n_prompts"] == 1
    assert report["options"]["n_labels"] == 60


def test_max_length_without_tokenizer_is_input_error(pairs):
    from prefgate.errors import InputError

    with pytest.raises(InputError, match="needs --tokenizer"):
        run_audit(pairs, max_length=128)


# -- HTML --------------------------------------------------------------------------------------------------

def _typed(pairs):
    cats = ["math", "safety", "coding"]
    return [replace(p, category=cats[i % 3], rejection_type="wrong_fact" if i % 4 else "unsafe")
            for i, p in enumerate(pairs)]


def test_html_is_self_contained_and_complete(pairs):
    report = json.loads(json.dumps(run_audit(_typed(pairs))))  # from the JSON alone
    html = audit_html(report)
    assert '<div class="verdict pass" id="verdict">' in html
    for check_id in CHECK_IDS:
        assert f'id="check-{check_id}"' in html
    assert html.count('src="data:image/png;base64,') == 4  # edit distance, lengths, categories, rejection
    assert not re.search(r'(src|href)="(?!data:)', html), "every resource must be inline"
    assert "Content-Security-Policy" in html


def test_html_escapes_record_text(pairs):
    report = run_audit(pairs)
    report["checks"][0]["message"] = "<script>alert(1)</script>"
    assert "<script>alert(1)</script>" not in audit_html(report)


def test_html_says_why_a_plot_is_missing(pairs, tmp_path):
    path = write_audit_html(run_audit(pairs), tmp_path / "out" / "audit.html")
    html = path.read_text()
    assert "no record has a category field" in html
    assert html.count('src="data:image/png;base64,') == 2
