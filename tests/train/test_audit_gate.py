"""The trainer's pre-training audit uses what the run knows: human labels (the 80% rule), the eval set
(leakage) and the tokenizer with max_length (one-sided truncation); a fail stops the run before step 1."""

from __future__ import annotations

import json

from prefgate.cli import app
from prefgate.data import read_dataset
from tests.train.conftest import arithmetic_pairs, make_config, write_pairs


def _run(runner, tmp_path, config):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(config.model_dump(mode="json")))
    return runner.invoke(app, ["train", str(cfg)])


def _labels(tmp_path, pairs_path, agree: int, total: int):
    """`total` human labels on the first pairs, agreeing with the file's label on the first `agree`."""
    ids = [r.id for r in read_dataset(str(pairs_path)).records][:total]
    rows = [{"id": i, "preferred": "chosen" if k < agree else "rejected", "rater": "ann"} for k, i in enumerate(ids)]
    return write_pairs(tmp_path / "labels.jsonl", rows)


def test_low_label_agreement_stops_training_unless_overridden(tiny_dir, tmp_path, runner):
    pairs = write_pairs(tmp_path / "pairs.jsonl", arithmetic_pairs(40))
    labels = _labels(tmp_path, pairs, agree=21, total=30)  # 70% < 80%
    config = make_config(tiny_dir, pairs, tmp_path / "run", max_steps=2, **{"data.labels": str(labels)})
    result = _run(runner, tmp_path, config)
    assert result.exit_code == 1
    stderr = " ".join(result.stderr.split())
    assert "fails on label_agreement" in stderr and f"--labels {labels}" in stderr
    assert not (tmp_path / "run" / "manifest.json").exists()

    cfg = tmp_path / "c.yaml"
    result = runner.invoke(app, ["train", str(cfg), "--allow-audit-fail", "labels under review"])
    assert result.exit_code == 0, result.stderr
    audit = json.loads((tmp_path / "run" / "manifest.json").read_text())["audit"]
    assert audit["verdict"] == "fail" and audit["failed"] == ["label_agreement"]
    assert audit["override_reason"] == "labels under review" and audit["labels"] == str(labels)


def test_agreeing_labels_pass_and_are_recorded(tiny_dir, tmp_path, runner):
    pairs = write_pairs(tmp_path / "pairs.jsonl", arithmetic_pairs(40))
    labels = _labels(tmp_path, pairs, agree=30, total=30)
    result = _run(runner, tmp_path, make_config(tiny_dir, pairs, tmp_path / "run", max_steps=2,
                                                **{"data.labels": str(labels)}))
    assert result.exit_code == 0, result.stderr
    audit = json.loads((tmp_path / "run" / "manifest.json").read_text())["audit"]
    assert audit["verdict"] != "fail" and "label_agreement" not in audit["failed"] + audit["warned"]


def test_eval_prompts_in_the_training_data_stop_training(tiny_dir, tmp_path, runner):
    rows = arithmetic_pairs(40)
    train_path = write_pairs(tmp_path / "train.jsonl", rows[:32])
    eval_path = write_pairs(tmp_path / "eval.jsonl", rows[28:])  # 4 training prompts leak into eval
    result = _run(runner, tmp_path, make_config(tiny_dir, train_path, tmp_path / "run", max_steps=2,
                                                **{"data.eval": str(eval_path)}))
    assert result.exit_code == 1
    assert "fails on leakage" in " ".join(result.stderr.split())


def test_one_sided_truncation_stops_training(tiny_dir, tmp_path, runner):
    rows = arithmetic_pairs(20)
    for r in rows[:4]:  # a long rejected answer: cut by max_length on that side only
        r["rejected"] = r["rejected"] + " because" * 60
    pairs = write_pairs(tmp_path / "pairs.jsonl", rows)
    result = _run(runner, tmp_path, make_config(tiny_dir, pairs, tmp_path / "run", max_steps=2))
    assert result.exit_code == 1
    assert "truncation" in " ".join(result.stderr.split())
