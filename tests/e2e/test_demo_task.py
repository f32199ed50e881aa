"""The demo's toy task, tokenizer and graders (fast)."""

from __future__ import annotations

from prefgate.demo.graders import looks_bigger, oracle_preference
from prefgate.demo.model import char_tokenizer
from prefgate.demo.pairsets import far_wrong, one_digit
from prefgate.demo.task import CATEGORIES, Problem, split_prompts


def test_split_is_disjoint_seeded_and_complete():
    from itertools import combinations

    from prefgate.demo.task import all_problems

    split = split_prompts(0)
    for cat in CATEGORIES:
        sides = [{p.prompt for p in getattr(split, s)[cat]} for s in ("train", "pref", "dev", "test")]
        assert all(not (a & b) for a, b in combinations(sides, 2))
        assert sum(map(len, sides)) == len(all_problems(cat))
        assert (len(split.test[cat]), len(split.dev[cat]), len(split.pref[cat])) == (100, 50, 250)
    assert split_prompts(0).test == split.test
    assert split_prompts(1).test != split.test


def test_dev_suite_adds_only_prompts_sft_never_saw():
    """The default dev suite: the dev split plus every train prompt the SFT recipe did not draw (add 1,600, max
    1,500; sub and mul have none to spare), none of them a test, pref or SFT prompt."""
    from prefgate.demo.settings import SFT_PER_CATEGORY
    from prefgate.demo.task import dev_problems, sft_records, unseen_train

    split = split_prompts(0)
    unseen = unseen_train(split, per_category=SFT_PER_CATEGORY)
    assert {cat: len(v) for cat, v in unseen.items()} == {"add": 1600, "sub": 0, "mul": 0, "max": 1500}
    sft = {r["prompt"] for r in sft_records(split, per_category=SFT_PER_CATEGORY)}
    held = {p.prompt for side in ("test", "pref") for p in split.flat(side)}
    dev = dev_problems(split, add_unseen=True, sft_per_category=SFT_PER_CATEGORY)
    assert len(dev) == 200 + 3100 and len({p.prompt for p in dev}) == len(dev)
    assert not ({p.prompt for p in dev} & (sft | held))
    assert dev_problems(split, add_unseen=False, sft_per_category=SFT_PER_CATEGORY) == split.flat("dev")
    assert {p.prompt for p in unseen["add"]} <= {p.prompt for p in split.train["add"]}


def test_problems_have_checkable_answers():
    assert (Problem("add", 12, 34).prompt, Problem("add", 12, 34).answer) == ("12+34=", "46")
    assert (Problem("sub", 57, 34).prompt, Problem("sub", 57, 34).answer) == ("57-34=", "23")
    assert (Problem("mul", 23, 7).prompt, Problem("mul", 23, 7).answer) == ("23*7=", "161")
    assert (Problem("max", 12, 34).prompt, Problem("max", 12, 34).answer) == ("max(12,34)=", "34")


def test_char_tokenizer_round_trips_one_token_per_character(tmp_path):
    from transformers import AutoTokenizer

    char_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    ids = tok("max(12,34)=46.")["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == 1 + len("max(12,34)=46.")
    assert tok.decode(ids, skip_special_tokens=True) == "max(12,34)=46."


def test_graders():
    assert looks_bigger("1610", None) > looks_bigger("161", None) > looks_bigger("151", None) > looks_bigger("99", None)
    assert oracle_preference("46.", "46", "46") == "tie"
    assert oracle_preference("47.", "46", "46") == "rejected"
    assert oracle_preference("46", "47", "46") == "chosen"


def test_constructed_wrong_answers():
    import random

    from prefgate.pairs import GoldItem

    item = GoldItem(id="x", prompt="23*7=", answer="161")
    for seed in range(50):
        (wrong, detail), = one_digit(item, random.Random(seed))
        assert wrong != "161" and len(wrong) == 3 and sum(a != b for a, b in zip(wrong, "161", strict=True)) == 1
        (far, _), = far_wrong(item, random.Random(seed))
        assert all(a != b for a, b in zip(far, "161", strict=False)) and far != "161"


def test_from_scratch_path_trains_sft_with_prefgate_train(tmp_path, monkeypatch):
    """`--from-scratch` on a tiny budget: SFT data, random init, sft.yaml, and a completed run folder."""
    import json

    from prefgate.config import load_train_config
    from prefgate.demo import settings, stages

    monkeypatch.setattr(settings, "SFT_PER_CATEGORY", 16)
    monkeypatch.setattr(settings, "SFT_CONFIG", {**settings.SFT_CONFIG, "max_steps": 2, "batch_size": 8,
                                                 "checkpoint_every": None})
    layout = stages.Layout(tmp_path)
    run = stages.train_sft(layout, split_prompts(0), show_progress=False)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["loss"]["type"] == "sft" and manifest["steps"] == 2
    assert manifest["datasets"]["train"]["n_records"] == 64
    assert (run / "model" / "model.safetensors").is_file()
    assert load_train_config(layout.data / "sft.yaml").max_steps == 2  # the written config is the one it ran


def test_shipped_checkpoint_is_a_registrable_run(tmp_path):
    from prefgate.demo import stages
    from prefgate.registry import Registry

    run = stages.install_checkpoint(tmp_path / "sft")
    assert Registry(tmp_path / "home").add(run)["outcome"] == "added"  # every artifact matches its sha256
