"""The regression gate: the seed's story, planted regressions, noise, small categories, refusals, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from prefgate.commands import gate as gate_commands
from prefgate.errors import InputError
from prefgate.gate import GatePolicy, decide, gate_files, load_policy

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def make_report(scores: dict[str, list[float]], *, fingerprint: str = "suite-1", model: str = "m") -> dict:
    """An eval report holding only what the gate reads: items keyed by id, a suite fingerprint, a model."""
    items = [{"id": f"{cat}-{i}", "category": cat, "score": float(s)}
             for cat, values in scores.items() for i, s in enumerate(values)]
    return {"kind": "eval", "version": 1, "model": {"path": model}, "suite": {"fingerprint": fingerprint},
            "items": items}


def ones_then_zeros(n: int, correct: int) -> list[float]:
    return [1.0] * correct + [0.0] * (n - correct)


def flip(values: list[float], down: int, up: int = 0) -> list[float]:
    """Turn the first `down` correct items wrong and the first `up` wrong items right."""
    out = list(values)
    right = [i for i, v in enumerate(out) if v == 1.0]
    wrong = [i for i, v in enumerate(out) if v == 0.0]
    for i in right[:down]:
        out[i] = 0.0
    for i in wrong[:up]:
        out[i] = 1.0
    return out


def category_reasons(result: dict) -> list[str]:
    return [r for r in result["reasons"] if not r.startswith("overall")]


# ---------------------------------------------------------------------------------------------------------
# The seed's story and planted regressions


def test_seed_story_five_categories_at_a_fall_to_b_and_c_blocks_naming_each_two_grade_fall():
    """Five categories at A (48/50 = 0.96). After DPO: three fell to C (37/50 = 0.74), two to B (42/50)."""
    names = ["factual_qa", "math", "coding", "summaries", "safety"]
    baseline = {name: ones_then_zeros(50, 48) for name in names}
    fell_to_c = {"factual_qa", "coding", "safety"}
    candidate = {name: flip(values, 11 if name in fell_to_c else 6) for name, values in baseline.items()}
    result = decide(make_report(baseline), make_report(candidate))

    assert result["decision"] == "block"
    rows = {row["name"]: row for row in result["categories"]}
    for name in names:
        assert rows[name]["baseline_grade"] == "A"
        assert rows[name]["candidate_grade"] == ("C" if name in fell_to_c else "B")
    fell_two = [r for r in result["reasons"] if "fell 2 grades" in r]
    assert sorted(r.split("'")[1] for r in fell_two) == sorted(fell_to_c)
    assert {rows[n]["status"] for n in fell_to_c} == {"block"}
    assert {rows[n]["status"] for n in set(names) - fell_to_c} == {"pass"}  # one grade down is allowed


def test_planted_two_grade_drop_in_one_category_blocks():
    rng = np.random.default_rng(3)
    baseline = {f"cat{k}": [float(x) for x in rng.random(60) < 0.85] for k in range(6)}
    baseline["math"] = ones_then_zeros(60, 51)  # 0.85, B
    candidate = {name: list(values) for name, values in baseline.items()}
    candidate["math"] = flip(baseline["math"], 12)  # 39/60 = 0.65, D: two grades down
    result = decide(make_report(baseline), make_report(candidate))
    assert result["decision"] == "block"
    assert category_reasons(result) and all("'math' fell 2 grades" in r for r in category_reasons(result))


def test_planted_overall_drop_of_five_points_on_500_items_blocks_with_every_category_within_one_grade():
    """n = 500 in five categories of 100 at 0.85 (B). The candidate loses 7 items and gains 2 in each
    category: -5 points everywhere, every category still a B, none significant alone; overall 35 vs 10
    discordant pairs is significant (exact McNemar p ~ 2e-4)."""
    baseline = {f"cat{k}": ones_then_zeros(100, 85) for k in range(5)}
    candidate = {name: flip(values, 7, 2) for name, values in baseline.items()}
    result = decide(make_report(baseline), make_report(candidate))

    assert result["decision"] == "block"
    assert result["reasons"] and all(r.startswith("overall score dropped") for r in result["reasons"])
    assert result["overall"]["n"] == 500 and result["overall"]["diff"] == pytest.approx(-0.05)
    assert result["overall"]["test"] == "mcnemar" and result["overall"]["p_value"] < 1e-3
    assert all(row["grade_drop"] <= 1 and row["status"] == "pass" for row in result["categories"])


def _redraw(rng, probabilities: dict[str, np.ndarray]) -> dict[str, list[float]]:
    return {name: [float(x) for x in rng.random(p.size) < p] for name, p in probabilities.items()}


# Category sizes and mean accuracies near band edges; two below min_items.
NOISE_CATEGORIES = {"factual_qa": (120, 0.90), "safety": (80, 0.95), "math": (100, 0.80), "coding": (60, 0.70),
                    "reasoning": (60, 0.75), "chat": (40, 0.62), "extraction": (20, 0.85), "tiny_a": (12, 0.80),
                    "tiny_b": (8, 0.90)}


def test_noise_promotes_at_least_95_percent_of_200_comparisons_of_the_same_model():
    """Two evaluations of the same model: per-item probabilities drawn once per comparison (Beta around each
    category's mean), then both reports' 0/1 scores re-drawn from them. Protected categories included."""
    rng = np.random.default_rng(2024)
    policy = GatePolicy(protected=["factual_qa", "safety"])
    promoted = 0
    for _ in range(200):
        probabilities = {name: rng.beta(2 * m, 2 * (1 - m), size=n) for name, (n, m) in NOISE_CATEGORIES.items()}
        result = decide(make_report(_redraw(rng, probabilities)), make_report(_redraw(rng, probabilities)), policy)
        promoted += result["decision"] == "promote"
    print(f"noise: promoted {promoted}/200 = {promoted / 200:.1%}")
    assert promoted >= 190


def test_noise_with_judge_grades_promotes_at_least_95_percent():
    """The same with two judge-graded categories (scores A=1, B=.85, C=.75, D=.65, F=0): paired bootstrap."""
    rng = np.random.default_rng(7)
    letters = np.array([1.0, 0.85, 0.75, 0.65, 0.0])
    policy = GatePolicy(bootstrap_samples=2000)
    promoted = 0
    for _ in range(200):
        probabilities = {name: rng.beta(2 * m, 2 * (1 - m), size=n) for name, (n, m) in NOISE_CATEGORIES.items()}
        reports = []
        for _side in range(2):
            scores = _redraw(rng, probabilities)
            for name in ("chat", "reasoning"):
                p = probabilities[name]
                good = rng.random(p.size) < p
                scores[name] = list(np.where(good, letters[rng.integers(0, 2, p.size)],
                                             letters[rng.integers(2, 5, p.size)]))
            reports.append(make_report(scores))
        promoted += decide(*reports, policy)["decision"] == "promote"
    print(f"noise (judge grades): promoted {promoted}/200 = {promoted / 200:.1%}")
    assert promoted >= 190


# ---------------------------------------------------------------------------------------------------------
# Each rule on its own


def _balanced_noise() -> dict[str, list[float]]:
    """Big categories for the overall test: half right, so flips both ways are possible."""
    return {f"big{k}": ones_then_zeros(100, 50) for k in range(4)}


def test_small_category_two_grade_fall_warns_instead_of_blocking():
    baseline = {**_balanced_noise(), "tiny": ones_then_zeros(10, 10)}
    candidate = {name: flip(v, 6, 6) for name, v in baseline.items()}  # balanced elsewhere
    candidate["tiny"] = flip(baseline["tiny"], 5)  # A -> F on 10 items
    result = decide(make_report(baseline), make_report(candidate))
    tiny = next(r for r in result["categories"] if r["name"] == "tiny")
    assert tiny["grade_drop"] == 4 and tiny["status"] == "warn" and tiny["p_adjusted"] is None
    assert result["decision"] == "promote"
    assert any("'tiny'" in w and "min_items" in w for w in result["warnings"])


def test_two_grade_fall_that_is_not_significant_warns():
    baseline = {**_balanced_noise(), "edge": ones_then_zeros(20, 16)}  # 0.80, B
    candidate = {name: flip(v, 6, 6) for name, v in baseline.items()}
    candidate["edge"] = flip(baseline["edge"], 4, 1)  # 13/20 = 0.65, D; discordant 4 vs 1, p = 0.375
    result = decide(make_report(baseline), make_report(candidate))
    edge = next(r for r in result["categories"] if r["name"] == "edge")
    assert edge["grade_drop"] == 2 and edge["p_value"] == pytest.approx(0.375)
    assert edge["status"] == "warn" and result["decision"] == "promote"
    assert any("not significant" in w for w in result["warnings"])


def test_protected_category_blocks_on_a_significant_one_grade_drop():
    baseline = {**_balanced_noise(), "safety": ones_then_zeros(100, 95)}
    candidate = {name: flip(v, 10, 10) for name, v in baseline.items()}
    candidate["safety"] = flip(baseline["safety"], 9)  # 0.95 A -> 0.86 B, 9 vs 0 discordant
    unprotected = decide(make_report(baseline), make_report(candidate))
    assert unprotected["decision"] == "promote"
    protected = decide(make_report(baseline), make_report(candidate), GatePolicy(protected=["safety"]))
    assert protected["decision"] == "block"
    assert len(protected["reasons"]) == 1 and "protected category 'safety'" in protected["reasons"][0]


def test_improvements_never_block():
    baseline = {f"cat{k}": ones_then_zeros(100, 60) for k in range(3)}
    candidate = {name: flip(v, 0, 35) for name, v in baseline.items()}
    result = decide(make_report(baseline), make_report(candidate), GatePolicy(protected=["cat0"]))
    assert result["decision"] == "promote" and result["reasons"] == [] and result["warnings"] == []
    assert all(row["grade_drop"] < 0 for row in result["categories"])


def test_non_binary_scores_use_the_paired_bootstrap():
    baseline = {"chat": [0.85] * 30 + [1.0] * 30}
    candidate = {"chat": [0.65] * 30 + [0.75] * 30}
    result = decide(make_report(baseline), make_report(candidate), GatePolicy(bootstrap_samples=1000))
    assert result["overall"]["test"] == "bootstrap" and result["overall"]["p_value"] < 0.01
    assert result["decision"] == "block"


def test_gate_regrades_both_reports_with_the_policy_bands():
    baseline = {"cat": ones_then_zeros(100, 85)}
    candidate = {"cat": ones_then_zeros(100, 85)}
    policy = GatePolicy(bands={"A": 0.95, "B": 0.9, "C": 0.8, "D": 0.5})
    row = decide(make_report(baseline), make_report(candidate), policy)["categories"][0]
    assert row["baseline_grade"] == row["candidate_grade"] == "C"


def test_report_shape_follows_the_contract():
    result = decide(make_report({"a": [1.0] * 25}), make_report({"a": [1.0] * 25}))
    assert {"kind", "version", "created", "prefgate_version", "decision", "reasons", "policy", "categories",
            "overall", "baseline", "candidate"} <= result.keys()
    assert result["kind"] == "gate" and result["policy"] == GatePolicy().model_dump(mode="json")
    row = result["categories"][0]
    assert {"name", "baseline", "candidate", "baseline_grade", "candidate_grade", "grade_drop", "p_value",
            "status"} <= row.keys()
    assert result["baseline"] == {"path": None, "sha256": None, "model": {"path": "m"}, "suite_fingerprint": "suite-1"}
    json.dumps(result)


# ---------------------------------------------------------------------------------------------------------
# Refusals


def test_refuses_reports_on_different_suites():
    with pytest.raises(InputError, match="different suites"):
        decide(make_report({"a": [1.0]}), make_report({"a": [1.0]}, fingerprint="suite-2"))


@pytest.mark.parametrize("candidate, message", [
    ({"a": [1.0, 1.0]}, "lacks 1 baseline items"),
    ({"a": [1.0, 1.0, 1.0, 0.0]}, "has 1 items the baseline lacks"),
])
def test_refuses_items_that_do_not_match(candidate, message):
    with pytest.raises(InputError, match=message):
        decide(make_report({"a": [1.0, 1.0, 1.0]}), make_report(candidate))


def test_refuses_an_item_that_changed_category():
    baseline = make_report({"a": [1.0, 1.0]})
    candidate = make_report({"a": [1.0, 1.0]})
    candidate["items"][1]["category"] = "b"
    with pytest.raises(InputError, match="in category 'b'"):
        decide(baseline, candidate)


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.update(kind="audit"), None),
    (lambda r: r.update(items=[]), "items"),
    (lambda r: r["items"][0].update(score=1.5), "items[0].score"),
    (lambda r: r["items"][1].update(id="a-0"), "items[1].id"),
    (lambda r: r.pop("suite"), "suite.fingerprint"),
])
def test_refuses_malformed_reports(mutate, field):
    report = make_report({"a": [1.0, 0.0]})
    mutate(report)
    with pytest.raises(InputError) as err:
        decide(report, make_report({"a": [1.0, 0.0]}))
    assert err.value.field == field


# ---------------------------------------------------------------------------------------------------------
# Policy


def test_example_policy_yaml_equals_the_defaults():
    assert load_policy(EXAMPLES / "gate.yaml") == GatePolicy()
    assert load_policy(None) == GatePolicy()


def test_policy_rejects_unknown_keys_and_bad_values(tmp_path):
    bad = tmp_path / "gate.yaml"
    bad.write_text("max_grade_drops: 2\n")
    with pytest.raises(InputError, match="max_grade_drops"):
        load_policy(bad)
    bad.write_text("bands: {A: 0.5, B: 0.8}\n")
    with pytest.raises(InputError, match="descending"):
        load_policy(bad)
    bad.write_text("alpha: [\n")
    with pytest.raises(InputError, match="invalid YAML"):
        load_policy(bad)


def test_policy_yaml_overrides(tmp_path):
    path = tmp_path / "gate.yaml"
    path.write_text("protected: [safety]\nmin_items: 5\nbands: {A: 0.95}\n")
    policy = load_policy(path)
    assert policy.protected == ["safety"] and policy.min_items == 5
    assert policy.bands.A == 0.95 and policy.bands.B == 0.80


# ---------------------------------------------------------------------------------------------------------
# CLI


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("gate")(gate_commands.gate)

    @app.callback()
    def _root() -> None:
        """Keep `gate` as a named sub-command."""

    return app


def _write(path: Path, report: dict) -> Path:
    path.write_text(json.dumps(report))
    return path


def test_cli_promote_exits_0_and_writes_the_gate_json(tmp_path):
    base = _write(tmp_path / "base.json", make_report({"a": ones_then_zeros(30, 27)}, model="base"))
    cand = _write(tmp_path / "cand.json", make_report({"a": ones_then_zeros(30, 27)}, model="cand"))
    out = tmp_path / "gate.json"
    result = CliRunner().invoke(_app(), ["gate", str(base), str(cand), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "PROMOTE" in result.stdout
    gate = json.loads(out.read_text())
    import hashlib

    assert gate["baseline"]["path"] == str(base)
    assert gate["baseline"]["sha256"] == hashlib.sha256(base.read_bytes()).hexdigest()
    assert gate["candidate"]["model"] == {"path": "cand"}


def test_cli_block_exits_1_with_a_reason(tmp_path):
    base = _write(tmp_path / "base.json", make_report({"a": ones_then_zeros(100, 95)}))
    cand = _write(tmp_path / "cand.json", make_report({"a": ones_then_zeros(100, 70)}))
    result = CliRunner().invoke(_app(), ["gate", str(base), str(cand)])
    assert result.exit_code == 1
    assert "BLOCK" in result.stdout and "fell 2 grades" in result.stdout


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    base = _write(tmp_path / "base.json", make_report({"a": [1.0]}))
    cand = _write(tmp_path / "cand.json", make_report({"a": [1.0]}, fingerprint="other"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    runner = CliRunner()
    for args in ([str(base), str(cand)], [str(base), str(broken)], [str(base), str(tmp_path / "missing.json")]):
        result = runner.invoke(_app(), ["gate", *args])
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    result = runner.invoke(_app(), ["gate", str(base), str(cand)])
    assert str(cand) in result.stderr


def test_gate_files_names_the_file_in_errors(tmp_path):
    base = _write(tmp_path / "base.json", make_report({"a": [1.0]}))
    cand = _write(tmp_path / "cand.json", make_report({"a": [1.0, 0.0]}))
    with pytest.raises(InputError) as err:
        gate_files(base, cand)
    assert str(err.value).startswith(str(cand))


# ---------------------------------------------------------------------------------------------------------
# The score-drop rule (issue 16): a significant drop of more than max_grade_drop grade widths blocks


def test_a_true_two_grade_drop_on_100_items_now_blocks_at_least_95_percent():
    """0.92 -> 0.72 on 100 items, in a suite with two unchanged categories (Holm over three). Each item is
    drawn from a population where the candidate gets 21% of the items wrong that the baseline gets right and
    1% right that it gets wrong (a fine-tune that breaks some items and fixes a few), so the drop is
    almost always significant; the letters alone miss it whenever the realised grades land one apart
    (0.91 A -> 0.80 B). Measured: the grade rule alone blocked 263/300 (87.7%); with the score-drop rule,
    297/300 (99.0%)."""
    rng = np.random.default_rng(16)
    by_letters = blocked = 0
    for _ in range(300):
        u = rng.random(100)
        baseline = {"math": [float(x) for x in (u < 0.21) | ((u >= 0.22) & (u < 0.93))]}
        candidate = {"math": [float(x) for x in (u >= 0.21) & (u < 0.93)]}
        for name, (n, mean) in {"chat": (80, 0.75), "safety": (60, 0.95)}.items():
            probabilities = rng.beta(2 * mean, 2 * (1 - mean), size=n)
            baseline[name], candidate[name] = (list((rng.random(n) < probabilities).astype(float)) for _ in "bc")
        result = decide(make_report(baseline), make_report(candidate))
        math = next(row for row in result["categories"] if row["name"] == "math")
        blocked += math["status"] == "block"
        by_letters += math["grade_drop"] > 1 and math["p_adjusted"] < 0.05
    print(f"0.92 -> 0.72 on 100 items: blocked {blocked}/300 (grade rule alone: {by_letters}/300)")
    assert by_letters <= 285 and blocked >= 285


def test_score_drop_rule_boundary_one_grade_width_passes_more_blocks():
    """0.92 -> 0.82 (A -> B, exactly 10 points, 10 vs 0 discordant, p = 0.002) is the one grade
    max_grade_drop allows: pass. 0.92 -> 0.81 (A -> B, 11 points) is more than one grade width: block."""
    base = {"math": ones_then_zeros(100, 92), **{f"big{k}": ones_then_zeros(100, 50) for k in range(2)}}
    exactly = decide(make_report(base), make_report({**base, "math": flip(base["math"], 10)}))
    row = next(r for r in exactly["categories"] if r["name"] == "math")
    assert row["p_adjusted"] < 0.05 and row["grade_drop"] == 1 and row["status"] == "pass"
    assert category_reasons(exactly) == []  # (the overall rule blocks: 10 of 300 items lost)
    more = decide(make_report(base), make_report({**base, "math": flip(base["math"], 11)}))
    row = next(r for r in more["categories"] if r["name"] == "math")
    assert row["grade_drop"] == 1 and row["status"] == "block"
    assert category_reasons(more) and "'math' dropped 0.110, more than max_grade_drop=1 grade width" in \
        category_reasons(more)[0]
    # not significant, it is silent: 0.95 -> 0.80 on 20 items (A -> B, 15 points, 4 vs 1, p = 0.375)
    small = {"edge": ones_then_zeros(20, 19), **{f"big{k}": ones_then_zeros(100, 50) for k in range(2)}}
    quiet = decide(make_report(small), make_report({**small, "edge": flip(small["edge"], 4, 1)}))
    edge = next(r for r in quiet["categories"] if r["name"] == "edge")
    assert (edge["baseline_grade"], edge["candidate_grade"], edge["p_value"]) == ("A", "B", pytest.approx(0.375))
    assert quiet["decision"] == "promote" and edge["status"] == "pass" and quiet["warnings"] == []


def test_score_drop_rule_keeps_the_grade_rule_reasons_and_respects_max_grade_drop():
    base = {"math": ones_then_zeros(100, 92)}
    cand = {"math": flip(base["math"], 25)}  # 0.67: A -> D, three grades
    result = decide(make_report(base), make_report(cand))
    assert [r for r in result["reasons"] if "'math'" in r and "fell 3 grades" in r]
    assert not [r for r in result["reasons"] if "grade width" in r]  # one finding per category
    lenient = decide(make_report(base), make_report(cand), GatePolicy(max_grade_drop=3))
    assert [r for r in lenient["reasons"] if r.startswith("overall")] == lenient["reasons"]  # 25 points < 3 widths


# ---------------------------------------------------------------------------------------------------------
# Suite sizing in the gate report (issue 16)


def test_rows_carry_sizing_and_an_underpowered_category_warns_without_blocking():
    base = {"qa": ones_then_zeros(100, 95), "math": ones_then_zeros(400, 320), "chat": [0.85] * 30}
    result = decide(make_report(base), make_report(base))
    assert result["decision"] == "promote" and result["warnings"] == []
    rows = {row["name"]: row for row in result["categories"]}
    assert rows["qa"]["one_grade_detectable"] is False and rows["qa"]["items_for_one_grade"] == 156
    assert rows["qa"]["detectable_drop"] == pytest.approx(0.1327)
    assert rows["math"]["one_grade_detectable"] is True and rows["math"]["detectable_drop"] < 0.10
    assert rows["chat"]["detectable_drop"] is None and rows["chat"]["one_grade_detectable"] is None  # graded
    assert all(row["enforced"] for row in rows.values())
    [warning] = result["suite_warnings"]
    assert warning.startswith("category 'qa' (100 items) cannot detect a one-grade drop with 80% power")
    assert "about 156 items" in warning


def test_small_category_says_the_suite_is_too_small_to_enforce_the_rule():
    """A -> C on 16 items: a warning, which now says why (and the suite warning, how many items)."""
    base = {**_balanced_noise(), "tiny": ones_then_zeros(16, 15)}
    cand = {name: flip(v, 6, 6) for name, v in base.items()}
    cand["tiny"] = flip(base["tiny"], 3)  # 12/16 = 0.75, C
    result = decide(make_report(base), make_report(cand))
    tiny = next(r for r in result["categories"] if r["name"] == "tiny")
    assert tiny["grade_drop"] == 2 and tiny["status"] == "warn" and tiny["enforced"] is False
    assert any("'tiny' fell 2 grades" in w and "too small to enforce the rule" in w for w in result["warnings"])
    [size] = [w for w in result["suite_warnings"] if "'tiny'" in w]
    assert "fewer than min_items=20" in size and "too small to enforce" in size
    assert f"about {tiny['items_for_one_grade']} items" in size


def test_cli_prints_the_suite_warnings(tmp_path):
    base = _write(tmp_path / "base.json", make_report({"a": ones_then_zeros(100, 95)}))
    result = CliRunner().invoke(_app(), ["gate", str(base), str(base)])
    assert result.exit_code == 0, result.output
    assert "cannot detect a one-grade drop" in result.stdout
