"""Implicit-prompt pairs: recover the prompt both answers share.

Plain text (HH-RLHF style): the prompt is the longest shared prefix that ends at an assistant turn
marker such as `\\n\\nAssistant:`; it never ends mid-word or mid-turn. Each completion is the rest of its
conversation after that marker (HH's leading space is kept, as TRL's HH script keeps it).
Plain text with no turn marker at all (TRL's `{"chosen": "The sky is blue.", "rejected": "The sky is green."}`):
the prompt is the shared prefix up to its last whitespace, so "The sky is" + " blue." as TRL's `extract_prompt`
gives; where the texts part mid-word, TRL would cut the word ("The sky is bl" + "ue."), we keep it whole.

Message lists: the prompt is the shared leading messages; each completion starts at the first message
where the two conversations differ, which must be an assistant message.
"""

from __future__ import annotations

from typing import Any

from prefgate.errors import InputError

# Assistant-turn markers of the common plain-text formats; the prompt ends right after the last one
# that lies inside the shared prefix.
TURN_MARKERS = ("\n\nAssistant:", "\nAssistant:", "<|im_start|>assistant\n", "[/INST]", "### Response:")


def split_implicit(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """Return (prompt, chosen_completion, rejected_completion) for one implicit-prompt pair."""
    if isinstance(chosen, str) and isinstance(rejected, str):
        return _split_text(chosen, rejected)
    if isinstance(chosen, list) and isinstance(rejected, list):
        return _split_messages(chosen, rejected)
    raise InputError("chosen and rejected must both be strings or both be message lists", field="rejected")


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # binary search on the first difference: O(log n) slice compares, fast on 10 MB lines
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _split_text(chosen: str, rejected: str) -> tuple[str, str, str]:
    shared = chosen[: _common_prefix_len(chosen, rejected)]
    end = -1
    for marker in TURN_MARKERS:
        at = shared.rfind(marker)
        if at >= 0:
            end = max(end, at + len(marker))
    if end <= 0 and not any(marker in text for marker in TURN_MARKERS for text in (chosen, rejected)):
        end = _last_word_end(shared)  # no turns anywhere: a plain continuation, cut at a word boundary
    if end <= 0:
        what = "no shared prefix" if not shared else "no shared prefix that ends at an assistant turn"
        raise InputError(
            f"implicit prompt: chosen and rejected have {what} (looked for markers such as "
            "'\\n\\nAssistant:'); give an explicit 'prompt' field",
            field="rejected",
        )
    return shared[:end], chosen[end:], rejected[end:]


def _last_word_end(shared: str) -> int:
    """Where the prompt of a plain continuation ends: before the whitespace that precedes the first word the two
    texts do not share (-1 when the shared prefix holds no word boundary)."""
    at = max(shared.rfind(c) for c in " \n\t")
    while at > 0 and shared[at - 1] in " \n\t":
        at -= 1
    return at


def _split_messages(chosen: list, rejected: list) -> tuple[list, list, list]:
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == len(chosen) == len(rejected):  # identical conversations: the last assistant turn is the answer
        n = max((i for i, m in enumerate(chosen) if m.get("role") == "assistant"), default=0)
    if n == 0:
        raise InputError("implicit prompt: chosen and rejected share no leading messages; give an explicit "
                         "'prompt' field", field="rejected")
    for name, completion in (("chosen", chosen[n:]), ("rejected", rejected[n:])):
        if not completion:
            raise InputError("implicit prompt: no messages after the shared prompt", field=name)
        if completion[0].get("role") != "assistant":
            raise InputError(f"implicit prompt: the first message after the shared prompt has role "
                             f"{completion[0].get('role')!r}, expected 'assistant'", field=f"{name}[{n}].role")
    return chosen[:n], chosen[n:], rejected[n:]
