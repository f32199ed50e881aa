"""An OpenAI-compatible chat-completions client on the standard library (the judge and the editor use it).

`POST {base_url}/chat/completions` through `urllib.request`, temperature 0. The API key is read at call
time from the environment variable *named* by `api_key_env` and sent as a bearer token; it is never
logged, printed or written anywhere. Failures are one-line `InputError`s naming the URL and who answered
(`role`: "judge", "editor"). Server errors (5xx) and network failures are retried `retries` times.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from prefgate.errors import InputError


class ChatEndpoint:
    def __init__(self, base_url: str, model: str, *, role: str, api_key_env: str | None = None,
                 key_field: str | None = None, timeout: float = 60.0, max_tokens: int = 256, retries: int = 0):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.role = role
        self.api_key_env = api_key_env
        self.key_field = key_field or role
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.retries = retries

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise InputError(f"the environment variable {self.api_key_env} (the {self.role}'s API key) is not set",
                                 field=self.key_field)
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def complete(self, messages: list[dict[str, str]], **extra: Any) -> str:
        """The reply's `choices[0].message.content`; `extra` goes into the request body (e.g. `seed`)."""
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0,
                           "max_tokens": self.max_tokens, **extra}).encode("utf-8")
        for attempt in range(1 + self.retries):
            request = urllib.request.Request(self.url, data=body, headers=self._headers(), method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (user's URL)
                    return self._content(response.read())
            except urllib.error.HTTPError as err:
                if err.code < 500 or attempt == self.retries:
                    raise InputError(f"the {self.role} answered HTTP {err.code} {err.reason}", where=self.url) from None
            except (urllib.error.URLError, TimeoutError, OSError) as err:
                if attempt == self.retries:
                    reason = getattr(err, "reason", err)
                    raise InputError(f"cannot reach the {self.role}: {reason}", where=self.url) from None
            time.sleep(0.5)
        raise AssertionError("unreachable")  # pragma: no cover

    def _content(self, raw: bytes) -> str:
        try:
            payload = json.loads(raw.decode("utf-8"))
            return str(payload["choices"][0]["message"]["content"] or "")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InputError(f"the {self.role}'s answer is not JSON", where=self.url) from None
        except (KeyError, IndexError, TypeError):
            raise InputError(f"the {self.role}'s answer has no choices[0].message.content", where=self.url) from None
