"""Split by prompt hash, statistics, and the `prefgate data` commands end to end."""

from __future__ import annotations

import json

import pytest

from prefgate.cli import app
from prefgate.data import PreferencePair, read_dataset, split_by_prompt
from prefgate.data.stats import dataset_stats
from prefgate.errors import InputError
from tests.conftest import write_jsonl


def _records(n_prompts=400, per_prompt=3):
    return [PreferencePair(id=f"{i}-{j}", prompt=f"prompt {i}", chosen=f"c{j}", rejected=f"r{j}")
            for i in range(n_prompts) for j in range(per_prompt)]


def test_split_keeps_every_prompt_on_one_side_and_is_close_to_fraction():
    train, held_out = split_by_prompt(_records(), eval_fraction=0.2, seed=0)
    assert {r.prompt for r in train}.isdisjoint({r.prompt for r in held_out})
    assert len(train) + len(held_out) == 1200
    assert 0.15 < len(held_out) / 1200 < 0.25  # 400 prompts: sd of the realised share is 0.02


def test_split_is_deterministic_and_seeded_and_stable_under_added_data():
    recs = _records()
    a = split_by_prompt(recs, eval_fraction=0.2, seed=0)[1]
    assert [r.id for r in a] == [r.id for r in split_by_prompt(recs, eval_fraction=0.2, seed=0)[1]]
    assert {r.prompt for r in a} != {r.prompt for r in split_by_prompt(recs, eval_fraction=0.2, seed=1)[1]}
    more = split_by_prompt(recs + _records(800)[1200:], eval_fraction=0.2, seed=0)[1]
    assert {r.prompt for r in a} <= {r.prompt for r in more}  # adding data moves no eval prompt
    with pytest.raises(InputError, match="field 'eval_fraction'"):
        split_by_prompt(recs, eval_fraction=1.5)


def test_stats_counts_and_token_truncation(tmp_path, tiny_tok):
    rows = [{"prompt": "Human: hi\n\nAssistant:", "chosen": " hello " * 20, "rejected": " no", "category": "chat"},
            {"prompt": "Human: yo\n\nAssistant:", "chosen": "", "rejected": " sure", "category": "chat"}]
    ds = read_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    s = dataset_stats(ds, tokenizer=tiny_tok, max_length=16)
    assert s["n_unique_prompts"] == 2 and s["categories"] == {"chat": 2}
    assert s["empty_completions"] == {"chosen": 1, "rejected": 0}
    assert s["chars"]["chosen"]["max"] == 140.0
    assert s["tokens"]["truncation"] == {"max_length": 16, "max_prompt_length": None, "prompt": 0,
                                         "either_side": 1, "one_side_only": 1}
    assert s["tokens"]["prompt"]["p50"] > 1


def test_cli_convert_split_stats(tmp_path, runner, tiny_dir):
    rows = [{"prompt": f"q{i}", "chosen": "yes", "rejected": "no"} for i in range(50)]
    src = write_jsonl(tmp_path / "src.jsonl", rows)
    out = tmp_path / "canon.parquet"
    result = runner.invoke(app, ["data", "convert", str(src), str(out)])
    assert result.exit_code == 0, result.output
    fp = read_dataset(src).fingerprint
    assert f"wrote 50 records to {out}  fingerprint {fp}" in result.stdout
    assert read_dataset(out).fingerprint == fp

    result = runner.invoke(app, ["data", "split", str(out), "--eval-fraction", "0.2", "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    train = read_dataset(tmp_path / "canon.train.jsonl")
    held_out = read_dataset(tmp_path / "canon.eval.jsonl")
    assert len(train) + len(held_out) == 50 and len(held_out) > 0

    js = tmp_path / "stats.json"
    result = runner.invoke(app, ["data", "stats", str(src), "--tokenizer", str(tiny_dir), "--max-length", "8",
                                 "--json", str(js)])
    assert result.exit_code == 0, result.output
    assert "50 records (paired), 50 unique prompts" in result.stdout
    assert json.loads(js.read_text())["dataset"]["fingerprint"] == fp


def test_cli_help_lists_every_data_command(runner):
    result = runner.invoke(app, ["data", "--help"])
    for name in ("validate", "convert", "split", "stats"):
        assert name in result.stdout
