"""Strict YAML settings files: read a mapping, validate it with a pydantic model, one-line errors.

Shared by every config file prefgate reads (train config, audit policy, gate policy), so each reports a
bad file the same way: `path:line: invalid YAML: ...`, or `path: field 'loss.beta': ...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from prefgate.errors import InputError

M = TypeVar("M", bound=BaseModel)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (an empty file is an empty mapping)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", where=str(path)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InputError(f"invalid YAML: {getattr(err, 'problem', None) or err}", where=where) from None
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
    message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return InputError(message + more, where=where, field=field)


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
