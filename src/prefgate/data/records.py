"""Preference records: the two record types every stage reads, and their validation.

A record is built from one raw row (a dict from JSONL, JSON, Parquet, CSV or a `datasets` folder) by
`parse_row`, which either returns a record or raises `InputError` naming the row and the field.
The contract is ../shared/DESIGN.md "Preference records":

- paired, explicit prompt:  {"prompt", "chosen", "rejected"}
- paired, implicit prompt:  {"chosen", "rejected"} holding the whole conversation (see `implicit.py`)
- unpaired:                 {"prompt", "completion", "label": bool} (KTO); without "label": plain SFT data

Text is either a string ("standard") or a list of messages `{"role", "content"}` ("conversational").
Optional on every record: `id`, `category`, `rejection_type`, `grader`, `meta`; unknown top-level
fields are kept in `extra` and written back out unchanged.
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
    if missing:
        raise InputError(
            "missing (paired records need chosen and rejected, and usually prompt)", field=missing[0]
        )
    return "paired" if "prompt" in row else "implicit"


def parse_row(row: Any, *, where: str | None = None) -> Record:
    """Validate one raw row and build its record. Raises `InputError` (with `where`) on any problem."""
    try:
        if not isinstance(row, dict):
            raise InputError(f"expected a JSON object, got {_type_name(row)}")
        kind = kind_of_row(row)
        if kind == "unpaired":
            return _parse_unpaired(row)
        return _parse_paired(row, implicit=kind == "implicit")
    except InputError as err:
        if where is None or err.where is not None:
            raise
        raise InputError(err.message, where=where, field=err.field) from None


def _parse_paired(row: dict[str, Any], *, implicit: bool) -> PreferencePair:
    chosen = check_text(row["chosen"], "chosen", allow_empty=True)
    rejected = check_text(row["rejected"], "rejected", allow_empty=True)
    if implicit:
        prompt, chosen, rejected = split_implicit(chosen, rejected)
    else:
        prompt = check_text(row["prompt"], "prompt")
        _check_same_shape(prompt, chosen, "chosen")
        _check_same_shape(prompt, rejected, "rejected")
    optional = _parse_optional(row)
    rid = optional.pop("id") or content_id(prompt, chosen, rejected)
    return PreferencePair(id=rid, prompt=prompt, chosen=chosen, rejected=rejected, **optional)


def _parse_unpaired(row: dict[str, Any]) -> UnpairedExample:
    prompt = check_text(row["prompt"], "prompt")
    completion = check_text(row["completion"], "completion", allow_empty=True)
    _check_same_shape(prompt, completion, "completion")
    label = None if row.get("label") is None else _parse_label(row["label"])
    optional = _parse_optional(row)
    tag = {True: ["desirable"], False: ["undesirable"], None: []}[label]
    rid = optional.pop("id") or content_id(prompt, completion, *tag)
    return UnpairedExample(id=rid, prompt=prompt, completion=completion, label=label, **optional)


def _parse_label(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # CSV gives strings
        return value.strip().lower() == "true"
    raise InputError(f"expected true or false, got {_describe(value)}", field="label")


def _parse_optional(row: dict[str, Any]) -> dict[str, Any]:
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
    out["extra"] = {k: v for k, v in row.items() if k not in KNOWN_FIELDS}
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
        for i, message in enumerate(value):
            _check_message(message, f"{name}[{i}]")
        return value
    raise InputError(f"expected a string or a list of messages, got {_type_name(value)}", field=name)


def _check_message(message: Any, name: str) -> None:
    if not isinstance(message, dict):
        raise InputError(f"expected a message object with role and content, got {_type_name(message)}", field=name)
    role = message.get("role")
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}, expected one of {', '.join(ROLES)}", field=f"{name}.role")
    content = message.get("content")
    if not isinstance(content, str):
        raise InputError(f"expected a string, got {_type_name(content)}", field=f"{name}.content")


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
