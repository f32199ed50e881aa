"""Tokenise records with an exact prompt/completion boundary, EOS, and recorded truncation.

For each (prompt, completion):
1. Render text. Standard records: `prompt` and `prompt + completion`. Conversational records: the
   tokenizer's chat template, once for the prompt with `add_generation_prompt=True` and once for the whole
   conversation, both with the record's `tools` and `chat_template_kwargs` (as TRL passes them); the first
   must be a prefix of the second, else the template cannot mark the completion and we say so.
2. Tokenise both. If the prompt's tokens are a prefix of the whole text's tokens, the boundary is exact
   and the completion is the rest (`boundary_exact=True`). If not (a BPE merge across the boundary), the
   completion is tokenised on its own and appended to the prompt's tokens, which is what the model sees
   at generation time (`boundary_exact=False`, counted by `prefgate data stats`).
3. EOS, TRL's rule: a standard (plain-text) completion gets EOS appended unless it already ends with it; a
   conversational one gets nothing, since the chat template already ends the turn (appending would give
   `<|im_end|>\n<|im_end|>` on ChatML templates whose EOS is `<|im_end|>`).
4. Truncate: the prompt keeps its last `max_prompt_length` tokens (and at most `max_length - 1`); each
   completion keeps its first `max_length - len(prompt)` tokens. Which side was cut is recorded per pair,
   because truncation that hits only one side of a pair teaches the model about length, not quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefgate.data.records import PreferencePair, Text, UnpairedExample
from prefgate.errors import InputError
from prefgate.hub import hub_offline


@dataclass(slots=True)
class TokenizedPair:
    id: str
    prompt_ids: list[int]
    chosen_ids: list[int]  # completion tokens only; EOS last unless truncated
    rejected_ids: list[int]
    prompt_truncated: bool = False
    chosen_truncated: bool = False
    rejected_truncated: bool = False
    boundary_exact: bool = True

    @property
    def asymmetric_truncation(self) -> bool:
        return self.chosen_truncated != self.rejected_truncated


@dataclass(slots=True)
class TokenizedExample:
    id: str
    prompt_ids: list[int]
    completion_ids: list[int]
    label: bool | None = None  # KTO: desirable or not; None for SFT data
    prompt_truncated: bool = False
    completion_truncated: bool = False
    boundary_exact: bool = True


class PairTokenizer:
    """Wraps a Hugging Face tokenizer with prefgate's boundary, EOS and truncation rules."""

    def __init__(self, tokenizer: Any, *, max_length: int | None = None, max_prompt_length: int | None = None,
                 add_eos: bool = True):
        if max_length is not None and max_length < 2:
            raise InputError(f"must be at least 2, got {max_length}", field="max_length")
        if max_prompt_length is not None and max_prompt_length < 1:
            raise InputError(f"must be at least 1, got {max_prompt_length}", field="max_prompt_length")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_prompt_length = max_prompt_length
        self.eos_id = tokenizer.eos_token_id if add_eos else None

    # -- text -------------------------------------------------------------------------------------------
    def render(self, prompt: Text, completion: Text, template_kwargs: dict[str, Any] | None = None
               ) -> tuple[str, str]:
        """(prompt_text, full_text); for message lists, through the chat template, which also gets
        `template_kwargs` (a record's `template_kwargs`: its tools and chat_template_kwargs)."""
        if isinstance(prompt, str):
            return prompt, prompt + completion
        if not getattr(self.tokenizer, "chat_template", None):
            raise InputError("the data is conversational but the tokenizer has no chat template",
                             field="tokenizer")
        kwargs = template_kwargs or {}
        prompt_text = self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True,
                                                         **kwargs)
        full_text = self.tokenizer.apply_chat_template(prompt + completion, tokenize=False, **kwargs)
        if not full_text.startswith(prompt_text):
            raise InputError("the chat template renders the prompt (with add_generation_prompt) differently from "
                             "the start of the whole conversation, so the completion cannot be located",
                             field="tokenizer")
        return prompt_text, full_text

    def _ids(self, text: str, conversational: bool) -> list[int]:
        # A rendered chat template already holds its special tokens (BOS included).
        return self.tokenizer(text, add_special_tokens=not conversational)["input_ids"]

    def encode(self, prompt: Text, completion: Text, template_kwargs: dict[str, Any] | None = None
               ) -> tuple[list[int], list[int], bool]:
        """(prompt_ids, completion_ids, boundary_exact), untruncated, with EOS by TRL's rule (module docstring)."""
        conversational = isinstance(prompt, list)
        prompt_text, full_text = self.render(prompt, completion, template_kwargs)
        prompt_ids = self._ids(prompt_text, conversational)
        full_ids = self._ids(full_text, conversational)
        n = len(prompt_ids)
        if full_ids[:n] == prompt_ids:
            completion_ids, exact = full_ids[n:], True
        else:
            completion_text = full_text[len(prompt_text):]
            completion_ids, exact = self.tokenizer(completion_text, add_special_tokens=False)["input_ids"], False
        return prompt_ids, self._with_eos(completion_ids, conversational), exact

    def _with_eos(self, completion_ids: list[int], conversational: bool) -> list[int]:
        if conversational or self.eos_id is None or (completion_ids and completion_ids[-1] == self.eos_id):
            return completion_ids
        return [*completion_ids, self.eos_id]

    # -- truncation -------------------------------------------------------------------------------------
    def _truncate_prompt(self, prompt_ids: list[int]) -> tuple[list[int], bool]:
        limit = self.max_prompt_length
        if self.max_length is not None:
            limit = min(limit or self.max_length, self.max_length - 1)
        if limit is not None and len(prompt_ids) > limit:
            return prompt_ids[-limit:], True  # keep the end: the turn the answer responds to
        return prompt_ids, False

    def _truncate_completion(self, prompt_ids: list[int], completion_ids: list[int]) -> tuple[list[int], bool]:
        if self.max_length is None:
            return completion_ids, False
        budget = self.max_length - len(prompt_ids)
        if len(completion_ids) > budget:
            return completion_ids[:budget], True
        return completion_ids, False

    # -- records ----------------------------------------------------------------------------------------
    def pair(self, rec: PreferencePair) -> TokenizedPair:
        kwargs = rec.template_kwargs
        prompt_ids, chosen_ids, exact_c = self.encode(rec.prompt, rec.chosen, kwargs)
        prompt_ids_r, rejected_ids, exact_r = self.encode(rec.prompt, rec.rejected, kwargs)
        if prompt_ids_r != prompt_ids:  # boundary merges differ per side: keep one prompt, re-tokenise apart
            rejected_ids, exact_r = self._separate_completion(rec.prompt, rec.rejected, kwargs), False
        prompt_ids, prompt_cut = self._truncate_prompt(prompt_ids)
        chosen_ids, chosen_cut = self._truncate_completion(prompt_ids, chosen_ids)
        rejected_ids, rejected_cut = self._truncate_completion(prompt_ids, rejected_ids)
        return TokenizedPair(rec.id, prompt_ids, chosen_ids, rejected_ids, prompt_cut, chosen_cut, rejected_cut,
                             exact_c and exact_r)

    def example(self, rec: UnpairedExample) -> TokenizedExample:
        return self.sft(rec.id, rec.prompt, rec.completion, label=rec.label, template_kwargs=rec.template_kwargs)

    def sft(self, rid: str, prompt: Text, completion: Text, *, label: bool | None = None,
            template_kwargs: dict[str, Any] | None = None) -> TokenizedExample:
        prompt_ids, completion_ids, exact = self.encode(prompt, completion, template_kwargs)
        prompt_ids, prompt_cut = self._truncate_prompt(prompt_ids)
        completion_ids, completion_cut = self._truncate_completion(prompt_ids, completion_ids)
        return TokenizedExample(rid, prompt_ids, completion_ids, label, prompt_cut, completion_cut, exact)

    def _separate_completion(self, prompt: Text, completion: Text, template_kwargs: dict[str, Any]) -> list[int]:
        prompt_text, full_text = self.render(prompt, completion, template_kwargs)
        ids = self.tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
        return self._with_eos(ids, isinstance(prompt, list))


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False):
    """`AutoTokenizer.from_pretrained` with a clear one-line error when it cannot be loaded."""
    from transformers import AutoTokenizer

    offline = hub_offline(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code,
                                             local_files_only=bool(offline))
    except Exception as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise InputError(f"cannot load tokenizer: {reason}{offline}", where=name_or_path) from None
