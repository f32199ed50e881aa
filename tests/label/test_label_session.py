"""The labelling session without a terminal: keys in, labels out; the screen as lines; the curses loop on a
fake screen."""

from __future__ import annotations

import curses

import pytest

from prefgate.data.records import PreferencePair
from prefgate.label import Label, LabelSession, LabelStore, a_side, label_sample, render
from prefgate.label.session import KEYS_HELP, text_of, wrap
from prefgate.label.tui import drive


@pytest.fixture()
def sample(pairs):
    return label_sample(pairs, 0.1, seed=0)


def press(session, *keys):
    return [lab for key in keys if (lab := session.press(key)) is not None]


def screen_text(session, width=120, height=30) -> str:
    return "\n".join(text for text, _ in render(session, width, height))


def test_answers_map_keys_through_the_blind_order(sample):
    session = LabelSession(sample, "alice", seed=0)
    labels = press(session, "a", "b", "t")
    for lab, key, rec in zip(labels, "abt", sample[:3], strict=True):
        a = a_side(0, "alice", rec.id)
        expected = {"a": a, "b": "rejected" if a == "chosen" else "chosen", "t": "tie"}[key]
        assert (lab.id, lab.preferred, lab.rater, lab.a) == (rec.id, expected, "alice", a)
    assert [lab.position for lab in labels] == [1, 2, 3]
    assert session.current.position == 4 and session.labelled_now == 3


def test_back_relabels_and_skip_comes_back_after_the_others(sample):
    session = LabelSession(sample, "alice", seed=0)
    press(session, "a", "a")
    assert press(session, "back") == [] and session.current.position == 2
    assert session.message.startswith("your earlier answer: A")
    [relabel] = press(session, "b")
    assert relabel.position == 2 and session.current.position == 3
    press(session, "s")  # skip 3
    assert session.current.position == 4
    press(session, *"aaaaaaa")  # 4..10
    assert session.current.position == 3 and not session.done  # the skipped one, once the rest are done
    assert session.message.startswith("back to the pairs you skipped")
    press(session, "t")
    assert session.done and session.finished and session.current is None
    press(session, "back")  # nothing to do once finished


def test_skipping_twice_leaves_the_pair_for_the_next_run(sample):
    session = LabelSession(sample, "alice", seed=0)
    press(session, "s", *"a" * 9)
    assert session.current.position == 1
    press(session, "s")
    assert session.finished and not session.done and len(session.answers) == 9


def test_back_at_the_first_pair_and_quit(sample):
    session = LabelSession(sample, "alice", seed=0)
    press(session, "back")
    assert session.message == "this is the first pair" and session.current.position == 1
    press(session, "q")
    assert session.finished and not session.done


def test_resume_starts_after_the_last_answer_and_keeps_other_raters_apart(sample):
    ids = [r.id for r in sample]
    previous = [Label(ids[0], "chosen", "alice"), Label(ids[1], "tie", "alice"), Label(ids[4], "chosen", "alice"),
                Label(ids[2], "chosen", "bob"), Label("not-in-sample", "chosen", "alice")]
    session = LabelSession(sample, "alice", seed=0, previous=previous)
    assert session.current.position == 6 and len(session.answers) == 3
    press(session, *"aaaaa")  # 6..10, then wraps to the open ones: 3, 4
    assert session.current.position == 3
    bob = LabelSession(sample, "bob", seed=0, previous=previous)
    assert bob.current.position == 4
    done = LabelSession(sample, "carol", 0, [Label(i, "chosen", "carol") for i in ids])
    assert done.finished and done.done


def test_screen_shows_prompt_a_b_progress_and_keys(sample):
    session = LabelSession(sample, "alice", seed=0)
    press(session, "a", "a")
    rec = sample[2]
    a_text, b_text = (rec.chosen, rec.rejected) if a_side(0, "alice", rec.id) == "chosen" else \
        (rec.rejected, rec.chosen)
    wide = render(session, 120, 30)
    assert len(wide) == 30 and all(len(text) <= 120 for text, _ in wide)
    assert "pair 3/10" in wide[0][0] and "labelled 2/10" in wide[0][0] and "rater alice" in wide[0][0]
    assert wide[0][1] == "header" and wide[-1][0] == KEYS_HELP[:120]
    text = "\n".join(t for t, _ in wide)
    assert rec.prompt in text and "saved pair 2" in text
    row = next(t for t, _ in wide if a_text in t)
    assert row.index(a_text) < row.index(b_text)  # side by side: A left, B right
    narrow = [t for t, _ in render(session, 60, 30)]
    assert narrow.index("A") < narrow.index(a_text) < narrow.index("B") < narrow.index(b_text)  # stacked


def test_long_texts_scroll_and_the_status_says_where(sample):
    long_rec = PreferencePair(id="long", prompt="\n".join(f"prompt line {i:02d}" for i in range(1, 41)),
                              chosen="short", rejected="also short")
    session = LabelSession([long_rec], "alice", seed=0)
    first = screen_text(session, 80, 20)
    assert "prompt line 01" in first and "lines 1-16 of" in first and "prompt line 20" not in first
    session.press("pgdn", page=15)
    after = screen_text(session, 80, 20)
    assert "prompt line 01" not in after and "prompt line 16" in after and "lines 16-31" in after
    session.press("end")
    bottom = screen_text(session, 80, 20)
    assert "short" in bottom and "prompt line 40" in bottom
    session.press("up"), session.press("home")
    assert session.scroll == 0
    session.press("down")  # one line: the PROMPT title scrolls away
    assert screen_text(session, 80, 20).split("\n")[2:4] == ["prompt line 01", "prompt line 02"]


def test_texts_are_wrapped_and_made_safe():
    assert wrap("one two three four", 9) == ["one two", "three", "four"]
    assert wrap("a\n\nb", 10) == ["a", "", "b"]
    assert wrap("bell\x07 and\x00 nul\ttab", 40) == ["bell\ufffd and\ufffd nul  tab"]  # tab stops of 4
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert text_of(chat) == "[user] hi\n\n[assistant] yo"
    assert text_of([{"role": "assistant", "content": "yo"}], answer=True) == "yo"


def test_tiny_terminal_and_finished_screen(sample):
    session = LabelSession(sample, "alice", seed=0)
    assert render(session, 15, 4)[0][0] == "terminal too small"[:15]
    session.cursor = None
    assert "All 10 pairs in the sample are labelled by alice." in screen_text(session)


class FakeScreen:
    """Enough of a curses window for `drive`: records what was drawn, replays keys."""

    def __init__(self, keys, height=30, width=120):
        self.keys = list(keys)
        self.size = (height, width)
        self.frames: list[list[str]] = []
        self._frame: list[str] = []

    def getmaxyx(self):
        return self.size

    def erase(self):
        self._frame = []

    def addnstr(self, y, x, text, n, attr=0):
        self._frame.append(text[:n])

    def refresh(self):
        self.frames.append(self._frame)

    def getch(self):
        return self.keys.pop(0)


def test_drive_saves_each_answer_as_it_is_given(sample, tmp_path):
    store = LabelStore(tmp_path / "labels.jsonl")
    saved_before_next_frame = []

    class Watching(FakeScreen):
        def refresh(self):
            super().refresh()
            saved_before_next_frame.append(len(store.read()))

    keys = [ord("a"), curses.KEY_RESIZE, ord("b"), curses.KEY_LEFT, ord("t"), ord("j"), ord("s"), ord("q")]
    screen = Watching(keys)
    session = LabelSession(sample, "alice", seed=0)
    drive(screen, session, store)
    assert saved_before_next_frame == [0, 1, 1, 2, 2, 3, 3, 3]  # one frame per key read
    assert [(x.position, x.preferred == "tie") for x in store.read()] == [(1, False), (2, False), (2, True)]
    assert "pair 3/10" in screen.frames[3][0] and "pair 2/10" in screen.frames[4][0]
    assert session.quit
