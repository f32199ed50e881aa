"""The labelling session: what is shown and what each key does, with no terminal in sight.

`LabelSession` is a small state machine over the sample (keys in, labels out); `render` turns its state into
the lines of a screen of a given size. The curses driver (`prefgate.label.tui`) only draws those lines and
feeds keys back, so everything here is tested without a terminal.

Keys (names; the driver maps the real keys to them):
    a, b, t      prefer A, prefer B, tie: saved at once, then the next unlabelled pair
    s            skip: leave the pair unlabelled; skipped pairs come back once after all the others (skip
                 again to leave them for the next run)
    back         the previous pair in the sample (p or the left arrow); answering it again re-labels it
    q            quit (every answer is already saved)
    down, up, pgdn, pgup, home, end   scroll the texts (j/k, arrows, PgDn/space, PgUp, g/Home, G/End)

Resume: the session starts after the last pair this rater labelled (in the file's order) at the next pair
that has no label from them, wrapping around, so a rerun continues where the last one stopped.
"""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from prefgate.data.records import PreferencePair, Text
from prefgate.label.sample import a_side, preferred_for, shown_as
from prefgate.label.store import Label, latest
from prefgate.reportio import now

ANSWER_KEYS = ("a", "b", "t")
SCROLL_KEYS = ("down", "up", "pgdn", "pgup", "home", "end")
KEYS_HELP = "a: A better  b: B better  t: tie  s: skip  p/\u2190: back  q: quit  j/k \u2191\u2193 PgUp/PgDn: scroll"
SIDE_BY_SIDE_MIN_WIDTH = 100


@dataclass(frozen=True, slots=True)
class Shown:
    """One pair as this rater sees it: its 1-based place in the sample and the side shown as A."""

    record: PreferencePair
    position: int
    a: str

    @property
    def texts(self) -> tuple[Text, Text]:
        """(text A, text B)."""
        rec = self.record
        return (rec.chosen, rec.rejected) if self.a == "chosen" else (rec.rejected, rec.chosen)


class LabelSession:
    """State of one rater's session over a sample (see the module docstring)."""

    def __init__(self, sample: Sequence[PreferencePair], rater: str, seed: int, previous: Sequence[Label] = ()):
        self.rater = rater
        self.items = [Shown(rec, i + 1, a_side(seed, rater, rec.id)) for i, rec in enumerate(sample)]
        index = {shown.record.id: i for i, shown in enumerate(self.items)}
        mine = [lab for lab in latest(list(previous)) if lab.rater == rater and lab.id in index]
        self.answers: dict[str, str] = {lab.id: lab.preferred for lab in mine}
        self.skipped: set[int] = set()
        self.revisited = False  # skipped pairs were offered again
        self.labelled_now = 0
        self.scroll = 0
        self.quit = False
        self.message = ""
        self.cursor: int | None = self.next_open(index[mine[-1].id] if mine else -1)

    @property
    def finished(self) -> bool:
        return self.quit or self.cursor is None

    @property
    def done(self) -> bool:
        """Every pair of the sample has a label from this rater."""
        return len(self.answers) == len(self.items)

    @property
    def current(self) -> Shown | None:
        return None if self.cursor is None else self.items[self.cursor]

    def next_open(self, after: int) -> int | None:
        """The first pair after `after` (wrapping) with no label from this rater and not skipped now."""
        n = len(self.items)
        for step in range(1, n + 1):
            i = (after + step) % n
            if self.items[i].record.id not in self.answers and i not in self.skipped:
                return i
        return None

    def _advance(self, after: int) -> None:
        """To the next open pair; when only skipped ones are left, to those, once."""
        cursor = self.next_open(after)
        if cursor is None and self.skipped and not self.revisited:
            self.revisited = True
            self.skipped.clear()
            cursor = self.next_open(after)
            self._move(cursor)
            self.message = "back to the pairs you skipped (skip again to leave them for later)"
            return
        self._move(cursor)

    def _move(self, cursor: int | None) -> None:
        self.cursor = cursor
        self.scroll = 0
        shown = self.current
        if shown is not None and shown.record.id in self.answers:
            self.message = f"your earlier answer: {shown_as(self.answers[shown.record.id], shown.a)}"

    def press(self, key: str, page: int = 10) -> Label | None:
        """Apply one key; returns the label to save when the key answered the pair."""
        shown = self.current
        if shown is None:
            return None
        self.message = ""
        if key in ANSWER_KEYS:
            preferred = preferred_for(key, shown.a)
            self.answers[shown.record.id] = preferred
            self.skipped.discard(shown.position - 1)
            self.labelled_now += 1
            self.message = f"saved pair {shown.position}: {shown_as(preferred, shown.a)}"
            self._advance(shown.position - 1)
            return Label(shown.record.id, preferred, self.rater, shown.position, shown.a, now())
        if key == "s":
            self.skipped.add(shown.position - 1)
            self._advance(shown.position - 1)
        elif key == "back":
            if shown.position > 1:
                self._move(shown.position - 2)
            else:
                self.message = "this is the first pair"
        elif key == "q":
            self.quit = True
        elif key in SCROLL_KEYS:
            self.scroll = _scrolled(self.scroll, key, page)
        return None


def _scrolled(scroll: int, key: str, page: int) -> int:
    step = {"down": 1, "up": -1, "pgdn": page, "pgup": -page}.get(key)
    if step is not None:
        return max(0, scroll + step)
    return 0 if key == "home" else 10**9  # "end": clamped by `render`


# ---------------------------------------------------------------------------------------------------------
# Rendering: a screen as lines of (text, style); style is "header", "title", "dim" or "".

Line = tuple[str, str]


def _printable(text: str) -> str:
    """Tabs expanded; control characters (which a terminal would act on) shown as U+FFFD."""
    text = text.expandtabs(4)
    return "".join(ch if ch == "\n" or unicodedata.category(ch) != "Cc" else "\ufffd" for ch in text)


def text_of(value: Text, *, answer: bool = False) -> str:
    """A record text as plain text: a string as is; messages as "[role] content" blocks (an answer that is one
    assistant message shows just its content)."""
    if isinstance(value, str):
        return value
    if answer and len(value) == 1 and value[0]["role"] == "assistant":
        return value[0]["content"]
    return "\n\n".join(f"[{m['role']}] {m['content']}" for m in value)


def wrap(text: str, width: int) -> list[str]:
    """`text` wrapped to `width`, keeping its own line breaks and blank lines."""
    out: list[str] = []
    for line in _printable(text).split("\n"):
        out.extend(textwrap.wrap(line, width, break_on_hyphens=False, replace_whitespace=False) or [""])
    return out


def body_lines(shown: Shown, width: int) -> list[Line]:
    """The scrollable part: the prompt, then A and B (side by side when the terminal is wide enough)."""
    width = max(10, width)
    lines: list[Line] = [("PROMPT", "title")]
    lines += [(s, "") for s in wrap(text_of(shown.record.prompt), width)]
    lines.append(("", ""))
    a_text, b_text = (text_of(t, answer=True) for t in shown.texts)
    if width >= SIDE_BY_SIDE_MIN_WIDTH:
        col = (width - 3) // 2
        a_lines, b_lines = wrap(a_text, col), wrap(b_text, col)
        lines.append((f"{'A':<{col}} \u2502 B", "title"))
        for i in range(max(len(a_lines), len(b_lines))):
            left = a_lines[i] if i < len(a_lines) else ""
            right = b_lines[i] if i < len(b_lines) else ""
            lines.append((f"{left:<{col}} \u2502 {right}", ""))
    else:
        lines.append(("A", "title"))
        lines += [(s, "") for s in wrap(a_text, width)]
        lines += [("", ""), ("B", "title")]
        lines += [(s, "") for s in wrap(b_text, width)]
    return lines


def header(session: LabelSession, shown: Shown) -> str:
    n = len(session.items)
    category = shown.record.category or "no category"
    return (f" prefgate label \u00b7 rater {session.rater} \u00b7 pair {shown.position}/{n} \u00b7 "
            f"labelled {len(session.answers)}/{n} \u00b7 {category}")


def render(session: LabelSession, width: int, height: int) -> list[Line]:
    """Exactly `height` lines, none wider than `width`. Clamps `session.scroll` to the text's length."""
    shown = session.current
    if shown is None:
        lines: list[Line] = [(" prefgate label", "header"), ("", ""),
                             (f"All {len(session.items)} pairs in the sample are labelled by {session.rater}.", "")]
    elif height < 6 or width < 20:
        lines = [("terminal too small", "")]
    else:
        body = body_lines(shown, width)
        room = height - 4
        session.scroll = max(0, min(session.scroll, len(body) - room))
        visible = body[session.scroll: session.scroll + room]
        visible += [("", "")] * (room - len(visible))
        if len(body) > room:
            where = f"lines {session.scroll + 1}-{session.scroll + room} of {len(body)} (j/k, PgUp/PgDn to scroll)"
        else:
            where = ""
        status = "  ".join(s for s in (session.message, where) if s)
        lines = [(header(session, shown), "header"), ("\u2500" * width, "dim"), *visible,
                 (status, "dim"), (KEYS_HELP, "dim")]
    lines = lines[:height] + [("", "")] * (height - len(lines))
    return [(text[:width], style) for text, style in lines]
