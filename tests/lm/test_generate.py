"""Generation: batched left-padded greedy equals one prompt at a time; prompts, system prompts, stops."""

from __future__ import annotations

import pytest

from prefgate.errors import InputError
from prefgate.lm.generate import GenerationConfig, generate, generate_ids, prompt_ids, trim_stop, with_system_prompt

PROMPTS = ["Question: What is 12 plus 30? Answer:", "Hi", [{"role": "user", "content": "How many legs?"}],
           "The quick brown fox jumps over the lazy dog. A wrong answer is still an answer."]


@pytest.fixture(scope="module")
def loaded(tiny_dir):
    from prefgate.lm.load import load_model

    return load_model(tiny_dir)


def test_batched_generation_equals_one_prompt_at_a_time(loaded):
    batched = generate_ids(loaded.model, loaded.tokenizer, PROMPTS, GenerationConfig(max_new_tokens=6, batch_size=4),
                           progress=False)
    single = generate_ids(loaded.model, loaded.tokenizer, PROMPTS, GenerationConfig(max_new_tokens=6, batch_size=1),
                          progress=False)
    assert [g.completion_ids for g in batched] == [g.completion_ids for g in single]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(0 < len(g.completion_ids) <= 6 for g in batched)


def test_prompt_rendering_with_and_without_system_prompt(loaded):
    tok = loaded.tokenizer
    assert prompt_ids(tok, "Hi")[0] == tok.bos_token_id
    chat = tok.decode(prompt_ids(tok, [{"role": "user", "content": "Hi"}], "Be brief."))
    assert chat.index("<|system|>\nBe brief.") < chat.index("<|user|>\nHi") and chat.endswith("<|assistant|>\n")
    assert with_system_prompt("Hi", "Be brief.") == "Be brief.\n\nHi"
    merged = with_system_prompt([{"role": "system", "content": "Rules."}, {"role": "user", "content": "x"}], "S")
    assert merged[0] == {"role": "system", "content": "S\n\nRules."} and len(merged) == 2


def test_system_prompt_changes_what_the_model_sees(loaded):
    config = GenerationConfig(max_new_tokens=4)
    plain = generate_ids(loaded.model, loaded.tokenizer, ["Hi"], config, progress=False)[0]
    prompted = generate_ids(loaded.model, loaded.tokenizer, ["Hi"], GenerationConfig(max_new_tokens=4,
                            system_prompt="You are terse."), progress=False)[0]
    assert len(prompted.prompt_ids) > len(plain.prompt_ids)


def test_stop_strings_are_trimmed_after_decoding(loaded):
    assert trim_stop("42\nQuestion: more", ["\nQuestion:"]) == "42"
    assert trim_stop("a###b<end>", ["<end>", "###"]) == "a"
    assert trim_stop("abc", ["", "z"]) == "abc"
    full = generate(loaded.model, loaded.tokenizer, ["Hi"], GenerationConfig(max_new_tokens=8), progress=False)[0]
    if len(full) > 2:
        stop = full[1:3]
        cut = generate(loaded.model, loaded.tokenizer, ["Hi"], GenerationConfig(max_new_tokens=8, stop=(stop,)),
                       progress=False)[0]
        assert cut == full[: full.find(stop)]


def test_message_prompts_need_a_chat_template(loaded):
    class NoTemplate:
        chat_template = None

    with pytest.raises(InputError, match="no chat template"):
        prompt_ids(NoTemplate(), [{"role": "user", "content": "x"}])
