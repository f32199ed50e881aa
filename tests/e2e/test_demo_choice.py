"""How the demo's learning rate was chosen (issue 16, part 4): on dev only, by a stated rule (fast)."""

from __future__ import annotations

import json
import statistics

import pytest

from prefgate.demo.choose import choose
from prefgate.demo.settings import LR_CHOICE, settings_for


def test_the_rule_picks_the_best_mean_dev_score_and_ties_go_to_the_smaller_rate():
    assert choose({1e-4: [0.90, 0.88], 3e-4: [0.91, 0.86], 3e-5: [0.88]}) == 1e-4
    assert choose({1e-4: [0.89], 3e-5: [0.89], 3e-4: [0.80]}) == 3e-5


def test_the_shipped_rate_is_what_the_rule_gives_on_the_recorded_dev_runs():
    dev: dict[float, list[float]] = {}
    for lr, _seed, _loss, score in LR_CHOICE["runs"]:
        dev.setdefault(lr, []).append(score)
    assert choose(dev) == LR_CHOICE["chosen"] == settings_for(False).lr == settings_for(True).lr
    for lr, scores in dev.items():
        assert LR_CHOICE["dev"][f"{lr:g}"] == {"mean": round(statistics.mean(scores), 4), "n_runs": len(scores)}
    assert LR_CHOICE["split"] == "dev" and "test" not in LR_CHOICE["rule"]


@pytest.mark.slow
def test_choose_lr_runs_the_grid_on_dev_only_and_records_its_choice(tmp_path):
    """`prefgate demo --choose-lr` end to end on a small grid (quick settings): every score it looks at is a dev
    score, seeds are repeated only near the best, and the record's choice is the rule's."""
    from prefgate.demo.choose import run_choice

    said: list[str] = []
    record = run_choice(tmp_path / "choice", grid=(1e-4, 1e-3), seeds=(0, 1), quick=True, say=said.append)
    assert json.loads((tmp_path / "choice" / "lr_choice.json").read_text()) == json.loads(json.dumps(record))
    evals = sorted(p.name for p in (tmp_path / "choice" / "evals").glob("*.json"))
    assert evals and all("test" not in name for name in evals)  # the test suite was never evaluated
    assert {(r["lr"], r["seed"], r["loss"]) for r in record["runs"]} >= {(lr, 0, loss) for lr in (1e-4, 1e-3)
                                                                          for loss in ("dpo", "dpop")}
    first = {lr: statistics.mean(r["dev"] for r in record["runs"] if r["lr"] == lr and r["seed"] == 0)
             for lr in (1e-4, 1e-3)}
    for lr in (1e-4, 1e-3):
        repeated = any(r["lr"] == lr and r["seed"] == 1 for r in record["runs"])
        assert repeated == (100 * (max(first.values()) - first[lr]) <= 5.0)
    dev: dict[float, list[float]] = {}
    for r in record["runs"]:
        dev.setdefault(r["lr"], []).append(r["dev"])
    assert record["chosen"] == choose(dev) and record["split"] == "dev" and 0 < record["sft_dev"] <= 1
    assert len(said) == len(record["runs"])
