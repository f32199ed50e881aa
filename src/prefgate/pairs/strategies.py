"""Construction strategies: small pure functions `(item, rng) -> [(rejected_text, detail), ...]`.

Each takes a gold item and a seeded `random.Random` and returns deliberately wrong answers, each with a
JSON-serialisable `detail` saying what was changed. A strategy that cannot corrupt an item raises `Skip`
with the reason (the caller counts it and writes it to the skipped sidecar; nothing is dropped silently).

- `numeric`: change one number of the answer (the final one or one in an intermediate step), MetaMath-style.
- `choice`: one pair per wrong option of a multiple-choice item, ARC/HellaSwag-style.
- `negation`: flip one clause with the rule set `NEGATION_RULES` (is -> is not, cannot -> can, ...).
- `entity_swap`: swap one named entity for another of the same kind (see `prefgate.pairs.entities`).
- `drop_step`: drop one intermediate line (or sentence) of an answer with at least two steps.
- `editor`: a separate model rewrites the answer with one factual error (see `prefgate.pairs.editor`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from decimal import Decimal

from prefgate.pairs.entities import EntityPool
from prefgate.pairs.gold import GoldItem

Detail = dict
Rejection = tuple[str, Detail]
Strategy = Callable[[GoldItem, random.Random], list[Rejection]]


class Skip(Exception):
    """A strategy cannot corrupt this item; `str(err)` is the reason (counted per strategy)."""


# ---------------------------------------------------------------------------------------------------------
# numeric

# A number not glued to a word or to another number: 42, -3, 1,234, 3.5 (a trailing "." is punctuation).
_NUMBER = re.compile(r"(?<![\w.,])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w]|[.,]\d)")
# Numbers that label rather than state: list markers ("1." or "2)" opening a line) and "Step 3".
_LIST_MARKER_AFTER = re.compile(r"[.)][ \t]+\S")
_LABEL_WORD_BEFORE = re.compile(r"\b(?:step|part|question|example|no\.)\s*$", re.IGNORECASE)
NUMERIC_TARGETS = ("any", "final", "intermediate")
_DELTAS = (1, 2, 3, 5, 10)


def number_spans(text: str) -> list[re.Match[str]]:
    """The numbers of `text` that state a quantity (list markers and "Step N" excluded).

    >>> [m.group(0) for m in number_spans("Step 1: 2 + 3 = 5.\\n2. So 1,200 - 0.5 is 1,199.5")]
    ['2', '3', '5', '1,200', '0.5', '1,199.5']
    """
    spans = []
    for match in _NUMBER.finditer(text):
        start = match.start()
        line_start = text.rfind("\n", 0, start) + 1
        if not text[line_start:start].strip() and _LIST_MARKER_AFTER.match(text, match.end()):
            continue  # "1. First, ..." opening a line
        if _LABEL_WORD_BEFORE.search(text[max(0, start - 12):start]):
            continue
        spans.append(match)
    return spans


def perturb_number(token: str, rng: random.Random) -> str:
    """A different number written like `token` (sign, thousands commas, decimal places).

    >>> perturb_number("1,200", random.Random(0)) != "1,200"
    True
    """
    negative = token.startswith("-")
    body = token.lstrip("-")
    decimals = len(body.split(".")[1]) if "." in body else 0
    value = Decimal(body.replace(",", "")) * (-1 if negative else 1)
    unit = Decimal(1).scaleb(-decimals)
    delta = rng.choice(_DELTAS) * unit * rng.choice((-1, 1))
    new = value + delta
    if new < 0 <= value:  # keep a count a count
        new = value + abs(delta)
    return _format_number(new, decimals, commas="," in body)


def _format_number(value: Decimal, decimals: int, *, commas: bool) -> str:
    spec = f"{',' if commas else ''}.{decimals}f"
    return format(value, spec)


def numeric(item: GoldItem, rng: random.Random, *, target: str = "any") -> list[Rejection]:
    """Change one number of the answer. `target`: "any" number, the "final" (last) one, or an
    "intermediate" one (any but the last). The detail names the number, its replacement and where it was."""
    spans = number_spans(item.answer)
    if not spans:
        raise Skip("no number in the answer")
    candidates = list(range(len(spans)))
    if target == "final":
        candidates = candidates[-1:]
    elif target == "intermediate":
        candidates = candidates[:-1]
        if not candidates:
            raise Skip("only one number in the answer (no intermediate step)")
    index = rng.choice(candidates)
    span = spans[index]
    replacement = perturb_number(span.group(0), rng)
    rejected = item.answer[: span.start()] + replacement + item.answer[span.end():]
    detail = {"original": span.group(0), "replacement": replacement, "number_index": index,
              "n_numbers": len(spans), "final": index == len(spans) - 1, "offset": span.start()}
    return [(rejected, detail)]


def numeric_for(target: str) -> Strategy:
    """`numeric` restricted to one target ("any", "final", "intermediate")."""
    if target not in NUMERIC_TARGETS:
        raise ValueError(f"unknown numeric target {target!r}; expected one of {', '.join(NUMERIC_TARGETS)}")

    def strategy(item: GoldItem, rng: random.Random) -> list[Rejection]:
        return numeric(item, rng, target=target)

    strategy.__name__ = f"numeric_{target}"
    return strategy


# ---------------------------------------------------------------------------------------------------------
# choice


def choice(item: GoldItem, rng: random.Random) -> list[Rejection]:  # noqa: ARG001 - strategy signature
    """One rejection per wrong option (ARC, HellaSwag): the chosen side is the right option's text."""
    if not item.choices:
        raise Skip("not a multiple-choice item (no choices)")
    return [(text, {"choice_index": i, "answer_index": item.answer_index})
            for i, text in enumerate(item.choices) if i != item.answer_index]


# ---------------------------------------------------------------------------------------------------------
# negation

_APOS = "['\u2019]"
_AUX_NEG = ("is", "are", "was", "were", "does", "do", "did", "has", "have", "should", "could", "would", "must")
_NOT_AUX = "|".join(_AUX_NEG)

# (name, pattern, replacement). Negative forms are matched before positive ones, and a positive form
# followed by "not" is never matched, so each rule flips exactly one clause one way.
NEGATION_RULES: tuple[tuple[str, str, str | Callable[[re.Match[str]], str]], ...] = (
    ("cannot -> can", r"\bcannot\b|\bcan not\b", "can"),
    ("can't -> can", rf"\bcan{_APOS}t\b", "can"),
    ("won't -> will", rf"\bwon{_APOS}t\b", "will"),
    ("isn't -> is (and the like)", rf"\b(is|are|was|were|does|do|did|has|have|should|could|would)n{_APOS}t\b",
     lambda m: m.group(1)),
    ("X not -> X", rf"\b({_NOT_AUX}|will) not\b", lambda m: m.group(1)),
    ("never -> always", r"\bnever\b", "always"),
    ("always -> never", r"\balways\b", "never"),
    ("can -> cannot", r"\bcan\b(?! not\b)", "cannot"),
    ("is -> is not (and are, was, were)", r"\b(is|are|was|were)\b(?! not\b)", lambda m: f"{m.group(1)} not"),
    ("will -> will not (and should, could, would, must)", r"\b(will|should|could|would|must)\b(?! not\b)",
     lambda m: f"{m.group(1)} not"),
    ("Yes -> No", r"^Yes\b", "No"),
    ("No -> Yes", r"^No\b", "Yes"),
)
_COMPILED_NEGATION = tuple((name, re.compile(p, re.IGNORECASE | re.MULTILINE), r) for name, p, r in NEGATION_RULES)


def _match_case(original: str, new: str) -> str:
    if original.isupper() and len(original) > 1:
        return new.upper()
    if original[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def negation_sites(text: str) -> list[tuple[int, int, str, str]]:
    """Every place a rule applies, without overlaps: (start, end, replacement, rule name), in text order."""
    sites: list[tuple[int, int, str, str]] = []
    taken: list[tuple[int, int]] = []
    for name, pattern, repl in _COMPILED_NEGATION:
        for m in pattern.finditer(text):
            if any(m.start() < end and start < m.end() for start, end in taken):
                continue
            new = repl(m) if callable(repl) else repl
            sites.append((m.start(), m.end(), _match_case(m.group(0), new), name))
            taken.append((m.start(), m.end()))
    return sorted(sites)


def negation(item: GoldItem, rng: random.Random) -> list[Rejection]:
    """Flip one clause of the answer (one site of `NEGATION_RULES`, chosen by the seed)."""
    sites = negation_sites(item.answer)
    if not sites:
        raise Skip("no clause the negation rules can flip")
    start, end, new, rule = rng.choice(sites)
    original = item.answer[start:end]
    return [(item.answer[:start] + new + item.answer[end:],
             {"rule": rule, "original": original, "replacement": new, "offset": start})]


# ---------------------------------------------------------------------------------------------------------
# entity_swap


def entity_swap(item: GoldItem, rng: random.Random, pool: EntityPool | None = None) -> list[Rejection]:
    """Swap one named entity of the answer (every occurrence) for another entity of the same kind, chosen by
    the seed: one found in the dataset when `pool` has one, else one from the built-in lists. The entity
    swapped is the first one of the answer that the prompt does not mention (the answer's new information:
    in "The capital of Australia is Canberra, not Sydney." it is Canberra), else the answer's first."""
    pool = pool or EntityPool()
    found = pool.find(item.answer)
    if not found:
        raise Skip("no named entity of a known kind in the answer")
    prompt = item.prompt_text
    fresh = [e for e in found if not re.search(rf"\b{re.escape(e.name)}\b", prompt)]
    target = (fresh or found)[0]
    exclude = {e.name for e in found}
    replacement, source = pool.replacement(target.kind, exclude, rng)
    if replacement is None:
        raise Skip(f"no other entity of kind {target.kind!r} to swap in")
    rejected = re.sub(rf"\b{re.escape(target.name)}\b", replacement, item.answer)
    return [(rejected, {"original": target.name, "replacement": replacement, "kind": target.kind,
                        "source": source})]


# ---------------------------------------------------------------------------------------------------------
# drop_step

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def split_steps(text: str) -> tuple[str, list[tuple[int, int]]]:
    """("line" or "sentence", the (start, end) spans of the steps): lines when the text has at least two
    non-empty lines, else sentences. A span includes the separator that follows it."""
    lines = [m for m in re.finditer(r"[^\n]*(?:\n|$)", text) if m.group(0).strip()]
    if len(lines) >= 2:
        return "line", [(m.start(), m.end()) for m in lines]
    stripped = text.strip()
    offset = text.find(stripped) if stripped else 0
    spans, start = [], offset
    for m in _SENTENCE_END.finditer(stripped):
        spans.append((start, offset + m.end()))
        start = offset + m.end()
    spans.append((start, len(text)))
    return "sentence", [s for s in spans if text[s[0]:s[1]].strip()]


def drop_step(item: GoldItem, rng: random.Random) -> list[Rejection]:
    """Drop one intermediate step (not the last, which states the result) of a multi-step answer."""
    unit, spans = split_steps(item.answer)
    if len(spans) < 2:
        raise Skip("fewer than two steps (lines or sentences) in the answer")
    index = rng.randrange(len(spans) - 1)
    start, end = spans[index]
    rejected = item.answer[:start] + item.answer[end:]
    return [(rejected, {"unit": unit, "step_index": index, "n_steps": len(spans),
                        "dropped": item.answer[start:end].strip()})]


BUILTIN: dict[str, Strategy] = {
    "numeric": numeric, "choice": choice, "negation": negation, "entity_swap": entity_swap, "drop_step": drop_step,
}
