"""Tokenisation: exact prompt/completion boundary, EOS, chat templates, truncation recorded per side."""

from __future__ import annotations

import pytest

from prefgate.data import PairTokenizer, PreferencePair
from prefgate.errors import InputError


def pair(prompt, chosen, rejected, rid="p"):
    return PreferencePair(id=rid, prompt=prompt, chosen=chosen, rejected=rejected)


def test_standard_text_boundary_is_exact_and_eos_appended(tiny_tok):
    tp = PairTokenizer(tiny_tok).pair(pair("Human: hi\n\nAssistant:", " hello there", " go away"))
    full = tiny_tok("Human: hi\n\nAssistant: hello there")["input_ids"]
    assert tp.prompt_ids + tp.chosen_ids == full + [tiny_tok.eos_token_id]
    assert tp.prompt_ids[0] == tiny_tok.bos_token_id and tp.boundary_exact
    assert tiny_tok.decode(tp.rejected_ids, skip_special_tokens=True) == " go away"
    assert not (tp.prompt_truncated or tp.chosen_truncated or tp.rejected_truncated)


def test_chat_template_prompt_ends_with_generation_prompt(tiny_tok):
    msgs = [{"role": "user", "content": "What is 2+2?"}]
    tp = PairTokenizer(tiny_tok).pair(pair(msgs, [{"role": "assistant", "content": "4"}],
                                           [{"role": "assistant", "content": "5"}]))
    assert tiny_tok.decode(tp.prompt_ids) == "<s><|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n"
    assert tiny_tok.decode(tp.chosen_ids) == "4<|end|>\n"  # the template ends the turn: no EOS (TRL's rule)
    assert tp.prompt_ids.count(tiny_tok.bos_token_id) == 1  # the template's BOS is not doubled


def test_inexact_boundary_falls_back_to_separate_tokenisation(tiny_tok):
    # "Par" + "is" merge into one token when tokenised together, so the prompt is not a token prefix.
    prompt, completion = "The capital of France is Par", "is."
    joint = tiny_tok(prompt + completion)["input_ids"]
    alone = tiny_tok(prompt)["input_ids"]
    assert joint[: len(alone)] != alone, "the fixture must straddle a merge"
    tp = PairTokenizer(tiny_tok).pair(pair(prompt, completion, " Lyon."))
    assert not tp.boundary_exact
    assert tp.prompt_ids == alone
    assert tiny_tok.decode(tp.chosen_ids, skip_special_tokens=True) == "is."


def test_truncation_hitting_one_side_is_recorded(tiny_tok):
    prompt = "Human: tell me\n\nAssistant:"
    n_prompt = len(tiny_tok(prompt)["input_ids"])
    tok = PairTokenizer(tiny_tok, max_length=n_prompt + 6)
    tp = tok.pair(pair(prompt, " a very long answer that goes on and on and on", " no"))
    assert tp.chosen_truncated and not tp.rejected_truncated and tp.asymmetric_truncation
    assert len(tp.prompt_ids) + len(tp.chosen_ids) == n_prompt + 6
    assert tp.chosen_ids[-1] != tiny_tok.eos_token_id  # a cut answer has no EOS
    assert tp.rejected_ids[-1] == tiny_tok.eos_token_id


def test_prompt_truncation_keeps_the_end(tiny_tok):
    prompt = "one two three four five six seven eight nine ten\n\nAssistant:"
    full = tiny_tok(prompt)["input_ids"]
    tp = PairTokenizer(tiny_tok, max_length=64, max_prompt_length=5).pair(pair(prompt, " a", " b"))
    assert tp.prompt_truncated and tp.prompt_ids == full[-5:]


def test_prompt_longer_than_max_length_leaves_room_for_one_token(tiny_tok):
    tp = PairTokenizer(tiny_tok, max_length=4).pair(pair("a long prompt that is long", " x", " y"))
    assert len(tp.prompt_ids) == 3 and len(tp.chosen_ids) == 1 and tp.prompt_truncated
    assert tp.chosen_truncated and tp.rejected_truncated and not tp.asymmetric_truncation


def test_conversational_data_needs_a_chat_template(tiny_tok):
    import copy

    tok = copy.deepcopy(tiny_tok)
    tok.chat_template = None
    with pytest.raises(InputError, match="field 'tokenizer': the data is conversational but the tokenizer has no chat"):
        PairTokenizer(tok).pair(pair([{"role": "user", "content": "q"}], [{"role": "assistant", "content": "a"}],
                                     [{"role": "assistant", "content": "b"}]))


def test_unpaired_example_and_bad_lengths(tiny_tok):
    from prefgate.data import UnpairedExample

    ex = PairTokenizer(tiny_tok).example(UnpairedExample(id="u", prompt="Q:", completion=" yes", label=False))
    assert ex.label is False and ex.completion_ids[-1] == tiny_tok.eos_token_id
    with pytest.raises(InputError, match="field 'max_length': must be at least 2"):
        PairTokenizer(tiny_tok, max_length=1)
