"""An OpenAI-compatible chat-completions client on the standard library (the judge and the editor use it).

`POST {base_url}/chat/completions` through `urllib.request`, temperature 0. The API key is read at call
time from the environment variable *named* by `api_key_env` and sent as a bearer token; it is never
logged, printed or written anywhere. Failures are one-line `InputError`s naming the URL and who answered
(`role`: "judge", "editor").

Retries (`RetryPolicy`, bounded): a rate limit (429), a server error (5xx), 408/409 (the statuses the
`openai` SDK retries too), a timeout or a network failure is tried again, up to `tries` times in all. Between
tries the client waits what the answer's `Retry-After` (seconds or an HTTP date; OpenAI's `retry-after-ms`
too) asks, else an exponential backoff (1, 2, 4, 8 s ... capped at `max_backoff_s`); a `Retry-After` longer
than `max_retry_after_s` ends the retries at once (waiting a minute for a daily quota helps nobody). The wait
goes through `RetryPolicy.sleep`, so tests replace it. When the tries run out, or the endpoint refuses this one
request (400, 413, 422: too long, filtered), the error is an `EndpointError`: a caller that works item by
item (the judge) may record the item as failed and go on. A problem with the set-up, which no later request
would escape, stays a plain `InputError`: the key's variable is unset, 401/403 (the key), 404/405 (the URL).

Redirects are not followed: urllib would resend the `Authorization` header to wherever a 301/302/303 points
(another host included, as a GET without the body), handing the key to a third party. A redirect is a
one-line error naming where it pointed, so the user can set `base_url` to the final address. The header is
also added as an "unredirected" one, so no future redirect handler could forward it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import http.client
import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefgate.errors import InputError

RETRY_STATUS = frozenset({408, 409, 429})  # plus every 5xx
SETUP_STATUS = frozenset({401, 403, 404, 405})  # the key or the URL is wrong: every request would fail alike


class EndpointError(InputError):
    """One request failed after its retries (or the endpoint refused that request); the next may succeed."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long the client tries one request again (see the module docstring)."""

    tries: int = 5  # in all, the first included
    backoff_s: float = 1.0  # the first wait without a Retry-After; doubled each time
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0  # a longer Retry-After stops the retries
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.tries < 1:
            raise ValueError(f"tries must be at least 1, got {self.tries}")

    def wait(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait after failed try number `attempt` (0 = the first), or None: stop trying."""
        if attempt + 1 >= self.tries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_s else None
        return min(self.max_backoff_s, self.backoff_s * 2.0 ** attempt)

    def describe(self) -> dict[str, Any]:
        return {"tries": self.tries, "backoff_s": self.backoff_s, "max_backoff_s": self.max_backoff_s,
                "max_retry_after_s": self.max_retry_after_s}


DEFAULT_RETRY = RetryPolicy()


def retry_after_seconds(headers: Any, now: dt.datetime | None = None) -> float | None:
    """The wait an answer asks for: `retry-after-ms`, else `Retry-After` as seconds or an HTTP date; None when
    absent or unreadable.

    >>> retry_after_seconds({"Retry-After": "3"}), retry_after_seconds({"retry-after-ms": "250"})
    (3.0, 0.25)
    """
    if headers is None:
        return None
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = headers.get("Retry-After")
    seconds = _number(value)
    if seconds is not None or not value:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds())


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ARG002 - urllib's signature
        return None  # urllib then raises the 3xx as an HTTPError


_OPENER = urllib.request.build_opener(_RefuseRedirects)


@dataclass(frozen=True)
class _Retryable:
    message: str
    retry_after: float | None = None


class ChatEndpoint:
    def __init__(self, base_url: str, model: str, *, role: str, api_key_env: str | None = None,
                 key_field: str | None = None, timeout: float = 60.0, max_tokens: int = 256,
                 retry: RetryPolicy | None = None):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.role = role
        self.api_key_env = api_key_env
        self.key_field = key_field or role
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.retry = retry or DEFAULT_RETRY

    def _key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise InputError(f"the environment variable {self.api_key_env} (the {self.role}'s API key) is not set",
                             field=self.key_field)
        return key

    def _request(self, body: bytes, key: str | None) -> urllib.request.Request:
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"},
                                         method="POST")
        if key:
            request.add_unredirected_header("Authorization", f"Bearer {key}")  # never sent on to a redirect
        return request

    def complete(self, messages: list[dict[str, str]], **extra: Any) -> str:
        """The reply's `choices[0].message.content`; `extra` goes into the request body (e.g. `seed`)."""
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0,
                           "max_tokens": self.max_tokens, **extra}).encode("utf-8")
        waited = 0.0
        for attempt in range(self.retry.tries):
            outcome = self._try(body)
            if isinstance(outcome, str):
                return outcome
            wait = self.retry.wait(attempt, outcome.retry_after)
            if wait is None:
                raise EndpointError(self._giving_up(outcome, attempt + 1, waited), where=self.url)
            self.retry.sleep(wait)
            waited += wait
        raise AssertionError("unreachable")  # pragma: no cover - the last try always returns or raises

    def _giving_up(self, outcome: _Retryable, tries: int, waited: float) -> str:
        if tries < self.retry.tries:  # stopped early: the endpoint asked for a longer wait than we give
            return (f"{outcome.message}, and asks to wait {outcome.retry_after:.0f} s (Retry-After), longer than the "
                    f"{self.retry.max_retry_after_s:.0f} s prefgate waits")
        return f"{outcome.message} ({tries} tries over {waited:.0f} s)"

    def _try(self, body: bytes) -> str | _Retryable:
        """One request: the content, a failure worth another try, or an error raised."""
        key = self._key()
        try:
            with _OPENER.open(self._request(body, key), timeout=self.timeout) as response:  # noqa: S310 (user's URL)
                return self._content(response.read())
        except urllib.error.HTTPError as err:
            return self._http_error(err, key)
        except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as err:
            return _Retryable(f"cannot reach the {self.role}: {getattr(err, 'reason', err)}")  # e.g. a cut-off answer

    def _http_error(self, err: urllib.error.HTTPError, key: str | None) -> _Retryable:
        said = f"the {self.role} answered HTTP {err.code} {err.reason}"
        if 300 <= err.code < 400:
            where = err.headers.get("Location") if err.headers else None
            raise InputError(f"{said}, a redirect to {where or 'an unnamed address'}; prefgate does not follow "
                             "redirects (the API key would go with it): use the final address as the base URL",
                             where=self.url)
        if err.code in RETRY_STATUS or err.code >= 500:
            return _Retryable(said, retry_after_seconds(err.headers))
        if err.code in SETUP_STATUS:
            raise InputError(said, where=self.url)
        detail = _error_message(err, key)
        raise EndpointError(f"{said}{f': {detail}' if detail else ''}", where=self.url)

    def _content(self, raw: bytes) -> str:
        try:
            payload = json.loads(raw.decode("utf-8"))
            return str(payload["choices"][0]["message"]["content"] or "")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise EndpointError(f"the {self.role}'s answer is not JSON", where=self.url) from None
        except (KeyError, IndexError, TypeError):
            raise EndpointError(f"the {self.role}'s answer has no choices[0].message.content",
                                where=self.url) from None


def _error_message(err: urllib.error.HTTPError, key: str | None) -> str:
    """The `error.message` of an OpenAI-style error body (why a request was refused), cut to 200 characters,
    with the key masked should the server echo it; empty when there is none."""
    try:
        message = json.loads(err.read().decode("utf-8"))["error"]["message"]
    except Exception:  # any unreadable body: no detail
        return ""
    text = " ".join(str(message).split())[:200]
    return text.replace(key, "***") if key else text
