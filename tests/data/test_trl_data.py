"""TRL's data shapes read unchanged, and tokenised as TRL 1.16 tokenises them.

The shapes: H4's ultrafeedback (`prompt` string + message lists that hold it), plain-text implicit prompts,
`{"messages": [...]}`, content-part lists, `tool_calls` messages and a `tools` column. The token ids are compared
with TRL's own `DPOTrainer._prepare_dataset` on a ChatML template (TRL's `qwen2_5.jinja`, whose EOS `<|im_end|>`
also ends every turn), where appending EOS after the template's turn end would give `<|im_end|>\\n<|im_end|>`.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from prefgate.data import PairTokenizer, UnpairedExample, read_dataset, write_records
from prefgate.data.implicit import split_implicit
from prefgate.errors import InputError
from tests.conftest import write_jsonl

SYSTEM = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "What is the weather in Paris?"}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
CALL = {"role": "assistant", "content": None,
        "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
TOOL_REPLY = {"role": "tool", "content": "18C, sunny"}
H4_ROW = {  # the shape of HuggingFaceH4/ultrafeedback_binarized
    "prompt": "Capital of France?", "prompt_id": "abc", "score_chosen": 9.0, "score_rejected": 3.0,
    "chosen": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}],
    "rejected": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Lyon."}],
    "messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}],
}


@pytest.fixture(scope="module")
def chatml_tok():
    """The tiny BPE with ChatML's special tokens, EOS `<|im_end|>` (as Qwen instruct models) and TRL's Qwen2.5
    chat template (tools and tool calls included)."""
    import trl

    from prefgate.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    tok.add_special_tokens({"eos_token": "<|im_end|>", "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()
    return tok


def trl_ids(rows: list[dict], tok) -> list[tuple[list[int], list[int], list[int]]]:
    """(prompt_ids, chosen_ids, rejected_ids) of each row, by TRL 1.16's DPOTrainer dataset preparation."""
    from datasets import Dataset
    from trl import DPOTrainer

    args = SimpleNamespace(dataset_num_proc=None, max_length=None, truncation_mode="keep_start")
    out = DPOTrainer._prepare_dataset(SimpleNamespace(_tokenizer=tok), Dataset.from_list(rows), tok, args, "train")
    return [(r["prompt_ids"], r["chosen_ids"], r["rejected_ids"]) for r in out]


def our_ids(tmp_path, rows: list[dict], tok) -> list[tuple[list[int], list[int], list[int]]]:
    ds = read_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    pairs = [PairTokenizer(tok).pair(rec) for rec in ds.records]
    return [(p.prompt_ids, p.chosen_ids, p.rejected_ids) for p in pairs]


# -- tokenisation against TRL --------------------------------------------------------------------------------------

def test_chatml_ids_equal_trls_and_eos_is_not_doubled(tmp_path, chatml_tok):
    rows = [
        {"prompt": [SYSTEM, {"role": "user", "content": "2+2?"}], "chosen": [{"role": "assistant", "content": "4"}],
         "rejected": [{"role": "assistant", "content": "5"}]},
        {"prompt": [{"role": "user", "content": "Capital of France?"}],
         "chosen": [{"role": "assistant", "content": "Paris."}], "rejected": [{"role": "assistant", "content": ""}]},
    ]
    ours = our_ids(tmp_path, rows, chatml_tok)
    assert ours == trl_ids(rows, chatml_tok)
    chosen = chatml_tok.decode(ours[0][1])
    assert chosen == "4<|im_end|>\n" and "<|im_end|>\n<|im_end|>" not in chosen
    assert chatml_tok.decode(ours[0][0]).endswith("<|im_start|>assistant\n")


def test_plain_text_gets_eos_as_in_trl(tmp_path, chatml_tok):
    rows = [{"prompt": "Human: hi\n\nAssistant:", "chosen": " hello", "rejected": " go away"}]
    ours = our_ids(tmp_path, rows, chatml_tok)
    assert ours == trl_ids(rows, chatml_tok)
    assert ours[0][1][-1] == ours[0][2][-1] == chatml_tok.eos_token_id


def test_h4_shape_tokenises_as_trl_after_its_prompt_extraction(tmp_path, chatml_tok):
    from trl import maybe_extract_prompt

    trl_row = maybe_extract_prompt({k: H4_ROW[k] for k in ("prompt", "chosen", "rejected")})
    assert our_ids(tmp_path, [H4_ROW], chatml_tok) == trl_ids([trl_row], chatml_tok)


def test_tools_and_tool_calls_reach_the_template_as_in_trl(tmp_path, chatml_tok):
    row = {"prompt": [USER], "chosen": [CALL, TOOL_REPLY, {"role": "assistant", "content": "18C and sunny."}],
           "rejected": [{"role": "assistant", "content": "I cannot check the weather."}],
           "tools": json.dumps(TOOLS)}  # TRL json-loads a string column (Arrow cannot hold free-form schemas)
    ours = our_ids(tmp_path, [row], chatml_tok)
    assert ours == trl_ids([row], chatml_tok)
    prompt, chosen = chatml_tok.decode(ours[0][0]), chatml_tok.decode(ours[0][1])
    assert '"name": "get_weather"' in prompt and "<tools>" in prompt  # the schema is rendered in the system turn
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in chosen
    assert "<tool_response>\n18C, sunny\n</tool_response>" in chosen
    without = our_ids(tmp_path, [{k: v for k, v in row.items() if k != "tools"}], chatml_tok)
    assert without[0][0] != ours[0][0]  # without the column the prompt has no tools


def test_content_parts_render_as_their_text(tmp_path, chatml_tok):
    parts = {"role": "user", "content": [{"type": "text", "text": "Capital of "}, {"type": "text", "text": "France?"}]}
    row = {"prompt": [parts], "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "Paris."}]}],
           "rejected": [{"role": "assistant", "content": "Lyon."}]}
    plain = {"prompt": [{"role": "user", "content": "Capital of France?"}],
             "chosen": [{"role": "assistant", "content": "Paris."}], "rejected": row["rejected"]}
    # Qwen2.5's template cannot take part lists (it adds strings to content); joined, they tokenise as TRL does
    # the text.
    assert our_ids(tmp_path, [row], chatml_tok) == trl_ids([plain], chatml_tok)


def test_content_parts_tokenise_as_trl_on_a_template_that_takes_parts(tmp_path, chatml_tok):
    import copy

    import trl

    tok = copy.deepcopy(chatml_tok)  # Qwen2.5-VL's template iterates the parts and renders each text
    tok.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5_vl.jinja").read_text()

    def parts(role, *texts):
        return {"role": role, "content": [{"type": "text", "text": t} for t in texts]}

    row = {"prompt": [parts("user", "Capital of ", "France?")], "chosen": [parts("assistant", "Paris.")],
           "rejected": [parts("assistant", "Ly", "on.")]}
    assert our_ids(tmp_path, [row], tok) == trl_ids([row], tok)  # TRL hands the parts to the template as they are


# -- reading ------------------------------------------------------------------------------------------------------

def test_h4_shape_prompt_is_the_shared_messages(tmp_path):
    from trl import maybe_extract_prompt

    ds = read_dataset(write_jsonl(tmp_path / "h4.jsonl", [H4_ROW]))
    rec = ds.records[0]
    expected = maybe_extract_prompt({k: H4_ROW[k] for k in ("prompt", "chosen", "rejected")})
    assert (rec.prompt, rec.chosen, rec.rejected) == (expected["prompt"], expected["chosen"], expected["rejected"])
    assert rec.extra == {k: H4_ROW[k] for k in ("prompt_id", "score_chosen", "score_rejected", "messages")}
    explicit = {"prompt": expected["prompt"], "chosen": expected["chosen"], "rejected": expected["rejected"],
                **rec.extra}
    assert ds.fingerprint == read_dataset(write_jsonl(tmp_path / "e.jsonl", [explicit])).fingerprint


def test_h4_shape_prompt_string_must_match_a_shared_message(tmp_path):
    row = dict(H4_ROW, prompt="Capital of Spain?")
    with pytest.raises(InputError, match=r"h4\.jsonl:1: field 'prompt': the string 'Capital of Spain\?' is not the "
                                         r"text of any message chosen and rejected share"):
        read_dataset(write_jsonl(tmp_path / "h4.jsonl", [row]))
    answers_only = dict(H4_ROW, chosen=H4_ROW["chosen"][1:], rejected=H4_ROW["rejected"][1:])
    with pytest.raises(InputError, match="field 'prompt': is a string, but chosen and rejected are message lists "
                                         "that start with the answer"):
        read_dataset(write_jsonl(tmp_path / "h4.jsonl", [answers_only]))


@pytest.mark.parametrize(("chosen", "rejected"), [
    ("The sky is blue.", "The sky is green."),
    ("Paris is the capital of France.", "Paris is a city in Texas."),
])
def test_plain_text_implicit_prompt_matches_trl(chosen, rejected):
    from trl import extract_prompt

    expected = extract_prompt({"chosen": chosen, "rejected": rejected})
    assert split_implicit(chosen, rejected) == (expected["prompt"], expected["chosen"], expected["rejected"])


def test_plain_text_implicit_prompt_never_cuts_a_word():
    # TRL would give "The sky is bl" + "ue." / "ack."
    assert split_implicit("The sky is blue.", "The sky is black.") == ("The sky is", " blue.", " black.")


def test_messages_rows_are_sft_examples(tmp_path):
    rows = [{"messages": [SYSTEM, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
             "source": "x"}]
    ds = read_dataset(write_jsonl(tmp_path / "m.jsonl", rows))
    rec = ds.records[0]
    assert isinstance(rec, UnpairedExample) and rec.label is None
    assert rec.prompt == rows[0]["messages"][:2] and rec.completion == rows[0]["messages"][2:]
    assert rec.extra == {"source": "x"}
    as_prompt_completion = [{"prompt": rec.prompt, "completion": rec.completion, "source": "x"}]
    assert ds.fingerprint == read_dataset(write_jsonl(tmp_path / "pc.jsonl", as_prompt_completion)).fingerprint
    bad = [{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
                         {"role": "user", "content": "thanks"}]}]
    with pytest.raises(InputError, match=r"m\.jsonl:1: field 'messages\[2\]\.role': the last message has role 'user'"):
        read_dataset(write_jsonl(tmp_path / "m.jsonl", bad))


def test_messages_column_in_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    messages = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    pq.write_table(pa.Table.from_pylist([{"messages": messages}]), tmp_path / "m.parquet")
    rec = read_dataset(tmp_path / "m.parquet").records[0]
    assert (rec.prompt, rec.completion) == (messages[:1], messages[1:])


def test_content_parts_are_joined_and_other_parts_refused(tmp_path):
    parts = [{"type": "text", "text": "2+"}, {"type": "text", "text": "2?"}]
    row = {"prompt": [{"role": "user", "content": parts}], "chosen": [{"role": "assistant", "content": "4"}],
           "rejected": [{"role": "assistant", "content": "5"}]}
    plain = dict(row, prompt=[{"role": "user", "content": "2+2?"}])
    ds = read_dataset(write_jsonl(tmp_path / "p.jsonl", [row]))
    assert ds.records[0].prompt == [{"role": "user", "content": "2+2?"}]
    assert ds.fingerprint == read_dataset(write_jsonl(tmp_path / "s.jsonl", [plain])).fingerprint
    image = dict(row, prompt=[{"role": "user", "content": [{"type": "image", "url": "x.png"}, *parts]}])
    with pytest.raises(InputError, match=r"field 'prompt\[0\]\.content\[0\]': content part of type 'image': only "
                                         r"text parts are supported"):
        read_dataset(write_jsonl(tmp_path / "p.jsonl", [image]))


def _tool_rows() -> list[dict]:
    return [{"prompt": [USER], "chosen": [CALL, TOOL_REPLY, {"role": "assistant", "content": "18C."}],
             "rejected": [{"role": "assistant", "content": "No idea."}], "tools": TOOLS}]


def test_tool_calls_and_tools_survive_loading_and_fingerprinting(tmp_path):
    ds = read_dataset(write_jsonl(tmp_path / "t.jsonl", _tool_rows()))
    rec = ds.records[0]
    assert rec.chosen[0] == {"role": "assistant", "content": "", "tool_calls": CALL["tool_calls"]}
    assert rec.template_kwargs == {"tools": TOOLS} and rec.to_dict()["tools"] == TOOLS
    as_string = [dict(_tool_rows()[0], tools=json.dumps(TOOLS))]  # Parquet/CSV carry tools as a JSON string
    assert read_dataset(write_jsonl(tmp_path / "s.jsonl", as_string)).fingerprint == ds.fingerprint
    for name in ("t.parquet", "t.jsonl.gz"):
        back = read_dataset(write_records(ds.records, tmp_path / name))
        assert back.fingerprint == ds.fingerprint and back.records[0].chosen == rec.chosen
    no_tools = read_dataset(write_jsonl(tmp_path / "n.jsonl", [{k: v for k, v in _tool_rows()[0].items()
                                                                    if k != "tools"}]))
    assert no_tools.fingerprint != ds.fingerprint  # what reaches the template is what was trained on


def test_tool_calls_written_by_datasets_keep_their_shape(tmp_path):
    """A datasets folder fills every struct key any message has with null (a user message gets tool_calls: null);
    reading drops them again, so the records equal the JSONL ones."""
    from datasets import Dataset

    rows = [dict(_tool_rows()[0], tools=json.dumps(TOOLS))]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "folder"))
    assert read_dataset(tmp_path / "folder").fingerprint == read_dataset(write_jsonl(tmp_path / "t.jsonl",
                                                                                     rows)).fingerprint


@pytest.mark.parametrize(("row", "expected"), [
    ({"prompt": "q", "chosen": "a", "rejected": "b", "tools": TOOLS},
     "field 'tools': goes to the chat template, but this record is plain text"),
    ({"prompt": [USER], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant",
                                                                                          "content": "b"}],
      "tools": {"name": "x"}}, "field 'tools': expected a list of function schemas, got object"),
    ({"prompt": [USER], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant",
                                                                                          "content": "b"}],
      "chat_template_kwargs": {"add_generation_prompt": False}},
     "field 'chat_template_kwargs': may not set add_generation_prompt"),
    ({"prompt": [dict(USER, tool_calls=[])], "chosen": [{"role": "assistant", "content": "a"}],
      "rejected": [{"role": "assistant", "content": "b"}]},
     r"field 'prompt\[0\].tool_calls': only an assistant message makes tool calls"),
    ({"prompt": [USER], "chosen": [{"role": "assistant", "content": None}], "rejected": [{"role": "assistant",
                                                                                           "content": "b"}]},
     r"field 'chosen\[0\].content': expected a string, got null"),
])
def test_bad_tool_fields(tmp_path, row, expected):
    with pytest.raises(InputError, match=expected):
        read_dataset(write_jsonl(tmp_path / "d.jsonl", [row]))


def test_chat_template_kwargs_reach_the_template(tmp_path, tiny_tok):
    import copy

    tok = copy.deepcopy(tiny_tok)
    tok.chat_template = "{% if shout %}LOUD {% endif %}" + tok.chat_template
    row = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}],
           "rejected": [{"role": "assistant", "content": "b"}], "chat_template_kwargs": {"shout": True}}
    rec = read_dataset(write_jsonl(tmp_path / "k.jsonl", [row])).records[0]
    assert tok.decode(PairTokenizer(tok).pair(rec).prompt_ids).startswith("LOUD ")
