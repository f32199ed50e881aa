"""Issue 16, part 2: the in-training gate on a tiny model with a planted regression.

The starting model answers two categories of prompts right (`a` -> " red", `b` -> " blue"; SFT'd on them).
The preference data then teaches category `b` the wrong answer (chosen " red", rejected " blue") and category
`a` the right one: a regression planted in one category. At lr 1e-3 the greedy answers hold for a few steps,
then category `b` falls to 0: the gate promotes the early evaluations and blocks the later ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from prefgate.cli import app
from prefgate.config import load_train_config
from prefgate.train.loop import train
from tests.train.conftest import EXAMPLES, accelerate_launch, write_pairs

N = 24  # items per category: above the gate's min_items (20), so each category decides


@pytest.fixture(scope="module")
def planted(tmp_path_factory, tiny_dir) -> dict:
    root = tmp_path_factory.mktemp("planted")
    answer = {"a": "red", "b": "blue"}
    items = [{"id": f"{c}-{i}", "category": c, "prompt": f"Q{i} {c}:", "answer": answer[c], "scorer": "exact"}
             for c in "ab" for i in range(N)]
    suite = write_pairs(root / "suite.jsonl", items)
    sft = write_pairs(root / "sft.jsonl", [{"prompt": it["prompt"], "completion": " " + it["answer"]} for it in items])
    wrong = {"a": "blue", "b": "red"}
    pairs = write_pairs(root / "pairs.jsonl", [
        {"prompt": it["prompt"], "category": it["category"],
         "chosen": " " + (answer["a"] if it["category"] == "a" else wrong["b"]),  # b: deliberately wrong
         "rejected": " " + (wrong["a"] if it["category"] == "a" else answer["b"])} for it in items])
    common = {"data": {"train": str(sft), "max_length": 32}, "batch_size": 8, "memory_probe": False,
              "optim": {"lr": 0.01, "schedule": "constant"}}
    model = train(load_train_config(None, model={"name_or_path": str(tiny_dir)}, loss={"type": "sft"}, max_steps=40,
                                    output_dir=str(root / "sft"), **common), show_progress=False).run_dir / "model"
    config = root / "dpo.yaml"
    config.write_text(json.dumps({
        "model": {"name_or_path": str(model)}, "data": {"train": str(pairs), "max_length": 32}, "batch_size": 8,
        "max_steps": 12, "optim": {"lr": 1e-3, "schedule": "constant"}, "memory_probe": False,
        "eval": {"every": 2, "suite": str(suite), "max_new_tokens": 4, "batch_size": 48,
                 "cache_dir": str(root / "cache")}}))
    return {"root": root, "suite": suite, "config": config, "model": model}


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def _score(run_dir: Path, suite: Path) -> dict[str, float]:
    from prefgate.eval.runner import EvalOptions, run_eval
    from prefgate.lm.generate import GenerationConfig

    options = EvalOptions(generation=GenerationConfig(max_new_tokens=4, batch_size=48), dtype="float32", device="cpu",
                          progress=False)
    return {k: v["score"] for k, v in run_eval(str(run_dir), str(suite), options=options)["categories"].items()}


def test_keep_best_ends_with_the_latest_model_the_gate_promoted(planted, runner):
    out = planted["root"] / "keep"
    result = runner.invoke(app, ["train", str(planted["config"]), f"output_dir={out}", "eval.on_block=keep_best"])
    assert result.exit_code == 0, result.stderr
    gate = _manifest(out)["in_training_gate"]
    verdicts = {v["step"]: v["decision"] for v in gate["verdicts"]}
    assert list(verdicts) == [0, 2, 4, 6, 8, 10, 12]
    first_block = min(s for s, d in verdicts.items() if d == "block")
    kept = max(s for s, d in verdicts.items() if d == "promote" and s < first_block)
    assert kept > 0 and verdicts[12] == "block"  # the planted regression was caught while training
    assert all(d == "block" for s, d in verdicts.items() if s > kept)
    blocked = next(v for v in gate["verdicts"] if v["step"] == first_block)
    assert blocked["categories"]["b"]["status"] == "block" and blocked["categories"]["a"]["score"] == 1.0
    assert gate["output"]["step"] == kept and gate["output"]["from"] == "snapshots/gate-passed"
    assert f"the run's model is step {kept}'s" in gate["output"]["why"]
    assert f"keep_best: the gate blocked the evaluations after step {kept}" in " ".join(result.stdout.split())
    # the saved model is that step's: it answers both categories right, which the final weights do not
    assert json.loads((out / "snapshots" / "gate-passed" / "snapshot.json").read_text())["step"] == kept
    saved = load_file(str(out / "model" / "model.safetensors"))
    snap = load_file(str(out / "snapshots" / "gate-passed" / "model.safetensors"))
    assert all((saved[k] == snap[k]).all() for k in snap)
    assert _score(out, planted["suite"]) == {"a": 1.0, "b": 1.0}
    # each verdict is a gate report of `prefgate gate`, with its eval, and metrics.jsonl logs every category
    assert (out / "gates" / f"step-{first_block:07d}.json").is_file() and (out / "evals" / "baseline.json").is_file()
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    row = next(r for r in logged if r["step"] == first_block)
    assert row["eval/gate"] == "block" and row["eval/suite/b"] == 0.0 and row["eval/suite_grade/b"] == "F"
    assert gate["seconds"]["evaluations"] > 0 and 0 < gate["seconds"]["share"] < 1
    assert gate["baseline"]["source"] in ("starting model (evaluated now)", "starting model (cached)")
    # nothing is promoted silently: the registry still asks for a final gate report
    from prefgate.errors import InputError
    from prefgate.registry import Registry

    reg = Registry(planted["root"] / "home")
    run_id = reg.add(out)["run_id"]  # the published snapshot matches the manifest's sha256s
    with pytest.raises(InputError, match="needs the gate report"):
        reg.promote(run_id, "prod")


def test_stop_ends_at_the_first_block_and_the_baseline_is_cached(planted, runner):
    out = planted["root"] / "stop"
    config = load_train_config(planted["config"], [f"output_dir={out}", "eval.on_block=stop"])
    result = train(config, show_progress=False)
    assert result.status == "aborted" and "the in-training gate blocked" in result.reason
    manifest = _manifest(out)
    gate = manifest["in_training_gate"]
    assert gate["verdicts"][-1]["decision"] == "block" and manifest["steps"] == gate["verdicts"][-1]["step"] < 12
    assert [v["decision"] for v in gate["verdicts"][:-1]] == ["promote"] * (len(gate["verdicts"]) - 1)
    assert f"snapshots/gate-passed (step {gate['verdicts'][-2]['step']})" in result.reason
    assert manifest["artifacts"] == {} and not (out / "model").exists()
    # the starting model's eval was computed once (by this module's first run) and reused here
    cached = list((planted["root"] / "cache").glob("*.json"))
    assert len(cached) == 1 and gate["baseline"]["source"] == "starting model (cached)"


def test_warn_trains_on_and_records_every_verdict(planted):
    out = planted["root"] / "warn"
    result = train(load_train_config(planted["config"], [f"output_dir={out}", "max_steps=8", "eval.every=4"]),
                   show_progress=False)
    assert result.status == "completed"
    gate = _manifest(out)["in_training_gate"]
    assert [v["step"] for v in gate["verdicts"]] == [0, 4, 8] and gate["on_block"] == "warn"
    assert gate["output"]["from"] == "final step" and not (out / "snapshots" / "gate-passed").exists()


def test_an_external_baseline_with_other_categories_or_a_suite_mismatch_is_refused_at_load(planted, runner,
                                                                                          tmp_path):
    def run(*overrides: str):
        return runner.invoke(app, ["train", str(planted["config"]), f"output_dir={tmp_path / 'x'}", *overrides])

    result = run("eval.suite=null", "eval.on_block=keep_best")
    assert result.exit_code == 2 and "eval.on_block needs eval.suite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run("eval.every=null")
    assert result.exit_code == 2 and "eval.suite needs eval.every" in result.stderr

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"kind": "eval", "suite": {"fingerprint": "0" * 64},
                                 "items": [{"id": "c-1", "category": "c", "score": 1.0}]}))
    result = run(f"eval.baseline={other}")
    assert result.exit_code == 2
    assert "its categories (c) do not match eval.suite's (a, b)" in " ".join(result.stderr.split())
    assert len(result.stderr.strip().splitlines()) == 1

    policy = tmp_path / "gate.yaml"
    policy.write_text("protected: [safety]\n")
    result = run(f"eval.gate={policy}")
    assert result.exit_code == 2 and "protects category 'safety', which eval.suite does not have" in result.stderr
    assert not (tmp_path / "x").exists()  # nothing was loaded or written


@pytest.mark.slow
def test_a_run_killed_mid_way_resumes_to_the_same_verdicts_and_kept_model(planted, tmp_path):
    """SIGKILL after a checkpoint, `--resume`: the resumed run lists the same in-training verdicts, keeps the
    same step's model (bit-identical) and reads its baseline from the run folder, as the uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    overrides = ["eval.on_block=keep_best", "checkpoint_every=2", "checkpoint_keep=10"]
    whole = train(load_train_config(planted["config"], [f"output_dir={tmp_path / 'whole'}", *overrides]),
                  show_progress=False)
    assert whole.status == "completed"

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "prefgate", "train", str(planted["config"]), f"output_dir={out}",
                             *overrides], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    target = out / "checkpoints" / "step-0000004"  # early: the rest (8 steps, 4 evaluations) outlasts the poll
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    assert (out / "evals" / "baseline.json").is_file()

    resumed = train(load_train_config(planted["config"], [f"output_dir={out}", *overrides]), resume=True,
                    show_progress=False)
    assert resumed.status == "completed"
    a, b = _manifest(whole.run_dir)["in_training_gate"], _manifest(out)["in_training_gate"]
    assert [(v["step"], v["decision"]) for v in a["verdicts"]] == [(v["step"], v["decision"]) for v in b["verdicts"]]
    assert a["output"]["step"] == b["output"]["step"] and b["output"]["from"] == "snapshots/gate-passed"
    assert b["baseline"]["source"] == a["baseline"]["source"] or "run folder" in b["baseline"]["source"]
    wa = load_file(str(whole.run_dir / "model" / "model.safetensors"))
    wb = load_file(str(out / "model" / "model.safetensors"))
    assert set(wa) == set(wb) and all(torch.equal(wa[k], wb[k]) for k in wa), "the kept models differ"


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["ddp", "deepspeed_zero2"])
def test_two_processes_reach_the_same_verdicts_and_keep_the_same_step_as_one(layout, planted, tmp_path):
    """DDP or DeepSpeed ZeRO-2 on 2 CPU processes (gloo), half the batch each: the main process evaluates the suite,
    the other reads its verdict; the verdicts, the kept step and the kept model equal the one-process run's."""
    if layout == "ddp":
        launch = ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    else:
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (bash dev.sh test installs it)")
        launch = ["--config_file", str(EXAMPLES / f"{layout}.yaml")]

    overrides = ["eval.on_block=keep_best"]
    one = train(load_train_config(planted["config"], [f"output_dir={tmp_path / 'one'}", *overrides]),
                show_progress=False)
    assert one.status == "completed"
    out = tmp_path / "two"
    result = accelerate_launch(launch, ["-m", "prefgate", "train", str(planted["config"]), f"output_dir={out}",
                                        "batch_size=4", *overrides], deepspeed=layout != "ddp", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = _manifest(one.run_dir), _manifest(out)
    assert b["processes"] == 2 and b["distributed"]["type"] == ("multi_cpu" if layout == "ddp" else "deepspeed")
    ga, gb = a["in_training_gate"], b["in_training_gate"]
    assert [(v["step"], v["decision"]) for v in ga["verdicts"]] == [(v["step"], v["decision"]) for v in gb["verdicts"]]
    assert "block" in {v["decision"] for v in gb["verdicts"]}
    assert gb["output"]["step"] == ga["output"]["step"] and gb["output"]["from"] == "snapshots/gate-passed"
    assert " ".join(result.stdout.split()).count("keep_best: the gate blocked") == 1  # the main process says it
    assert _score(out, planted["suite"]) == {"a": 1.0, "b": 1.0}
