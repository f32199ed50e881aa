"""Gold items: what a line may hold, and one clear line (`path:line: field 'x': ...`) for what it may not."""

from __future__ import annotations

import pytest

from prefgate.data.records import content_id
from prefgate.errors import InputError
from prefgate.pairs import read_gold
from tests.pairs.conftest import CHAT_ROWS, GOLD_ROWS, write_jsonl


def test_reads_every_kind_of_item(gold_file):
    items = read_gold(gold_file)
    assert [it.id for it in items] == [r["id"] for r in GOLD_ROWS]
    arc, hs = items[2], items[3]
    assert (arc.answer, arc.answer_index, arc.choices[0]) == ("whale", 1, "shark")
    assert (hs.answer_index, hs.category) == (0, "commonsense")
    assert items[0].where.endswith("gold.jsonl:1")


def test_message_prompts_and_one_shape_per_file(tmp_path):
    items = read_gold(write_jsonl(tmp_path / "chat.jsonl", CHAT_ROWS))
    assert items[1].prompt_text == "Be brief.\nCapital?"
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [*CHAT_ROWS, {"prompt": "plain", "answer": "x"}])
    with pytest.raises(InputError, match=r"mixed.jsonl:3: field 'prompt': expected a list of messages like the first"):
        read_gold(mixed)


def test_numbers_are_answers_and_ids_are_derived_from_content(tmp_path):
    items = read_gold(write_jsonl(tmp_path / "g.jsonl", [{"prompt": "2+2?", "answer": 4, "note": "kept"}]))
    assert items[0].answer == "4"
    assert items[0].id == content_id("2+2?", "4")
    assert items[0].extra == {"note": "kept"}


@pytest.mark.parametrize("row, field, message", [
    ({"prompt": "q"}, "answer", "missing"),
    ({"answer": "a"}, "prompt", "missing"),
    ({"prompt": "q", "answer": ""}, "answer", "is empty"),
    ({"prompt": "q", "answer": True}, "answer", "expected a string or a number"),
    ({"prompt": "q", "answer": ["a"]}, "answer", "expected a string or a number"),
    ({"prompt": "", "answer": "a"}, "prompt", "is empty"),
    ({"prompt": "q", "answer": 3, "choices": ["x", "y"]}, "answer", "out of range"),
    ({"prompt": "q", "answer": "z", "choices": ["x", "y"]}, "answer", "index of the right choice"),
    ({"prompt": "q", "answer": 0, "choices": ["x"]}, "choices", "at least two"),
    ({"prompt": "q", "answer": 0, "choices": ["x", "x"]}, "choices", "same text"),
    ({"prompt": "q", "answer": "a", "category": 3}, "category", "non-empty string"),
    ({"prompt": "q", "answer": "a", "id": ""}, "id", "non-empty string or integer"),
])
def test_a_bad_line_is_one_line_naming_file_line_and_field(tmp_path, row, field, message):
    path = write_jsonl(tmp_path / "gold.jsonl", [{"prompt": "ok", "answer": "fine"}, row])
    with pytest.raises(InputError) as err:
        read_gold(path)
    text = str(err.value)
    assert text.startswith(f"{path}:2: field '{field}': ")
    assert message in text and "\n" not in text


def test_file_level_errors(tmp_path):
    with pytest.raises(InputError, match="duplicate id 'a'"):
        read_gold(write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "prompt": "q", "answer": "x"},
                                                     {"id": "a", "prompt": "r", "answer": "y"}]))
    with pytest.raises(InputError, match="invalid JSON"):
        read_gold(write_jsonl(tmp_path / "j.jsonl", ["{not json"]))
    with pytest.raises(InputError, match="empty"):
        read_gold(write_jsonl(tmp_path / "e.jsonl", []))
    with pytest.raises(InputError, match="expected a .jsonl"):
        read_gold(tmp_path / "gold.csv")
