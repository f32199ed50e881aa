"""The `editor` strategy: a separate model rewrites the gold answer so that it contains one factual error.

Two back ends with one interface, a strategy `(item, rng) -> [(rejected, detail)]`:
- `HttpEditor`: an OpenAI-compatible `POST {base_url}/chat/completions` (`prefgate.chat.ChatEndpoint`). The API
  key is read at call time from the environment variable *named* by `api_key_env` and sent as a bearer
  token; it is never logged, printed or written anywhere (the detail records the URL and model only).
- `LocalEditor`: a local Hugging Face model (a folder or a run directory), generating greedily, in batches:
  `prepare(items)` generates for every item at once, and each call then reads its answer.

The prompt is `template` with `{prompt}` and `{answer}` replaced (plain substitution, so other braces in
the template or the texts are left alone), sent as one user message. Requests are deterministic:
temperature 0, and the seed is sent for endpoints that honour it. An empty reply, or one that is the answer
unchanged, is a skip ("the editor returned the answer unchanged"), never a pair.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from prefgate.chat import ChatEndpoint
from prefgate.errors import InputError
from prefgate.pairs.gold import GoldItem
from prefgate.pairs.strategies import Rejection, Skip

DEFAULT_TEMPLATE = (
    "Rewrite the answer below so that it contains exactly one factual error: one wrong number, name, date or "
    "claim that a careful reader could check. Keep everything else (wording, length, format) the same. "
    "Reply with the rewritten answer only.\n\nQuestion:\n{prompt}\n\nAnswer:\n{answer}"
)


def check_template(template: str) -> str:
    """The template, if it holds both `{prompt}` and `{answer}`; else InputError."""
    missing = [name for name in ("{prompt}", "{answer}") if name not in template]
    if missing:
        raise InputError(f"the editor template must contain {' and '.join(missing)}", field="editor_template")
    return template


def fill_template(template: str, item: GoldItem) -> str:
    return template.replace("{prompt}", item.prompt_text).replace("{answer}", item.answer)


def _clean_reply(reply: str, item: GoldItem) -> str:
    text = reply.strip()
    if not text:
        raise Skip("the editor returned an empty answer")
    if " ".join(text.split()) == " ".join(item.answer.split()):
        raise Skip("the editor returned the answer unchanged")
    return text


class HttpEditor:
    """An OpenAI-compatible chat-completions endpoint; `base_url` ends before `/chat/completions`."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = None,
                 template: str = DEFAULT_TEMPLATE, timeout: float = 60.0, max_tokens: int = 512):
        self.endpoint = ChatEndpoint(base_url, model, role="editor", api_key_env=api_key_env,
                                     key_field="editor_api_key_env", timeout=timeout, max_tokens=max_tokens)
        self.url, self.model = self.endpoint.url, model
        self.template = check_template(template)

    def describe(self) -> dict[str, Any]:
        """What the records and the summary say about the editor (never the key)."""
        return {"kind": "http", "url": self.url, "model": self.model}

    def complete(self, content: str, seed: int) -> str:
        return self.endpoint.complete([{"role": "user", "content": content}], seed=seed)

    def __call__(self, item: GoldItem, rng: random.Random) -> list[Rejection]:
        seed = rng.randrange(2**31)
        text = _clean_reply(self.complete(fill_template(self.template, item), seed), item)
        return [(text, {"editor": self.model, "url": self.url})]


class LocalEditor:
    """A local Hugging Face causal LM as the editor (greedy, batched through `prefgate.lm.generate`)."""

    def __init__(self, path: str, *, template: str = DEFAULT_TEMPLATE, max_new_tokens: int = 256,
                 batch_size: int = 8, dtype: str = "auto", device: str | None = None):
        from prefgate.lm.load import load_model

        self.path = path
        self.template = check_template(template)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.loaded = load_model(path, dtype=dtype, device=device)
        self.replies: dict[str, str] = {}

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "model": self.path}

    def _prompt(self, item: GoldItem):
        content = fill_template(self.template, item)
        if getattr(self.loaded.tokenizer, "chat_template", None):
            return [{"role": "user", "content": content}]
        return content

    def prepare(self, items: Sequence[GoldItem], *, progress: bool = False) -> None:
        """Generate the rewrites of every item not generated yet, in batches."""
        from prefgate.lm.generate import GenerationConfig, generate

        todo = [it for it in items if it.id not in self.replies]
        if not todo:
            return
        config = GenerationConfig(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)
        texts = generate(self.loaded.model, self.loaded.tokenizer, [self._prompt(it) for it in todo], config,
                         progress=progress)
        self.replies.update({it.id: text for it, text in zip(todo, texts, strict=True)})

    def __call__(self, item: GoldItem, rng: random.Random) -> list[Rejection]:  # noqa: ARG002 - strategy signature
        if item.id not in self.replies:
            self.prepare([item])
        return [(_clean_reply(self.replies[item.id], item), {"editor": self.path})]
