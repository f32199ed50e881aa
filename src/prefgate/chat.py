"""An OpenAI-compatible chat-completions client on the standard library (the judge and the editor use it).

`POST {base_url}/chat/completions` through `urllib.request`, temperature 0. The API key is read at call
time from the environment variable *named* by `api_key_env` and sent as a bearer token; it is never
logged, printed or written anywhere. Failures are one-line `InputError`s naming the URL and who answered
(`role`: "judge", "editor"). Server errors (5xx) and network failures are retried `retries` times.

Redirects are not followed: urllib would resend the `Authorization` header to wherever a 301/302/303 points
(another host included, as a GET without the body), handing the key to a third party. A redirect is a
one-line error naming where it pointed, so the user can set `base_url` to the final address. The header is
also added as an "unredirected" one, so no future redirect handler could forward it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from prefgate.errors import InputError


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ARG002 - urllib's signature
        return None  # urllib then raises the 3xx as an HTTPError


_OPENER = urllib.request.build_opener(_RefuseRedirects)


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

    def _request(self, body: bytes) -> urllib.request.Request:
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"},
                                         method="POST")
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise InputError(f"the environment variable {self.api_key_env} (the {self.role}'s API key) is not set",
                                 field=self.key_field)
            request.add_unredirected_header("Authorization", f"Bearer {key}")  # never sent on to a redirect
        return request

    def complete(self, messages: list[dict[str, str]], **extra: Any) -> str:
        """The reply's `choices[0].message.content`; `extra` goes into the request body (e.g. `seed`)."""
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0,
                           "max_tokens": self.max_tokens, **extra}).encode("utf-8")
        for attempt in range(1 + self.retries):
            request = self._request(body)
            try:
                with _OPENER.open(request, timeout=self.timeout) as response:  # noqa: S310 (user's URL)
                    return self._content(response.read())
            except urllib.error.HTTPError as err:
                if 300 <= err.code < 400:
                    where = err.headers.get("Location") if err.headers else None
                    raise InputError(f"the {self.role} answered HTTP {err.code} {err.reason}, a redirect to "
                                     f"{where or 'an unnamed address'}; prefgate does not follow redirects (the API "
                                     "key would go with it): use the final address as the base URL",
                                     where=self.url) from None
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
