"""Strict YAML settings files: read a mapping, validate it with a pydantic model, one-line errors.

Shared by every config file prefgate reads (train config, audit policy, gate policy), so each reports a
bad file the same way: `path:line: invalid YAML: ...`, or `path: field 'loss.beta': ...`. A key given twice
in one mapping is an error (PyYAML would keep the last value silently), and so are a file that is not UTF-8,
nesting too deep to read and an integer over Python's int-string-conversion limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from prefgate.errors import InputError

M = TypeVar("M", bound=BaseModel)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (it would keep the last silently).

    Keys brought in by a `<<` merge may be overridden: that is what a merge is for."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in first_line:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {first_line[key]}; the first value "
                        "would be silently replaced)", key_node.start_mark)
                first_line[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: the base class reports it
                continue
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, where: str) -> Any:
    """One YAML document through the strict safe loader; every problem is an InputError naming `where`."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        place = f"{where}:{mark.line + 1}" if mark and where else where
        raise InputError(f"invalid YAML: {getattr(err, 'problem', None) or err}", where=place or None) from None
    except RecursionError:
        raise InputError("invalid YAML: nested too deeply to read", where=where or None) from None
    except ValueError as err:  # the int-string-conversion limit, an impossible date such as 2024-13-01
        raise InputError(f"invalid YAML: {str(err).split(';')[0]}", where=where or None) from None


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (an empty file is an empty mapping)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", where=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start}); a settings file "
                         "is UTF-8 text", where=str(path)) from None
    data = load_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of settings at the top level, got {type(data).__name__}",
                         where=str(path))
    return data


def validation_error(err: ValidationError, where: str) -> InputError:
    """The first problem of a pydantic error as one line naming the dotted field."""
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return InputError(_message(first) + more, where=where, field=field)


def validation_errors(err: ValidationError, where: str) -> list[InputError]:
    """Every problem of a pydantic error as one-line InputErrors naming the dotted field, in pydantic's order.

    A value that fits no member of a union (`list[str] | Literal['all-linear']`) gives pydantic one error per
    member, located under the member's name; they become one line: `field 'lora.target_modules': Input should be
    a valid list, or Input should be 'all-linear'`."""
    lines: dict[tuple[str | None, int], list[str]] = {}
    for i, error in enumerate(err.errors()):
        loc, in_union = [], False
        for part in error["loc"]:
            if isinstance(part, str) and "[" in part:  # a union member's tag, not a key of the user's file
                in_union = True
                break
            loc.append(str(part))
        field = ".".join(loc) or None
        messages = lines.setdefault((field, -1 if in_union else i), [])
        if _message(error) not in messages:
            messages.append(_message(error))
    return [InputError(", or ".join(messages), where=where, field=field) for (field, _), messages in lines.items()]


def _message(error: Any) -> str:
    return "unknown key" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")


def validated(model: type[M], data: dict[str, Any], where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise validation_error(err, where) from None


def load_settings(model: type[M], path: str | Path | None) -> M:
    """`model` from a YAML file (keys left out keep their defaults), or the defaults when `path` is None."""
    if path is None:
        return model()
    return validated(model, read_yaml_mapping(path), str(path))
