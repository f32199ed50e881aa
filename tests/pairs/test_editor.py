"""The editor strategy against a real OpenAI-compatible server on 127.0.0.1, and a local tiny model."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from prefgate.errors import InputError
from prefgate.pairs import GoldItem, Skip, build_pairs, read_gold
from prefgate.pairs.editor import DEFAULT_TEMPLATE, HttpEditor, LocalEditor, check_template, fill_template
from tests.pairs.conftest import verify
from tests.pairs.test_construct import cli

SECRET = "sk-test-do-not-leak-1234"


def test_editor_plants_one_error_and_the_verifier_says_wrong(editor_server, monkeypatch):
    monkeypatch.setenv("EDITOR_KEY", SECRET)
    editor = HttpEditor(editor_server.base_url, "editor-model", api_key_env="EDITOR_KEY")
    item = GoldItem("e", "What is the capital of France?", "The capital of France is Paris.")
    [(rejected, detail)] = editor(item, random.Random(0))
    assert rejected == "The capital of France is Lyon."
    assert verify(rejected, "Paris", "contains") == 0.0 and verify(item.answer, "Paris", "contains") == 1.0
    assert detail == {"editor": "editor-model", "url": f"{editor_server.base_url}/chat/completions"}
    request = editor_server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    body = request["body"]
    assert body["model"] == "editor-model" and body["temperature"] == 0 and isinstance(body["seed"], int)
    assert body["messages"] == [{"role": "user", "content": fill_template(DEFAULT_TEMPLATE, item)}]
    assert SECRET not in json.dumps(detail) and SECRET not in json.dumps(editor.describe())


def test_unchanged_or_empty_replies_are_skips(editor_server):
    editor = HttpEditor(editor_server.base_url, "m")
    with pytest.raises(Skip, match="unchanged"):
        editor(GoldItem("x", "Say hi.", "hi"), random.Random(0))
    editor_server.reply = lambda messages: "   "
    with pytest.raises(Skip, match="empty"):
        editor(GoldItem("x", "Say hi.", "hi"), random.Random(0))


def test_http_errors_and_missing_key_are_one_line_input_errors(editor_server, monkeypatch):
    from prefgate import chat

    waits = []
    monkeypatch.setattr(chat, "DEFAULT_RETRY", chat.RetryPolicy(sleep=waits.append))
    item = GoldItem("x", "q", "Paris")
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(InputError, match="NO_SUCH_KEY .* is not set"):
        HttpEditor(editor_server.base_url, "m", api_key_env="NO_SUCH_KEY")(item, random.Random(0))
    editor_server.status = 401
    with pytest.raises(InputError, match="the editor answered HTTP 401"):
        HttpEditor(editor_server.base_url, "m")(item, random.Random(0))
    assert len(editor_server.requests) == 1  # a client error is not retried
    editor_server.status = 503
    with pytest.raises(InputError, match="HTTP 503"):
        HttpEditor(editor_server.base_url, "m")(item, random.Random(0))
    assert len(editor_server.requests) == 6 and waits == [1.0, 2.0, 4.0, 8.0]  # a server error: 5 tries, backoff
    with pytest.raises(InputError, match="cannot reach the editor"):
        HttpEditor("http://127.0.0.1:9/v1", "m", timeout=2)(item, random.Random(0))


def test_template_needs_both_fields_and_leaves_other_braces_alone():
    with pytest.raises(InputError, match=r"must contain \{answer\}"):
        check_template("Fix {prompt}")
    item = GoldItem("x", "f(x) = {x}?", "The set {1, 2}.")
    assert fill_template("Q: {prompt} A: {answer} {other}", item) == "Q: f(x) = {x}? A: The set {1, 2}. {other}"


def test_construct_command_with_the_editor_never_shows_the_key(gold_file, editor_server, tmp_path, monkeypatch):
    monkeypatch.setenv("EDITOR_KEY", SECRET)
    template = tmp_path / "template.txt"
    template.write_text("Plant one error.\n{prompt}\nAnswer:\n{answer}")
    out = tmp_path / "pairs.jsonl"
    result = CliRunner().invoke(cli(), [
        "pairs", "construct", str(gold_file), "--out", str(out), "--strategies", "editor,numeric",
        "--editor-url", editor_server.base_url, "--editor-model", "editor-model", "--editor-api-key-env",
        "EDITOR_KEY", "--editor-template", str(template)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    edited = {r["meta"]["source_id"]: r["rejected"] for r in rows if r["rejection_type"] == "editor"}
    assert edited["ent1"] == "The capital of France is Lyon."
    assert edited["gsm1"].startswith("Natalia sold 46 / 2")
    skipped = (tmp_path / "pairs.skipped.jsonl").read_text()
    assert "the editor returned the answer unchanged" in skipped
    for text in (result.output, out.read_text(), skipped):
        assert SECRET not in text
    assert all(r["body"]["messages"][0]["content"].startswith("Plant one error.") for r in editor_server.requests)


def test_local_editor_batches_through_eval_generation(tiny_dir, one_thread):
    items = read_gold_like([("a", "What is 2 + 2?", "It is 4."), ("b", "Capital of France?", "Paris.")])
    editor = LocalEditor(str(tiny_dir), max_new_tokens=8, device="cpu")
    result = build_pairs(items, [("editor", editor)], seed=0)
    assert set(editor.replies) == {"a", "b"}  # generated in one prepare() call
    assert len(result.pairs) + len(result.skipped) == 2
    assert all(p.meta["detail"] == {"editor": str(tiny_dir)} for p in result.pairs)


def read_gold_like(rows):
    return [GoldItem(rid, prompt, answer) for rid, prompt, answer in rows]


def test_read_gold_is_what_the_editor_sees(gold_file):
    assert fill_template("{prompt}|{answer}", read_gold(gold_file)[6]) == \
        "What is the capital of France?|The capital of France is Paris."
