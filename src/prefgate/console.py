"""Where prefgate writes for a person: results on stdout, notes and progress bars on stderr.

The bottom layer every stage may use (it imports nothing of prefgate), so library code never reaches up
into `prefgate.commands` for a console. A Python API user silences notes and progress bars with
`set_quiet(True)` or, for a block, `with quiet(): ...`; results (`say`) are only printed by the CLI.

>>> from prefgate import console
>>> with console.quiet():        # doctest: +SKIP
...     train(config)            # no notes, no progress bars
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from rich.console import Console

__all__ = ["PIPED_WIDTH", "console", "err_console", "is_quiet", "note", "progress", "quiet", "results_width", "say",
           "set_quiet"]

# Results written to a pipe or a file are rendered this wide: rich would otherwise lay tables out for 80 columns
# (or for the terminal that stderr is on) and cut every line there. Tables are not expanded, so each takes only
# its natural width; a cell wider than this folds.
PIPED_WIDTH = 1000


def results_width(stream=None, environ=None) -> int | None:
    """The width results are laid out for: rich's own choice (None) on a terminal or when COLUMNS is set,
    otherwise PIPED_WIDTH, so that `prefgate ... | less` or `> out.txt` keeps whole tables."""
    stream = sys.stdout if stream is None else stream
    environ = os.environ if environ is None else environ
    if environ.get("COLUMNS", "").isdigit():
        return None
    isatty = getattr(stream, "isatty", None)
    return None if isatty is not None and isatty() else PIPED_WIDTH


console = Console(width=results_width())  # results
err_console = Console(stderr=True)  # progress, notes, errors

_quiet = False


def set_quiet(value: bool) -> None:
    """Silence (True) or restore (False) `note` and `progress` for the whole process."""
    global _quiet
    _quiet = bool(value)


def is_quiet() -> bool:
    return _quiet


@contextlib.contextmanager
def quiet(value: bool = True) -> Iterator[None]:
    """`set_quiet(value)` inside the block, the previous setting restored after."""
    before = _quiet
    set_quiet(value)
    try:
        yield
    finally:
        set_quiet(before)


def say(message: str) -> None:
    """A result line on stdout: plain text, never wrapped (fingerprints and paths stay copyable)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def note(message: str, *, force: bool = False) -> None:
    """A progress or notice line on stderr, plain and unwrapped; silent when quiet unless `force` (errors)."""
    if _quiet and not force:
        return
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress(total: int, description: str, *, completed: int = 0, enabled: bool = True, postfix: str | None = None,
             transient: bool = True) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr, starting at `completed` of `total`; yields `advance(n=1, **fields)`.

    A no-op when disabled or quiet. `postfix` is a format string over the task's fields (e.g.
    "loss {task.fields[loss]}"); `advance(n, loss="0.69")` updates them.
    """
    if not enabled or _quiet:
        yield lambda _n=1, **_fields: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    if postfix:
        columns.append(TextColumn(postfix))
    bar = Progress(*columns, console=err_console, transient=transient)
    with bar:
        task = bar.add_task(description, total=total, completed=completed, **_empty_fields(postfix))
        yield lambda n=1, **fields: bar.update(task, advance=n, **fields)


def _empty_fields(postfix: str | None) -> dict[str, str]:
    """Every `{task.fields[name]}` in `postfix`, as "" so the first render has them."""
    if not postfix:
        return {}
    import re

    return {name: "" for name in re.findall(r"task\.fields\[['\"]?(\w+)['\"]?\]", postfix)}
