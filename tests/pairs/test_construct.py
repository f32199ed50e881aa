"""`construct`: seeded and deterministic, content ids, every skip counted, and the command end to end."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from prefgate.commands import pairs as pairs_commands
from prefgate.data import content_id, read_dataset
from prefgate.errors import InputError
from prefgate.pairs import DEFAULT_STRATEGIES, GoldItem, build_pairs, construct, read_gold, resolve_strategies
from tests.pairs.conftest import CHAT_ROWS, write_jsonl

runner = CliRunner()


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(pairs_commands.app, name="pairs")  # as cli.py wires it

    @app.callback()
    def _root() -> None:
        """Keep `pairs` a named group."""

    return app


def as_rows(pairs):
    return [p.to_dict() for p in pairs]


def test_same_seed_same_pairs_other_seed_other_numbers(gold_file):
    items = read_gold(gold_file)
    first = construct(items, list(DEFAULT_STRATEGIES), seed=0)
    assert as_rows(first) == as_rows(construct(items, list(DEFAULT_STRATEGIES), seed=0))
    reordered = construct(items, list(reversed(DEFAULT_STRATEGIES)), seed=0)  # same pairs, other order
    assert sorted(as_rows(first), key=lambda r: r["id"]) == sorted(as_rows(reordered), key=lambda r: r["id"])
    other = construct(items, ["numeric"], seed=1)
    assert {p.id for p in other} != {p.id for p in construct(items, ["numeric"], seed=0)}


def test_a_pair_does_not_depend_on_the_other_items_or_strategies(gold_file):
    items = read_gold(gold_file)
    alone = construct(items[:1], ["numeric"], seed=7)
    together = [p for p in construct(items, ["numeric", "negation"], seed=7) if p.meta["source_id"] == items[0].id
                and p.rejection_type == "numeric"]
    assert as_rows(alone) == as_rows(together)


def test_records_carry_type_detail_category_and_a_content_id(gold_file):
    items = read_gold(gold_file)
    result = build_pairs(items, list(DEFAULT_STRATEGIES), seed=0)
    by_type = {p.rejection_type for p in result.pairs}
    assert by_type == set(DEFAULT_STRATEGIES)
    for pair in result.pairs:
        assert pair.id == content_id(pair.prompt, pair.chosen, pair.rejected)
        source = next(it for it in items if it.id == pair.meta["source_id"])
        assert pair.category == source.category and pair.meta["detail"]
        assert pair.chosen == (source.answer if isinstance(source.prompt, str) else
                               [{"role": "assistant", "content": source.answer}])


def test_message_prompts_give_conversational_pairs(tmp_path):
    items = read_gold(write_jsonl(tmp_path / "chat.jsonl", CHAT_ROWS))
    pairs = construct(items, ["numeric", "negation", "entity_swap"], seed=0)
    assert {p.rejection_type for p in pairs} == {"numeric", "negation", "entity_swap"}
    for pair in pairs:
        assert pair.conversational and pair.prompt == items[0 if pair.meta["source_id"] == "chat1" else 1].prompt
        assert [m["role"] for m in pair.chosen] == ["assistant"] == [m["role"] for m in pair.rejected]


def test_every_item_a_strategy_cannot_corrupt_is_counted(gold_file):
    items = read_gold(gold_file)
    result = build_pairs(items, list(DEFAULT_STRATEGIES), seed=0)
    summary = result.summary(DEFAULT_STRATEGIES)
    for name in DEFAULT_STRATEGIES:
        made = {p.meta["source_id"] for p in result.pairs if p.rejection_type == name}
        skipped = {s.id for s in result.skipped if s.strategy == name}
        assert made | skipped == {it.id for it in items} and not made & skipped
        assert summary[name]["skipped"] == len(skipped)
    assert summary["choice"] == {"pairs": 5, "skipped": 8, "reasons": {"not a multiple-choice item (no choices)": 8}}


def test_a_pair_two_strategies_make_is_kept_once_and_the_second_is_counted():
    item = GoldItem("x", "What is 2 + 2?", "4")
    same = [("first", lambda it, rng: [("5", {})]), ("second", lambda it, rng: [("5", {}), ("4", {})])]
    result = build_pairs([item], same)
    assert [p.rejection_type for p in result.pairs] == ["first"]
    assert [s.reason for s in result.skipped] == ["same pair as strategy 'first' made",
                                                  "the rejected answer equals the chosen one"]


def test_unknown_or_unconfigured_strategies_are_input_errors():
    with pytest.raises(InputError, match="unknown strategy 'typo'"):
        resolve_strategies(["typo"], [])
    with pytest.raises(InputError, match="needs an editor model"):
        resolve_strategies(["editor"], [])
    with pytest.raises(InputError, match="expected one of any, final, intermediate"):
        resolve_strategies(["numeric"], [], numeric_target="last")


def test_construct_command_writes_pairs_sidecar_and_summary(gold_file, tmp_path):
    out = tmp_path / "out" / "pairs.jsonl"
    result = runner.invoke(cli(), ["pairs", "construct", str(gold_file), "--out", str(out), "--seed", "0"])
    assert result.exit_code == 0, result.output
    ds = read_dataset(out)  # valid preference data
    assert {r.rejection_type for r in ds.records} == set(DEFAULT_STRATEGIES)
    assert f"wrote {len(ds)} pairs to {out}  fingerprint {ds.fingerprint}" in result.stdout
    sidecar = tmp_path / "out" / "pairs.skipped.jsonl"
    skipped = [json.loads(line) for line in sidecar.read_text().splitlines()]
    assert {"id", "strategy", "reason", "where"} <= set(skipped[0])
    assert skipped[0]["where"].endswith("gold.jsonl:1")
    assert "no choices" in result.stdout and "choice" in result.stdout  # the summary table
    again = tmp_path / "again.jsonl"
    runner.invoke(cli(), ["pairs", "construct", str(gold_file), "--out", str(again), "--seed", "0"])
    assert again.read_text() == out.read_text()


def test_construct_command_options(gold_file, tmp_path):
    entities = tmp_path / "entities.json"
    entities.write_text(json.dumps({"play": ["Hamlet", "Macbeth"]}))
    out = tmp_path / "pairs.jsonl"
    result = runner.invoke(cli(), ["pairs", "construct", str(gold_file), "--out", str(out), "--strategies",
                                   "numeric,entity_swap", "--numeric-target", "final", "--entities", str(entities)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["meta"]["detail"]["final"] for r in rows if r["rejection_type"] == "numeric")
    assert {r["meta"]["detail"]["kind"] for r in rows if r["rejection_type"] == "entity_swap"} >= {"city"}


@pytest.mark.parametrize("args, message", [
    (["--strategies", "numeric,typo"], "field 'strategies': unknown strategy 'typo'"),
    (["--strategies", "editor"], "needs an editor model"),
    (["--strategies", "editor", "--editor-url", "http://127.0.0.1:9/v1"], "--editor-url needs --editor-model"),
    (["--strategies", ","], "expected a comma-separated list"),
])
def test_construct_command_bad_options_exit_2(gold_file, tmp_path, args, message):
    result = runner.invoke(cli(), ["pairs", "construct", str(gold_file), "--out", str(tmp_path / "p.jsonl"), *args])
    assert result.exit_code == 2 and message in result.stderr, result.output


def test_construct_command_bad_gold_line_and_nothing_to_make(tmp_path):
    bad = write_jsonl(tmp_path / "gold.jsonl", [{"prompt": "q", "answer": "a"}, {"prompt": "q", "answer": None}])
    result = runner.invoke(cli(), ["pairs", "construct", str(bad), "--out", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {bad}:2: field 'answer': expected a string or a number, got NoneType"
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "Say hi.", "answer": "hi"}])
    result = runner.invoke(cli(), ["pairs", "construct", str(plain), "--out", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 2 and "no pairs made" in result.stderr
    assert len((tmp_path / "p.skipped.jsonl").read_text().splitlines()) == len(DEFAULT_STRATEGIES)


def test_the_shipped_example_gold_file_gives_every_kind_of_pair():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "gold.jsonl"
    items = read_gold(example)
    result = build_pairs(items, list(DEFAULT_STRATEGIES), seed=0)
    assert {p.rejection_type for p in result.pairs} == set(DEFAULT_STRATEGIES)
    assert len({it.category for it in items}) >= 4
