"""Batched generation: greedy for eval prompts (`generate_ids`), sampled for sample-and-grade (`generate_batch`).

- Prompts: a plain string is prefixed with the system prompt (and a blank line) when one is given and
  tokenised with the tokenizer's special tokens (BOS); a message list goes through the chat template with
  `add_generation_prompt=True`, the system prompt first as a system message (merged into an existing
  first system message).
- Batches: prompts are sorted by length, left-padded (decoder-only models continue from the right edge),
  and generated greedily with the KV cache up to `max_new_tokens`, stopping at EOS.
- Stop strings are applied after decoding: the text is cut at the first occurrence of any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from prefgate import console
from prefgate.data.records import Text
from prefgate.errors import InputError
from prefgate.lm.load import eval_mode, pad_token_id


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 64
    batch_size: int = 8
    stop: tuple[str, ...] = ()
    system_prompt: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size, "stop": list(self.stop),
                "system_prompt": self.system_prompt, "greedy": True}


@dataclass
class Generation:
    prompt_ids: list[int]
    completion_ids: list[int]  # up to and including EOS when the model stopped by itself
    text: str  # decoded completion, cut at the first stop string


def with_system_prompt(prompt: Text, system_prompt: str | None) -> Text:
    """The prompt with the system prompt added (see the module docstring)."""
    if not system_prompt:
        return prompt
    if isinstance(prompt, str):
        return f"{system_prompt}\n\n{prompt}"
    if prompt and prompt[0]["role"] == "system":
        return [{"role": "system", "content": f"{system_prompt}\n\n{prompt[0]['content']}"}, *prompt[1:]]
    return [{"role": "system", "content": system_prompt}, *prompt]


def prompt_ids(tokenizer: Any, prompt: Text, system_prompt: str | None = None) -> list[int]:
    """Token ids of a prompt, ready for generation."""
    prompt = with_system_prompt(prompt, system_prompt)
    if isinstance(prompt, str):
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    else:
        if not getattr(tokenizer, "chat_template", None):
            raise InputError("the suite has message prompts but the tokenizer has no chat template", field="prompt")
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        ids = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
    return list(ids)


def trim_stop(text: str, stops: Sequence[str]) -> str:
    """`text` cut at the earliest occurrence of any stop string.

    >>> trim_stop("42\\nQuestion: next", ["\\nQuestion:", "###"])
    '42'
    """
    cut = len(text)
    for stop in stops:
        if stop:
            at = text.find(stop)
            if at != -1:
                cut = min(cut, at)
    return text[:cut]


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, width - len(row):] = 1
    return input_ids, attention_mask


def _cut_at_eos(ids: list[int], eos_ids: set[int], pad_id: int) -> list[int]:
    for i, tok in enumerate(ids):
        if tok in eos_ids:
            return ids[: i + 1]
    return [t for t in ids if t != pad_id] if pad_id not in eos_ids else ids


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None) or tokenizer.eos_token_id
    values = eos if isinstance(eos, (list, tuple)) else [eos]
    return {int(v) for v in values if v is not None}


@torch.no_grad()
def generate_batch(model: Any, tokenizer: Any, rows: list[list[int]], max_new_tokens: int, *,
                   temperature: float | None = None, top_p: float | None = None,
                   num_return_sequences: int = 1) -> list[list[int]]:
    """New token ids for each prompt row: greedy, or sampled when `temperature` is given (then
    `num_return_sequences` per row, row-major). Left-padded batch, KV cache, cut after the first EOS. The model
    generates in eval mode (no dropout) and is left in the mode it was in (the in-training gate generates from
    the policy, which trains in training mode)."""
    pad_id = pad_token_id(tokenizer)
    eos_ids = _eos_ids(model, tokenizer)
    input_ids, attention_mask = _left_pad(rows, pad_id)
    device = next(model.parameters()).device
    sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    if temperature is not None:
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
    with eval_mode(model):
        out = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                             max_new_tokens=max_new_tokens, num_beams=1, use_cache=True, pad_token_id=pad_id,
                             eos_token_id=sorted(eos_ids) or None, num_return_sequences=num_return_sequences,
                             **sampling)
    new = out[:, input_ids.shape[1]:].tolist()
    return [_cut_at_eos(ids, eos_ids, pad_id) for ids in new]


def generate_ids(model: Any, tokenizer: Any, prompts: Sequence[Text], config: GenerationConfig, *,
                 stops: Sequence[Sequence[str]] | None = None, progress: bool = True) -> list[Generation]:
    """Greedy generations for `prompts`, in their order; `stops` adds per-prompt stop strings."""
    encoded = [prompt_ids(tokenizer, p, config.system_prompt) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    results: list[Generation | None] = [None] * len(encoded)
    with console.progress(len(encoded), "generating", enabled=progress) as advance:
        for start in range(0, len(order), config.batch_size):
            batch = order[start: start + config.batch_size]
            outs = generate_batch(model, tokenizer, [encoded[i] for i in batch], config.max_new_tokens)
            for i, ids in zip(batch, outs, strict=True):
                item_stops = [*config.stop, *(stops[i] if stops else ())]
                text = trim_stop(tokenizer.decode(ids, skip_special_tokens=True), item_stops)
                results[i] = Generation(encoded[i], ids, text)
            advance(len(batch))
    return [r for r in results if r is not None]


def generate(model: Any, tokenizer: Any, prompts: Sequence[Text], config: GenerationConfig, *,
             progress: bool = True) -> list[str]:
    """The decoded, stop-trimmed greedy completions of `prompts`."""
    return [g.text for g in generate_ids(model, tokenizer, prompts, config, progress=progress)]
