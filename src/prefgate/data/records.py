"""Preference records: the two record types every stage reads, and their validation.

A record is built from one raw row (a dict from JSONL, JSON, Parquet, CSV or a `datasets` folder) by
`parse_row`, which either returns a record or raises `InputError` naming the row and the field.
The contract is ../shared/DESIGN.md "Preference records":

- paired, explicit prompt:  {"prompt", "chosen", "rejected"}
- paired, implicit prompt:  {"chosen", "rejected"} holding the whole conversation (see `implicit.py`)
- unpaired:                 {"prompt", "completion", "label": bool} (KTO); without "label": plain SFT data

TRL's shapes are read unchanged (docs/data.md, "Coming from TRL"):
- the H4 shape: a `prompt` string beside `chosen`/`rejected` message lists that hold the prompt too; the prompt
  is the messages both share (TRL's `maybe_extract_prompt`), and the string must be the text of one of them;
- `{"messages": [...]}`: SFT data, the last message (an assistant's) is the completion;
- `tools` (a list of function schemas, or a JSON string of one) and `chat_template_kwargs` (an object) go to
  the chat template; both stay in `extra`, normalised to a list and an object.

Text is either a string ("standard") or a list of messages `{"role", "content"}` ("conversational").
A message's content is always a string after loading: a list of text parts (`{"type": "text", "text"}`) is
joined, and an assistant message with `tool_calls` and no content gets `""`; a key whose value is null is
dropped (columnar formats cannot tell null from absent). Other message keys (`tool_calls`, `tool_call_id`,
`name`, ...) are kept as they are. Optional on every record: `id`, `category`, `rejection_type`, `grader`,
`meta`; unknown top-level fields are kept in `extra` and written back out unchanged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Union

from prefgate.data.implicit import split_implicit
from prefgate.errors import InputError
from prefgate.jsonio import InvalidJSON, loads

Message = dict[str, Any]
Text = Union[str, list[Message]]  # noqa: UP007 (a runtime alias; `|` on a generic needs 3.10+ anyway)

ROLES = ("system", "user", "assistant", "tool")
OPTIONAL_STR_FIELDS = ("category", "rejection_type", "grader")
KNOWN_FIELDS = {"id", "prompt", "chosen", "rejected", "completion", "label", "meta", *OPTIONAL_STR_FIELDS}
# Fields kept in `extra` (written back out as they are) that also reach the chat template, as TRL passes them.
TEMPLATE_FIELDS = ("tools", "chat_template_kwargs")
# chat_template_kwargs may not set what the tokenisation itself decides.
RESERVED_TEMPLATE_KWARGS = frozenset({"conversation", "tools", "tokenize", "add_generation_prompt",
                                      "continue_final_message", "return_dict", "return_tensors",
                                      "return_assistant_tokens_mask", "chat_template"})


@dataclass(slots=True)
class PreferencePair:
    """One paired preference: `chosen` is preferred over `rejected` as an answer to `prompt`."""

    id: str
    prompt: Text
    chosen: Text
    rejected: Text
    category: str | None = None
    rejection_type: str | None = None
    grader: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def conversational(self) -> bool:
        return isinstance(self.prompt, list)

    @property
    def template_kwargs(self) -> dict[str, Any]:
        """What the chat template gets besides the messages: the record's `tools` and `chat_template_kwargs`."""
        return template_kwargs(self.extra)

    def to_dict(self) -> dict[str, Any]:
        """The canonical explicit-prompt form, as written by `prefgate data convert`."""
        out: dict[str, Any] = {"id": self.id, "prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        return _with_optional(out, self)


@dataclass(slots=True)
class UnpairedExample:
    """One unpaired example: `completion` is desirable (`label=True`) or not (KTO), or unlabelled (`None`, SFT)."""

    id: str
    prompt: Text
    completion: Text
    label: bool | None
    category: str | None = None
    rejection_type: str | None = None
    grader: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def conversational(self) -> bool:
        return isinstance(self.prompt, list)

    @property
    def template_kwargs(self) -> dict[str, Any]:
        return template_kwargs(self.extra)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "prompt": self.prompt, "completion": self.completion}
        if self.label is not None:
            out["label"] = self.label
        return _with_optional(out, self)


Record = Union[PreferencePair, UnpairedExample]  # noqa: UP007


def _with_optional(out: dict[str, Any], rec: PreferencePair | UnpairedExample) -> dict[str, Any]:
    for name in OPTIONAL_STR_FIELDS:
        value = getattr(rec, name)
        if value is not None:
            out[name] = value
    if rec.meta:
        out["meta"] = rec.meta
    out.update(rec.extra)
    return out


def template_kwargs(extra: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments a record adds to `apply_chat_template` (validated at load by `_parse_template_fields`).
    Empty tools are no tools, as in TRL (some templates render tool boilerplate for `tools=[]`)."""
    out = dict(extra.get("chat_template_kwargs") or {})
    if extra.get("tools"):
        out["tools"] = extra["tools"]
    return out


def canonical_json(obj: Any) -> str:
    """The one canonical serialisation used for ids, fingerprints and prompt hashes."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def content_id(*parts: Text) -> str:
    """A stable id from a record's content: the first 16 hex digits of a sha256."""
    return hashlib.sha256(canonical_json(list(parts)).encode("utf-8")).hexdigest()[:16]


def prompt_key(prompt: Text) -> str:
    """A hash of the prompt alone: records with the same prompt share it (used by split and audit)."""
    return hashlib.sha256(canonical_json(prompt).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Validation: one raw row -> one record, or an InputError naming the row and the field.


def kind_of_row(row: dict[str, Any]) -> str:
    """'paired', 'implicit' or 'unpaired', from the fields present; raises InputError when none fits."""
    if "completion" in row or "label" in row:
        missing = [f for f in ("prompt", "completion") if f not in row]
        if missing:
            raise InputError("missing (unpaired records need prompt and completion, and label for KTO)",
                             field=missing[0])
        return "unpaired"
    missing = [f for f in ("chosen", "rejected") if f not in row]
    if missing and not ("messages" in row and len(missing) == 2):
        raise InputError(
            "missing (paired records need chosen and rejected, and usually prompt)", field=missing[0]
        )
    if missing:
        return "messages"
    if "prompt" not in row:
        return "implicit"
    return "h4" if isinstance(row["prompt"], str) and _both_lists(row["chosen"], row["rejected"]) else "paired"


def _both_lists(chosen: Any, rejected: Any) -> bool:
    return isinstance(chosen, list) and isinstance(rejected, list)


def parse_row(row: Any, *, where: str | None = None) -> Record:
    """Validate one raw row and build its record. Raises `InputError` (with `where`) on any problem."""
    try:
        if not isinstance(row, dict):
            raise InputError(f"expected a JSON object, got {_type_name(row)}")
        kind = kind_of_row(row)
        if kind == "unpaired":
            return _parse_unpaired(row)
        if kind == "messages":
            return _parse_messages(row)
        return _parse_paired(row, kind=kind)
    except InputError as err:
        if where is None or err.where is not None:
            raise
        raise InputError(err.message, where=where, field=err.field) from None


def _parse_paired(row: dict[str, Any], *, kind: str) -> PreferencePair:
    chosen = check_text(row["chosen"], "chosen", allow_empty=True)
    rejected = check_text(row["rejected"], "rejected", allow_empty=True)
    if kind == "implicit":
        prompt, chosen, rejected = split_implicit(chosen, rejected)
    elif kind == "h4":
        prompt, chosen, rejected = _split_h4(row["prompt"], chosen, rejected)
    else:
        prompt = check_text(row["prompt"], "prompt")
        _check_same_shape(prompt, chosen, "chosen")
        _check_same_shape(prompt, rejected, "rejected")
    optional = _parse_optional(row)
    _parse_template_fields(optional["extra"], conversational=isinstance(prompt, list))
    rid = optional.pop("id") or content_id(prompt, chosen, rejected)
    return PreferencePair(id=rid, prompt=prompt, chosen=chosen, rejected=rejected, **optional)


def _split_h4(prompt_text: Any, chosen: list, rejected: list) -> tuple[list, list, list]:
    """The H4 shape (HuggingFaceH4/ultrafeedback_binarized): a `prompt` string beside message lists that hold
    the whole conversation. As TRL's `maybe_extract_prompt`, the prompt is the messages both lists share; the
    string is a copy of its text, checked rather than silently dropped."""
    prompt_text = check_text(prompt_text, "prompt")
    if chosen[0].get("role") == "assistant":
        raise InputError("is a string, but chosen and rejected are message lists that start with the answer; give "
                         "the prompt as a list of messages", field="prompt")
    prompt, chosen, rejected = split_implicit(chosen, rejected)
    if not any(m["content"].strip() == prompt_text.strip() for m in prompt):
        raise InputError(f"the string {_describe(prompt_text)} is not the text of any message chosen and rejected "
                         "share (the prompt of this shape); drop the column or give the prompt as messages",
                         field="prompt")
    return prompt, chosen, rejected


def _parse_messages(row: dict[str, Any]) -> UnpairedExample:
    """`{"messages": [...]}` (TRL's conversational language-modelling shape) as SFT data: the last message,
    which must be an assistant's, is the completion; the messages before it are the prompt."""
    messages = check_text(row["messages"], "messages")
    if isinstance(messages, str):
        raise InputError("expected a list of messages, got string", field="messages")
    last = len(messages) - 1
    if messages[last]["role"] != "assistant":
        raise InputError(f"the last message has role {messages[last]['role']!r}; the completion SFT trains on is "
                         "the last message and must be 'assistant'", field=f"messages[{last}].role")
    if last == 0:
        raise InputError("holds only the answer; the messages before the last one are the prompt",
                         field="messages")
    prompt, completion = messages[:last], messages[last:]
    optional = _parse_optional(row, known=KNOWN_FIELDS | {"messages"})
    _parse_template_fields(optional["extra"], conversational=True)
    rid = optional.pop("id") or content_id(prompt, completion)
    return UnpairedExample(id=rid, prompt=prompt, completion=completion, label=None, **optional)


def _parse_unpaired(row: dict[str, Any]) -> UnpairedExample:
    prompt = check_text(row["prompt"], "prompt")
    completion = check_text(row["completion"], "completion", allow_empty=True)
    _check_same_shape(prompt, completion, "completion")
    label = None if row.get("label") is None else _parse_label(row["label"])
    optional = _parse_optional(row)
    _parse_template_fields(optional["extra"], conversational=isinstance(prompt, list))
    tag = {True: ["desirable"], False: ["undesirable"], None: []}[label]
    rid = optional.pop("id") or content_id(prompt, completion, *tag)
    return UnpairedExample(id=rid, prompt=prompt, completion=completion, label=label, **optional)


def _parse_label(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # CSV gives strings
        return value.strip().lower() == "true"
    raise InputError(f"expected true or false, got {_describe(value)}", field="label")


def _parse_template_fields(extra: dict[str, Any], *, conversational: bool) -> None:
    """Validate `tools` and `chat_template_kwargs` in place: a JSON string of either (Parquet, CSV) is parsed, so
    the record holds the same value whatever file it came from. Both need message lists: a plain-text record
    has no chat template to take them, and dropping them silently would train on less than the user gave."""
    for name, want in (("tools", list), ("chat_template_kwargs", dict)):
        value = extra.get(name)
        if value is None:
            extra.pop(name, None)
            continue
        what = "a list of function schemas" if want is list else "an object"
        if isinstance(value, str):
            try:
                value = loads(value, "", line=True) if value.strip() else want()
            except InvalidJSON:
                raise InputError(f"expected {what} (or a JSON string of one), got a string", field=name) from None
            except InputError as err:
                raise InputError(f"in its JSON string: {err.message}", field=name) from None
        if not isinstance(value, want) or (want is list and not all(isinstance(t, dict) for t in value)):
            raise InputError(f"expected {what}, got {_type_name(value)}", field=name)
        if value and not conversational:
            raise InputError("goes to the chat template, but this record is plain text (no message lists)",
                             field=name)
        reserved = sorted(RESERVED_TEMPLATE_KWARGS & set(value)) if want is dict else []
        if reserved:
            raise InputError(f"may not set {', '.join(reserved)} (the tokenisation decides them)", field=name)
        extra[name] = value


def _parse_optional(row: dict[str, Any], *, known: set[str] = KNOWN_FIELDS) -> dict[str, Any]:
    out: dict[str, Any] = {"id": None}
    rid = row.get("id")
    if rid is not None:
        if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid).strip() == "":
            raise InputError(f"expected a non-empty string or integer, got {_describe(rid)}", field="id")
        out["id"] = str(rid)
    for name in OPTIONAL_STR_FIELDS:
        value = row.get(name)
        if value is not None and not isinstance(value, str):
            raise InputError(f"expected a string, got {_type_name(value)}", field=name)
        out[name] = value
    meta = row.get("meta")
    if isinstance(meta, str):  # CSV and Parquet carry meta as a JSON string
        try:
            meta = loads(meta, "", line=True) if meta.strip() else None
        except InvalidJSON:
            raise InputError("expected an object (or a JSON string of one), got a string", field="meta") from None
        except InputError as err:
            raise InputError(f"in its JSON string: {err.message}", field="meta") from None
    if meta is not None and not isinstance(meta, dict):
        raise InputError(f"expected an object, got {_type_name(meta)}", field="meta")
    out["meta"] = meta or {}
    out["extra"] = {k: v for k, v in row.items() if k not in known}
    return out


def check_text(value: Any, name: str, *, allow_empty: bool = False) -> Text:
    """A string, or a non-empty list of well-formed messages.

    An empty prompt is an error. An empty completion string is accepted when `allow_empty` (chosen,
    rejected, completion): an empty answer is a real answer (HH-RLHF prefers one over leaking an address);
    `prefgate data stats` counts them and the audit reports them.
    """
    if isinstance(value, str):
        if not allow_empty and not value.strip():
            raise InputError("is empty", field=name)
        return value
    if isinstance(value, list):
        if not value:
            raise InputError("is an empty list of messages", field=name)
        checked = [_check_message(message, f"{name}[{i}]") for i, message in enumerate(value)]
        return value if all(a is b for a, b in zip(checked, value, strict=True)) else checked
    raise InputError(f"expected a string or a list of messages, got {_type_name(value)}", field=name)


def _check_message(message: Any, name: str) -> Message:
    """The message, or a normalised copy (see the module docstring): content a string, no null values."""
    if not isinstance(message, dict):
        raise InputError(f"expected a message object with role and content, got {_type_name(message)}", field=name)
    if any(v is None for v in message.values()):
        message = {k: v for k, v in message.items() if v is not None}
    role = message.get("role")
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}, expected one of {', '.join(ROLES)}", field=f"{name}.role")
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if role != "assistant":
            raise InputError(f"only an assistant message makes tool calls, this one has role {role!r}",
                             field=f"{name}.tool_calls")
        if not isinstance(tool_calls, list) or not all(isinstance(c, dict) for c in tool_calls):
            raise InputError(f"expected a list of tool-call objects, got {_type_name(tool_calls)}",
                             field=f"{name}.tool_calls")
    content = message.get("content")
    if isinstance(content, str):
        return message
    if isinstance(content, list):
        return {**message, "content": _text_of_parts(content, f"{name}.content")}
    if content is None and tool_calls:
        return {**message, "content": ""}
    raise InputError(f"expected a string, got {_type_name(content)}", field=f"{name}.content")


def _text_of_parts(parts: list, name: str) -> str:
    """A content-part list (`[{"type": "text", "text": ...}, ...]`) as the one string its text parts make, joined as
    chat templates that take parts render them (no separator). prefgate trains text models: other parts
    (images, audio) are an error, not silently dropped."""
    texts = []
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else _type_name(part)
            raise InputError(f"content part of type {kind!r}: only text parts are supported (prefgate trains "
                             "text-only models)", field=f"{name}[{i}]")
        if not isinstance(part.get("text"), str):
            raise InputError(f"expected a string, got {_type_name(part.get('text'))}", field=f"{name}[{i}].text")
        texts.append(part["text"])
    return "".join(texts)


def _check_same_shape(prompt: Text, completion: Text, name: str) -> None:
    if isinstance(prompt, list) != isinstance(completion, list):
        want = "a list of messages" if isinstance(prompt, list) else "a string"
        raise InputError(
            f"expected {want} like the prompt, got {_type_name(completion)}", field=name
        )


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string", bool: "boolean"}.get(type(value), type(value).__name__)


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:40])
    return _type_name(value)
