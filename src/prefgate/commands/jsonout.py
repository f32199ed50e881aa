"""`--json PATH`, the same in every command: the command's report as JSON in a file, or with `-` on stdout.

With `--json -` stdout holds that one JSON document and nothing else (the tables are not printed; notes and
errors stay on stderr), so `prefgate gate a.json b.json --json - | jq .decision` works. A bare `--json` at the
end of the line, or before another option, means `--json -`: the registry commands took `--json` as a flag
that printed JSON instead of tables, and still do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperCommand

from prefgate.console import note
from prefgate.reportio import write_json

__all__ = ["STDOUT", "JsonCommand", "bare_json_as_stdout", "emit", "json_option", "to_stdout"]

STDOUT = "-"


def json_option(what: str) -> Any:
    """The `--json PATH` option; `what` completes "Write ... as JSON to PATH"."""
    return typer.Option(None, "--json", metavar="PATH",
                        help=f"Write {what} as JSON to PATH; `-` (or a bare --json last) prints it on stdout "
                             "instead of the tables.")


def to_stdout(target: Path | str | None) -> bool:
    return target is not None and str(target) == STDOUT


def emit(obj: Any, target: Path | str | None) -> None:
    """`obj` to stdout (target `-`) or to the file `target` (then "wrote PATH" on stderr); nothing for None."""
    if target is None:
        return
    if to_stdout(target):
        typer.echo(json.dumps(obj, indent=2, ensure_ascii=False))
        return
    write_json(obj, target)
    note(f"wrote {target}")


def bare_json_as_stdout(args: list[str]) -> list[str]:
    """`--json` with no value after it (the last word, or another option next) becomes `--json -`."""
    out: list[str] = []
    for i, word in enumerate(args):
        out.append(word)
        if word == "--json":
            following = args[i + 1] if i + 1 < len(args) else None
            if following is None or (following.startswith("-") and following != STDOUT):
                out.append(STDOUT)
    return out


class JsonCommand(TyperCommand):
    """A command whose `--json` may be given bare (see the module docstring)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, bare_json_as_stdout(args))
