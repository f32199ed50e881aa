"""How the demo's learning rate was chosen (issue 16, part 4): on dev only, by a stated rule (fast)."""

from __future__ import annotations

import statistics

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
