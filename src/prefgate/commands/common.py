"""What every command shares: the bad-input guard (exit 2), dataset loading with its report, shared options.

The consoles and `say` / `note` live in `prefgate.console`, and `write_json` in `prefgate.reportio` (bottom
layers that library code uses too); they are re-exported here for the commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from prefgate.console import console, err_console, note, say
from prefgate.errors import InputError
from prefgate.reportio import write_json

__all__ = ["EXIT_BAD_INPUT", "EXIT_OK", "EXIT_VERDICT_NO", "console", "err_console", "guarded", "load_for_command",
           "note", "say", "write_json"]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_VERDICT_NO, EXIT_BAD_INPUT = 0, 1, 2


def guarded(fn: F) -> F:
    """Turn `InputError` into one line on stderr (one per problem for `InputErrors`) and exit code 2; a file the OS
    refuses too."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as err:
            for line in str(err).splitlines():  # one line, or one per problem (InputErrors)
                note(f"error: {line}", force=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except OSError as err:  # permission denied, disk full, ...: still the user's to fix
            where = getattr(err, "filename", None)
            note(f"error: {f'{where}: ' if where else ''}{err.strerror or err}", force=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper  # type: ignore[return-value]


def load_for_command(source: str, *, skip_invalid: bool = False, rejected_out: Path | None = None,
                     split: str | None = None, sidecar: bool = True):
    """Read a dataset and tell the user, on stderr, its size, fingerprint and anything skipped (with
    `sidecar=False`, the first invalid rows and their reasons, since no file holds them)."""
    from prefgate.data import read_dataset

    ds = read_dataset(source, skip_invalid=skip_invalid, rejected_path=rejected_out, split=split, sidecar=sidecar)
    note(f"read {len(ds)} records from {source}  fingerprint {ds.fingerprint[:16]}")
    if ds.rejected and ds.rejected_path is not None:
        note(f"skipped {len(ds.rejected)} invalid rows; each, with its reason, is in {ds.rejected_path}")
    elif ds.rejected:
        for row in ds.rejected[:3]:
            note(f"invalid: {row.reason}", force=True)
        more = f"{len(ds.rejected) - 3} more; " if len(ds.rejected) > 3 else ""
        note(f"{len(ds.rejected)} invalid rows ({more}--rejected-out PATH writes every one with its reason)",
             force=True)
    return ds


SKIP_INVALID = typer.Option(False, "--skip-invalid",
                            help="Skip invalid rows instead of stopping; each goes to a .rejected.jsonl sidecar.")
REJECTED_OUT = typer.Option(None, "--rejected-out",
                            help="Where skipped rows go (default: <input name>.rejected.jsonl here).")
SPLIT = typer.Option(None, "--split", help="Split of a datasets folder or hub dataset (default: the only one).")
