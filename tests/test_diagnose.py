"""Token-level diagnosis on tiny models: per-token log-probs, the first difference, segments, report, CLI, hook."""

from __future__ import annotations

import json
import math

import pytest
import torch
import typer

from prefgate.commands.diagnose import diagnose as diagnose_command
from prefgate.data import PairTokenizer, read_dataset
from prefgate.diagnose import (
    PROBE_METRICS,
    ShiftProbe,
    diagnose,
    first_difference,
    pair_diagnosis,
    segment_means,
)
from prefgate.lm.load import load_model
from prefgate.lm.logps import completion_logps, token_logps
from prefgate.report.diagnose import diagnose_html
from tests.conftest import write_jsonl

# Tokenised by the tiny BPE as ' The',' capital',' of',' France',' is',' ' then 'Pa','ris','.' (chosen) and
# 'R','o','me','.' (rejected), plus EOS: the first difference is completion token 6, with 3 chosen tokens after.
KNOWN = {"id": "france", "prompt": "Question: What is the capital of France?\nAnswer:",
         "chosen": " The capital of France is Paris.", "rejected": " The capital of France is Rome.",
         "category": "factual"}
KNOWN_INDEX, KNOWN_CHOSEN_TOKENS = 6, 10


def _pairs() -> list[dict]:
    rows = [KNOWN]
    rows += [{"id": f"sum-{i}", "prompt": f"Question: What is {i} plus 2?\nAnswer:", "chosen": f" {i + 2}.",
              "rejected": f" {i + 3}.", "category": "math"} for i in range(1, 5)]
    rows.append({"id": "far", "prompt": "Say something.", "chosen": " A spider has eight legs.",
                 "rejected": " No.", "category": "other"})
    rows.append({"id": "prefix", "prompt": "Say it.", "chosen": " red", "rejected": " red blue"})
    return rows


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    from prefgate.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("policy"), seed=1)


@pytest.fixture()
def pairs_path(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", _pairs())


# -- pure pieces ------------------------------------------------------------------------------------------


def test_first_difference():
    assert first_difference([1, 2, 3], [1, 2, 4]) == 2
    assert first_difference([9], [1]) == 0
    assert first_difference([1, 2], [1, 2, 3]) == 2  # a prefix: the shorter length
    assert first_difference([1, 2, 3], [1]) == 1
    assert first_difference([1, 2], [1, 2]) is None
    assert first_difference([], []) is None
    assert first_difference([], [5]) == 0


def test_segment_means_by_hand():
    shift = [1.0, 3.0, -2.0, -4.0, -5.0]
    assert segment_means(shift, 2) == {"before": 2.0, "at": -2.0, "after": -4.5}
    assert segment_means(shift, 0) == {"before": None, "at": 1.0, "after": -2.0}
    assert segment_means(shift, 4) == {"before": -0.5, "at": -5.0, "after": None}
    assert segment_means(shift, 5) == {"before": -1.4, "at": None, "after": None}  # chosen is a prefix
    assert segment_means(shift, None) == {"before": -1.4, "at": None, "after": None}  # identical answers


def test_pair_diagnosis_by_hand():
    # chosen [7, 8, 9, 10] vs rejected [7, 5, 6]: first difference at 1.
    # chosen shift = policy - reference = [0.5, -1.0, -2.0, -3.0] -> before 0.5, at -1.0, after -2.5
    # rejected shift = [0.0, -4.0, 1.0]                            -> before 0.0, at -4.0, after 1.0
    out = pair_diagnosis([7, 8, 9, 10], [7, 5, 6], [-1.0, -2.0, -3.0, -4.0], [-1.5, -1.0, -1.0, -1.0],
                         [-1.0, -5.0, -1.0], [-1.0, -1.0, -2.0])
    assert out == {"first_difference": 1, "n_chosen": 4, "n_rejected": 3, "before": 0.5, "at": -1.0,
                   "after": -2.5, "rejected": {"before": 0.0, "at": -4.0, "after": 1.0}}
    with pytest.raises(ValueError, match="aligned"):
        pair_diagnosis([1, 2], [1], [0.0], [0.0], [0.0], [0.0])


def test_token_logps_sum_to_completion_logps_and_do_not_depend_on_batching(tiny_dir, tiny_tok):
    model = load_model(tiny_dir, device="cpu").model
    tok = PairTokenizer(tiny_tok, max_length=64)
    pairs = [tok.pair(rec) for rec in read_dataset_rows(_pairs())]
    prompts = [p.prompt_ids for p in pairs]
    completions = [p.chosen_ids for p in pairs]
    batched = token_logps(model, prompts, completions, pad_id=tiny_tok.pad_token_id, batch_size=8)
    single = token_logps(model, prompts, completions, pad_id=tiny_tok.pad_token_id, batch_size=1)
    sums, counts = completion_logps(model, prompts, completions, pad_id=tiny_tok.pad_token_id)
    assert [len(x) for x in batched] == [len(c) for c in completions] == counts.tolist()
    for a, b, total in zip(batched, single, sums.tolist(), strict=True):
        assert a == pytest.approx(b, abs=1e-5)
        assert sum(a) == pytest.approx(total, abs=1e-4)
        assert all(v <= 0 and math.isfinite(v) for v in a)
    assert token_logps(model, [[1]], [[]]) == [[]]
    with pytest.raises(ValueError, match="at least one token"):
        token_logps(model, [[]], [[5]])


def read_dataset_rows(rows):
    from prefgate.data import parse_row

    return [parse_row(r, where="test") for r in rows]


# -- the report ---------------------------------------------------------------------------------------------


def test_known_pair_first_difference_and_zero_shift_against_itself(tiny_dir, tiny_tok, pairs_path):
    model = load_model(tiny_dir, device="cpu").model
    report = diagnose(model, model, read_dataset(pairs_path), tiny_tok, 64)
    assert report["kind"] == "diagnose" and report["version"] == 1 and report["dataset"]["n_records"] == 7
    assert {"created", "prefgate_version", "model", "reference", "summary", "buckets", "pairs"} <= set(report)
    france = next(p for p in report["pairs"] if p["id"] == "france")
    assert france["first_difference"] == KNOWN_INDEX and france["n_chosen"] == KNOWN_CHOSEN_TOKENS
    assert "".join(france["chosen_tokens"][KNOWN_INDEX:KNOWN_INDEX + 2]) == "Paris"
    assert france["before"] == france["at"] == france["after"] == 0.0
    assert report["summary"]["after"] == 0.0 and report["summary"]["n"] == 7
    prefix = next(p for p in report["pairs"] if p["id"] == "prefix")
    red = tiny_tok(" red", add_special_tokens=False)["input_ids"]
    assert prefix["first_difference"] == len(red)  # " red</s>" vs " red blue</s>": EOS meets " b"
    assert sum(b["n"] for b in report["buckets"]) == 7
    assert report["buckets"][-1]["edit_distance"] == [0.5, 1.0]
    json.dumps(report)  # JSON-serialisable


def test_segments_agree_with_prefix_log_probs(tiny_dir, policy_dir, tiny_tok, pairs_path):
    """The before / after means, recomputed from summed log-probs of completion prefixes (train.logps)."""
    reference = load_model(tiny_dir, device="cpu").model
    policy = load_model(policy_dir, device="cpu").model
    report = diagnose(policy, reference, read_dataset(pairs_path), tiny_tok, 64)
    france = next(p for p in report["pairs"] if p["id"] == "france")
    tp = PairTokenizer(tiny_tok, max_length=64).pair(read_dataset_rows([KNOWN])[0])
    k, n = KNOWN_INDEX, KNOWN_CHOSEN_TOKENS

    def prefix_shift(length: int) -> float:
        cut = [tp.chosen_ids[:length]]
        pol = completion_logps(policy, [tp.prompt_ids], cut, pad_id=tiny_tok.pad_token_id)[0]
        ref = completion_logps(reference, [tp.prompt_ids], cut, pad_id=tiny_tok.pad_token_id)[0]
        return float(pol - ref)

    assert france["before"] == pytest.approx(prefix_shift(k) / k, abs=1e-4)
    assert france["at"] == pytest.approx(prefix_shift(k + 1) - prefix_shift(k), abs=1e-4)
    assert france["after"] == pytest.approx((prefix_shift(n) - prefix_shift(k + 1)) / (n - k - 1), abs=1e-4)
    afters = [p["after"] for p in report["pairs"] if p["after"] is not None]
    assert report["summary"]["after"] == pytest.approx(sum(afters) / len(afters))
    low = report["buckets"][1]  # " ... Paris." vs " ... Rome.": distance 5 / 32 = 0.156
    assert low["edit_distance"] == [0.1, 0.2] and low["n"] == 1 and france["edit_distance"] == 0.15625
    assert low["after"] == pytest.approx(france["after"])


def test_unpaired_data_is_refused(tiny_dir, tiny_tok, tmp_path):
    from prefgate.errors import InputError

    model = load_model(tiny_dir, device="cpu").model
    path = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "a", "completion": "b"}])
    with pytest.raises(InputError, match="expected paired"):
        diagnose(model, model, read_dataset(path), tiny_tok, 64)


# -- the trainer hook --------------------------------------------------------------------------------------


def test_shift_probe_matches_diagnose(tiny_dir, policy_dir, tiny_tok, pairs_path):
    from prefgate.losses import LossType
    from prefgate.train.batches import tokenize_dataset
    from prefgate.train.reference import ModelReference

    reference = load_model(tiny_dir, device="cpu").model
    policy = load_model(policy_dir, device="cpu").model
    ds = read_dataset(pairs_path)
    data = tokenize_dataset(ds, tiny_tok, LossType.DPO, max_length=64, max_prompt_length=None)
    probe = ShiftProbe.from_data(ModelReference(reference), data, n_pairs=100, pad_id=tiny_tok.pad_token_id)
    assert len(probe.prompt_ids) == 6  # "prefix" has no chosen token after its difference: left out
    assert set(probe.measure(reference).values()) == {0.0}
    policy.train()
    shifts = probe.measure(policy)
    assert policy.training  # the mode is restored
    report = diagnose(policy, reference, ds, tiny_tok, 64)
    rows = [p for p in report["pairs"] if p["id"] != "prefix"]
    assert shifts[PROBE_METRICS["after"]] == pytest.approx(sum(p["after"] for p in rows) / len(rows), abs=1e-5)
    assert shifts["logps/chosen_shift_before_diff"] < 0 or shifts["logps/chosen_shift_before_diff"] > 0
    few = ShiftProbe.from_data(reference, data, n_pairs=2, seed=3, pad_id=tiny_tok.pad_token_id)
    assert len(few.prompt_ids) == 2
    sft = tokenize_dataset(ds, tiny_tok, LossType.SFT, max_length=64, max_prompt_length=None)
    with pytest.raises(ValueError, match="paired rows"):
        ShiftProbe.from_data(reference, sft)


def test_shift_probe_with_a_lora_policy_scores_the_reference_with_adapters_off(tiny_dir, tiny_tok, pairs_path):
    from peft import LoraConfig, get_peft_model

    from prefgate.losses import LossType
    from prefgate.train.batches import tokenize_dataset
    from prefgate.train.reference import AdapterDisabledReference

    base = load_model(tiny_dir, device="cpu").model
    data = tokenize_dataset(read_dataset(pairs_path), tiny_tok, LossType.DPO, max_length=64, max_prompt_length=None)
    plain = ShiftProbe.from_data(base, data, pad_id=tiny_tok.pad_token_id)
    policy = get_peft_model(load_model(tiny_dir, device="cpu").model, LoraConfig(r=4, target_modules="all-linear"))
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # the policy now differs from the base
    probe = ShiftProbe.from_data(AdapterDisabledReference(policy), data, pad_id=tiny_tok.pad_token_id)
    assert sum(probe.reference_chosen_logps, []) == pytest.approx(sum(plain.reference_chosen_logps, []), abs=1e-5)
    assert probe.measure(policy)[PROBE_METRICS["after"]] != 0.0


# -- HTML and CLI ----------------------------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("diagnose")(diagnose_command)

    @app.command("other")
    def _other() -> None:  # a second command, so `diagnose` stays a sub-command as in the real CLI
        pass

    return app


def test_cli_writes_json_and_html(tiny_dir, policy_dir, pairs_path, tmp_path, runner):
    out, page = tmp_path / "d.json", tmp_path / "d.html"
    result = runner.invoke(_app(), ["diagnose", str(pairs_path), "--model", str(policy_dir), "--reference",
                                    str(tiny_dir), "--json", str(out), "--html", str(page), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "7 pairs; mean change per token" in result.stdout and "after " in result.stdout
    report = json.loads(out.read_text())
    assert report["model"]["path"] == str(policy_dir) and report["reference"]["path"] == str(tiny_dir)
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 2 and "Token-level log-prob diagnosis" in html
    again = diagnose_html(report, pair_id="france")
    assert "pair france" not in again  # the title is inside the PNG, not the page
    assert "Chosen by --pair." in again


def test_cli_bad_input_exits_2(tiny_dir, pairs_path, tmp_path, runner):
    args = ["diagnose", str(tmp_path / "missing.jsonl"), "--model", str(tiny_dir), "--reference", str(tiny_dir)]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 2 and "missing.jsonl" in result.stderr
    result = runner.invoke(_app(), ["diagnose", str(pairs_path), "--model", str(tiny_dir), "--reference",
                                    str(tiny_dir), "--html", str(tmp_path / "x.html"), "--pair", "nope"])
    assert result.exit_code == 2 and "no pair with id 'nope'" in result.stderr


def test_probe_is_deterministic_for_a_seed(tiny_dir, tiny_tok, pairs_path):
    from prefgate.losses import LossType
    from prefgate.train.batches import tokenize_dataset

    model = load_model(tiny_dir, device="cpu").model
    data = tokenize_dataset(read_dataset(pairs_path), tiny_tok, LossType.DPO, max_length=64, max_prompt_length=None)
    a = ShiftProbe.from_data(model, data, n_pairs=3, seed=7, pad_id=tiny_tok.pad_token_id)
    b = ShiftProbe.from_data(model, data, n_pairs=3, seed=7, pad_id=tiny_tok.pad_token_id)
    assert a.prompt_ids == b.prompt_ids and torch.allclose(torch.tensor(sum(a.reference_chosen_logps, [])),
                                                           torch.tensor(sum(b.reference_chosen_logps, [])))


# -- the must-show measurement, in small ---------------------------------------------------------------------


@pytest.mark.slow
def test_after_sft_dpo_lowers_the_chosen_tokens_after_the_difference_and_dpop_does_not(tiny_dir, tmp_path):
    """Low-edit pairs (one digit differs), an SFT'd tiny model, then 12 steps of DPO and of DPOP at lr 0.01
    (docs/diagnose.md has the full measurement): DPO's after-difference chosen shift is strongly negative,
    DPOP's is not. Measured: DPO -2.58, DPOP +0.18 nats per token."""
    from prefgate.config import load_train_config
    from prefgate.train.loop import train

    rows = [{"prompt": f"Q{i}: say a number\nA:", "chosen": f" {i}1 {i}1 {i}1.", "rejected": f" {i}1 {i}1 {i}2."}
            for i in range(12)]
    data = write_jsonl(tmp_path / "low.jsonl", rows)

    def run(model, out, **extra):
        raw = {"model": {"name_or_path": str(model)}, "data": {"train": str(data), "max_length": 64}, "batch_size": 4,
               "optim": {"lr": 0.01, "schedule": "constant"}, "memory_probe": False, "output_dir": str(out), **extra}
        return train(load_train_config(None, **raw), show_progress=False).run_dir

    sft = run(tiny_dir, tmp_path / "sft", max_steps=40, loss={"type": "sft"}) / "model"
    after = {}
    for loss in ("dpo", "dpop"):
        policy = load_model(run(sft, tmp_path / loss, max_steps=12, loss={"type": loss}), device="cpu")
        reference = load_model(sft, device="cpu").model
        report = diagnose(policy.model, reference, read_dataset(data), policy.tokenizer, 64)
        after[loss] = report["summary"]["after"]
    assert after["dpo"] < -1.0 and after["dpop"] > -0.5, after
