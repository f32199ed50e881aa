"""Model families from model names, for the `grader_independence` check.

A grader from the policy's own family tends to prefer that family's answers (self-preference), so a
dataset graded by a sibling of the model being trained rewards its style, not only its correctness.
The table is small on purpose: the first pattern that matches the lower-cased name wins, so more specific
families come first. A name that matches none is its own family: its leading letters ("foo-7b" -> "foo").

    gpt-4o-mini, gpt-4o, openai/gpt-4.1, o3-mini, chatgpt-4o-latest   -> gpt
    llama-3.1-8b, meta-llama/Llama-3-70B, codellama-7b                -> llama
    qwen2.5-7b, Qwen/QwQ-32B                                          -> qwen
    mistral-7b, mixtral-8x7b, ministral-8b                           -> mistral
    claude-3-5-sonnet, gemini-1.5-pro, gemma-2-9b, phi-3-mini, deepseek-v3 -> their own names
"""

from __future__ import annotations

import re

FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("deepseek", re.compile(r"deepseek")),  # first: "deepseek-r1-distill-qwen-7b" counts as deepseek
    ("gpt", re.compile(r"(^|[/_\-\s])(gpt|chatgpt|o[134](-|$)|text-davinci)")),
    ("claude", re.compile(r"claude")),
    ("gemini", re.compile(r"gemini")),
    ("gemma", re.compile(r"gemma")),
    ("llama", re.compile(r"llama")),
    ("qwen", re.compile(r"qwen|qwq")),
    ("mistral", re.compile(r"mistral|mixtral|ministral|codestral")),
    ("phi", re.compile(r"(^|[/_\-\s])phi")),
)

_LEADING_WORD = re.compile(r"[a-z]+")


def model_family(name: str) -> str:
    """The family of a model name (see the module docstring); '' for an empty name."""
    lowered = name.strip().lower()
    for family, pattern in FAMILIES:
        if pattern.search(lowered):
            return family
    base = lowered.rsplit("/", 1)[-1]
    match = _LEADING_WORD.search(base)
    return match.group(0) if match else base
