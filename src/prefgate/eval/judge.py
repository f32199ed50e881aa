"""The `judge` scorer: an LLM grades each output A-F against a rubric.

Two back ends, one interface (`judge(output, item) -> Score`):
- `HttpJudge`: any OpenAI-compatible `POST {base_url}/chat/completions` (vLLM, llama.cpp server, OpenAI,
  ...), through `urllib.request`. The API key is read from the environment variable named by
  `api_key_env` at call time; it is sent as a bearer token and never logged or written anywhere.
- `LocalJudge`: a local Hugging Face model, generating greedily.

The prompt (`judge_messages`) shows the question, the reference answer when the item has one, the
rubric (the item's `rubric`, else `DEFAULT_RUBRIC`) and the answer to grade, and asks for a last line
`Grade: X`. `parse_grade` reads the last such line (or a reply that is a lone letter); `+`/`-` are
dropped and E counts as F. The item's score is `GRADE_SCORES[grade]` (A 1.0, B 0.85, C 0.75, D 0.65,
F 0.0: each letter inside its own default band). A reply with no grade is asked again once.

An item the judge cannot grade raises `GradeFailed`: the endpoint failed on it after its bounded retries
(`prefgate.chat.RetryPolicy`: 429, 5xx, timeouts; Retry-After honoured), refused that request, or replied
twice without a grade. The eval records such an item as failed, never as a score (a silently mis-scored item
would corrupt the very numbers the gate relies on), and goes on unless told to stop. A set-up problem (the
key's variable unset, 401/403/404, a redirect) is a plain `InputError` and stops the eval at once.
"""

from __future__ import annotations

import re
from typing import Any

from prefgate.chat import ChatEndpoint, EndpointError, RetryPolicy
from prefgate.errors import InputError
from prefgate.eval.grades import GRADE_SCORES
from prefgate.eval.scorers import Score
from prefgate.eval.suite import SuiteItem

DEFAULT_RUBRIC = (
    "A: correct, complete and helpful. B: correct with minor omissions or unclear wording. "
    "C: partly correct, or correct but with a notable flaw. D: mostly wrong but with some relevant content. "
    "F: wrong, harmful, empty or off-topic."
)

SYSTEM_PROMPT = "You are a strict, fair grader of answers written by an AI assistant."

_GRADE_LINE = re.compile(r"grade\s*[:=\-]?\s*[*_`\"']*\s*([A-F])\s*[+-]?(?![A-Za-z])", re.IGNORECASE)
_LONE_LETTER = re.compile(r"^[*_`\"'\s]*([A-F])[+-]?[*_`\"'.\s]*$", re.IGNORECASE)


class GradeFailed(InputError):
    """The judge gave this item no grade (see the module docstring); the next item may fare better."""


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def judge_messages(output: str, item: SuiteItem) -> list[dict[str, str]]:
    """The chat messages sent to the judge for one item."""
    parts = [f"Question:\n{_prompt_text(item.prompt)}"]
    if item.answer is not None:
        answers = item.answer if isinstance(item.answer, list) else [item.answer]
        parts.append("Reference answer:\n" + "\n".join(str(a) for a in answers))
    parts.append(f"Rubric:\n{item.extra.get('rubric') or DEFAULT_RUBRIC}")
    parts.append(f"Answer to grade:\n{output}")
    parts.append("Give at most two sentences of reasoning, then a last line exactly of the form "
                 "'Grade: X' where X is one of A, B, C, D, F.")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


def parse_grade(reply: str) -> str | None:
    """The letter grade in a judge's reply, or None.

    >>> parse_grade("Mostly right.\\nGrade: B+"), parse_grade("**C**"), parse_grade("no idea")
    ('B', 'C', None)
    """
    found = _GRADE_LINE.findall(reply)
    letter = found[-1] if found else None
    if letter is None:
        lone = _LONE_LETTER.match(reply)
        letter = lone.group(1) if lone else None
    if letter is None:
        return None
    letter = letter.upper()
    return "F" if letter == "E" else letter


class _Judge:
    retries = 1

    def complete(self, messages: list[dict[str, str]]) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __call__(self, output: str, item: SuiteItem) -> Score:
        messages = judge_messages(output, item)
        reply = ""
        for _ in range(1 + self.retries):
            try:
                reply = self.complete(messages)
            except EndpointError as err:
                raise GradeFailed(f"{err.message} (at {err.where})", where=item.where, field="scorer") from None
            letter = parse_grade(reply)
            if letter is not None:
                return Score(GRADE_SCORES[letter], letter, {"judge_reply": reply[-500:]})
        raise GradeFailed(f"the judge's reply has no grade A-F after {1 + self.retries} tries: {reply[:200]!r}",
                          where=item.where, field="scorer")


class HttpJudge(_Judge):
    """An OpenAI-compatible chat-completions endpoint; `base_url` ends before `/chat/completions`."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = None, timeout: float = 60.0,
                 max_tokens: int = 256, retry: RetryPolicy | None = None):
        self.endpoint = ChatEndpoint(base_url, model, role="judge", api_key_env=api_key_env, timeout=timeout,
                                     max_tokens=max_tokens, retry=retry)
        self.url, self.model, self.api_key_env = self.endpoint.url, model, api_key_env

    def describe(self) -> dict[str, Any]:
        """What the report records about the judge (never the key)."""
        return {"kind": "http", "url": self.url, "model": self.model, "api_key_env": self.api_key_env,
                "retry": self.endpoint.retry.describe()}

    def complete(self, messages: list[dict[str, str]]) -> str:
        return self.endpoint.complete(messages)


class LocalJudge(_Judge):
    """A local Hugging Face causal LM (a path, or a run directory) as the judge."""

    def __init__(self, path: str, *, max_new_tokens: int = 64):
        from prefgate.lm.load import load_model

        self.path = path
        self.loaded = load_model(path)
        self.max_new_tokens = max_new_tokens

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "model": self.path}

    def complete(self, messages: list[dict[str, str]]) -> str:
        from prefgate.lm.generate import GenerationConfig, generate

        config = GenerationConfig(max_new_tokens=self.max_new_tokens, batch_size=1)
        return generate(self.loaded.model, self.loaded.tokenizer, [messages], config, progress=False)[0]


def make_judge(url: str | None, model: str | None, api_key_env: str | None, local: str | None) -> _Judge | None:
    """The judge that the `--judge-url/--judge-model/--judge-api-key-env` or `--judge-local` options name,
    or None when neither is given; a one-line InputError for a contradictory or incomplete choice."""
    if url and local:
        raise InputError("give either --judge-url or --judge-local, not both", field="judge")
    if url:
        if not model:
            raise InputError("--judge-url needs --judge-model (the model name the endpoint serves)",
                             field="judge-model")
        return HttpJudge(url, model, api_key_env=api_key_env)
    if local:
        return LocalJudge(local)
    return None
