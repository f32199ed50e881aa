"""What every command shares: the bad-input guard (exit 2), dataset loading with its report, shared options.

The consoles and `say` / `note` live in `prefgate.console` (the bottom layer library code uses too) and are
re-exported here for the commands."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from prefgate.console import console, err_console, note, say
from prefgate.errors import InputError

__all__ = ["EXIT_BAD_INPUT", "EXIT_OK", "EXIT_VERDICT_NO", "console", "err_console", "guarded", "load_for_command",
           "note", "say", "write_json"]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_VERDICT_NO, EXIT_BAD_INPUT = 0, 1, 2


def guarded(fn: F) -> F:
    """Turn `InputError` into one line on stderr and exit code 2; a file the OS refuses too."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as err:
            note(f"error: {err}", force=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except OSError as err:  # permission denied, disk full, ...: still the user's to fix
            where = getattr(err, "filename", None) or ""
            note(f"error: {where}: {err.strerror or err}", force=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper  # type: ignore[return-value]


def load_for_command(source: str, *, skip_invalid: bool = False, rejected_out: Path | None = None,
                     split: str | None = None):
    """Read a dataset and tell the user, on stderr, its size, fingerprint and anything skipped."""
    from prefgate.data import read_dataset

    ds = read_dataset(source, skip_invalid=skip_invalid, rejected_path=rejected_out, split=split)
    note(f"read {len(ds)} records from {source}  fingerprint {ds.fingerprint[:16]}")
    if ds.rejected:
        note(f"skipped {len(ds.rejected)} invalid rows; each, with its reason, is in {ds.rejected_path}")
    return ds


def write_json(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


SKIP_INVALID = typer.Option(False, "--skip-invalid",
                            help="Skip invalid rows instead of stopping; each goes to a .rejected.jsonl sidecar.")
REJECTED_OUT = typer.Option(None, "--rejected-out",
                            help="Where skipped rows go (default: <input name>.rejected.jsonl here).")
SPLIT = typer.Option(None, "--split", help="Split of a datasets folder or hub dataset (default: the only one).")
