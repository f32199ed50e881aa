"""The curses driver of the labelling tool: draw `render`'s lines, map keys to names, save every answer.

Only this module touches the terminal. `run_tui(session, store)` takes over the terminal (curses.wrapper
restores it on any exit, Ctrl-C included); `drive(screen, session, store)` is the loop itself, and works on
any object with curses' `getmaxyx`, `erase`, `addnstr`, `refresh` and `getch`, which is how it is tested.
"""

from __future__ import annotations

import curses
import os
from typing import Any

from prefgate.label.session import LabelSession, render
from prefgate.label.store import LabelStore

KEYMAP: dict[int, str] = {
    ord("a"): "a", ord("A"): "a", ord("b"): "b", ord("B"): "b", ord("t"): "t", ord("T"): "t",
    ord("s"): "s", ord("S"): "s", ord("p"): "back", ord("P"): "back", curses.KEY_LEFT: "back",
    ord("q"): "q", ord("Q"): "q",
    ord("j"): "down", curses.KEY_DOWN: "down", ord("k"): "up", curses.KEY_UP: "up",
    curses.KEY_NPAGE: "pgdn", ord(" "): "pgdn", curses.KEY_PPAGE: "pgup",
    ord("g"): "home", curses.KEY_HOME: "home", ord("G"): "end", curses.KEY_END: "end",
}

STYLES = {"header": curses.A_REVERSE | curses.A_BOLD, "title": curses.A_BOLD, "dim": curses.A_DIM, "": curses.A_NORMAL}


def draw(screen: Any, session: LabelSession) -> int:
    """Draw the session; returns the height of a page of the text (for PgUp/PgDn)."""
    height, width = screen.getmaxyx()
    screen.erase()
    for y, (text, style) in enumerate(render(session, width, height)):
        try:
            screen.addnstr(y, 0, text, width, STYLES.get(style, curses.A_NORMAL))
        except curses.error:  # the bottom-right cell cannot be written without scrolling
            pass
    screen.refresh()
    return max(1, height - 5)


def drive(screen: Any, session: LabelSession, store: LabelStore) -> None:
    """Show pairs and take keys until the rater quits or every pair is done; each answer is saved at once."""
    while not session.finished:
        page = draw(screen, session)
        name = KEYMAP.get(screen.getch())
        if name is None:  # a resize, or a key with no meaning: redraw
            continue
        label = session.press(name, page)
        if label is not None:
            store.append(label)


def run_tui(session: LabelSession, store: LabelStore) -> None:
    """Run the session in the terminal (stdin and stdout must be a terminal)."""
    os.environ.setdefault("ESCDELAY", "25")  # arrow keys arrive as escape sequences: don't wait 1 s for them
    for name in ("LINES", "COLUMNS"):  # curses would take a stale size from these over the terminal's own
        os.environ.pop(name, None)

    def main(screen: Any) -> None:
        try:
            curses.curs_set(0)
        except curses.error:  # some terminals cannot hide the cursor
            pass
        screen.keypad(True)
        drive(screen, session, store)

    curses.wrapper(main)
