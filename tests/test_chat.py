"""The judge's and the editor's HTTP client: it never hands the API key to wherever a redirect points, and it
retries rate limits, server errors and network failures a bounded number of times, honouring Retry-After."""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prefgate import chat
from prefgate.chat import ChatEndpoint, EndpointError, RetryPolicy, retry_after_seconds
from prefgate.errors import InputError
from prefgate.eval.judge import HttpJudge
from prefgate.pairs.editor import HttpEditor
from tests.fake_openai import FakeOpenAI


def _chat_url(server) -> str:
    return server.base_url + "/chat/completions"


class Server:
    """A 127.0.0.1 server that records every request (any method, its headers) and answers it with a redirect
    to `target` or, without one, with a chat completion."""

    def __init__(self, code: int = 200, target: str | None = None):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                outer.requests.append({"method": self.command, "headers": dict(self.headers)})
                body = b"" if target else json.dumps({"choices": [{"message": {"content": "A"}}]}).encode()
                self.send_response(code)
                if target:
                    self.send_header("Location", target)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET = _answer  # noqa: N815 (http.server's names)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_is_not_followed_and_the_key_stays_home(code, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret-123")
    with Server() as elsewhere:  # another port: another origin; it records GETs too
        target = _chat_url(elsewhere)
        with Server(code, target) as endpoint:
            client = ChatEndpoint(endpoint.base_url, "m", role="judge", api_key_env="JUDGE_KEY",
                                  retry=RetryPolicy(tries=3, sleep=lambda s: None))
            with pytest.raises(InputError) as err:
                client.complete([{"role": "user", "content": "hi"}])
            assert len(endpoint.requests) == 1  # asked once: a redirect is not retried
            assert endpoint.requests[0]["headers"]["Authorization"] == "Bearer sk-secret-123"  # the endpoint's own
        assert elsewhere.requests == []  # nothing, and so no key, reached the other origin
    message = str(err.value)
    assert f"the judge answered HTTP {code}" in message and f"a redirect to {target}" in message
    assert "does not follow redirects" in message and "sk-secret" not in message and "\n" not in message


def test_the_judge_and_the_editor_refuse_redirects_too(monkeypatch):
    monkeypatch.setenv("KEY", "sk-secret-456")
    with Server() as elsewhere, Server(302, _chat_url(elsewhere)) as endpoint:
        for client in (HttpJudge(endpoint.base_url, "m", api_key_env="KEY"),
                       HttpEditor(endpoint.base_url, "m", api_key_env="KEY")):
            with pytest.raises(InputError, match="does not follow redirects"):
                client.endpoint.complete([{"role": "user", "content": "hi"}])
        assert elsewhere.requests == []


def test_plain_urllib_would_have_leaked_the_key():
    """Why the client refuses redirects: urllib's default handler resends the header to the other origin."""
    with Server() as elsewhere, Server(302, _chat_url(elsewhere)) as endpoint:
        request = urllib.request.Request(_chat_url(endpoint), data=b"{}", method="POST",
                                         headers={"Authorization": "Bearer sk-leak"})
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (a local test server)
            response.read()
    assert elsewhere.requests[0]["headers"]["Authorization"] == "Bearer sk-leak"


def test_without_a_redirect_the_key_is_sent(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret-789")
    with FakeOpenAI(lambda messages: "B") as server:
        client = ChatEndpoint(server.base_url, "m", role="judge", api_key_env="JUDGE_KEY")
        assert client.complete([{"role": "user", "content": "hi"}]) == "B"
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-secret-789"


# -- retries -----------------------------------------------------------------------------------------------

HI = [{"role": "user", "content": "hi"}]


class Sleeps(list):
    """Records each wait instead of sleeping, so a retry test takes no time."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(server, sleeps: Sleeps, **policy) -> ChatEndpoint:
    return ChatEndpoint(server.base_url, "m", role="judge", retry=RetryPolicy(sleep=sleeps, **policy))


def test_a_rate_limit_waits_what_retry_after_asks_then_succeeds():
    sleeps = Sleeps()
    with FakeOpenAI(lambda messages: "Grade: A") as server:
        server.failures = [(429, {"Retry-After": "2"}), (503, {"retry-after-ms": "1500"})]
        assert client(server, sleeps).complete(HI) == "Grade: A"
    assert sleeps == [2.0, 1.5] and len(server.requests) == 3


def test_server_errors_back_off_exponentially_and_give_up_after_the_tries():
    sleeps = Sleeps()
    with FakeOpenAI(lambda messages: "A") as server:
        server.failures = [(500, {}), (502, {}), (504, {})]
        assert client(server, sleeps).complete(HI) == "A"
        assert sleeps == [1.0, 2.0, 4.0]
        sleeps.clear()
        server.requests.clear()
        server.status = 503
        with pytest.raises(EndpointError) as err:
            client(server, sleeps).complete(HI)
    assert len(server.requests) == 5 and sleeps == [1.0, 2.0, 4.0, 8.0]  # bounded: 5 tries, 15 s of waiting
    assert str(err.value) == (f"{server.base_url}/chat/completions: the judge answered HTTP 503 Service Unavailable "
                              "(5 tries over 15 s)")


def test_the_backoff_is_capped():
    policy = RetryPolicy(tries=8, backoff_s=1.0, max_backoff_s=5.0)
    assert [policy.wait(k, None) for k in range(8)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0, None]
    assert policy.wait(0, 0.0) == 0.0 and policy.wait(0, 60.0) == 60.0 and policy.wait(0, 61.0) is None
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(tries=0)


def test_a_retry_after_beyond_the_cap_stops_at_once():
    sleeps = Sleeps()
    with FakeOpenAI(lambda messages: "A") as server:
        server.failures = [(429, {"Retry-After": "3600"})]
        with pytest.raises(EndpointError, match="asks to wait 3600 s .Retry-After., longer than the 60 s"):
            client(server, sleeps).complete(HI)
    assert sleeps == [] and len(server.requests) == 1


def test_retry_after_reads_seconds_milliseconds_and_http_dates():
    now = dt.datetime(2025, 1, 15, 10, 0, 0, tzinfo=dt.timezone.utc)
    assert retry_after_seconds({"Retry-After": "7"}, now) == 7.0
    assert retry_after_seconds({"Retry-After": "Wed, 15 Jan 2025 10:00:30 GMT"}, now) == 30.0
    assert retry_after_seconds({"Retry-After": "Wed, 15 Jan 2025 09:59:00 GMT"}, now) == 0.0  # in the past
    assert retry_after_seconds({"retry-after-ms": "20", "Retry-After": "9"}, now) == 0.02
    for bad in ({}, {"Retry-After": "soon"}, {"Retry-After": "-3"}, {"Retry-After": "nan"}, None):
        assert retry_after_seconds(bad, now) is None


def test_a_refused_request_is_not_retried_and_says_why_but_a_setup_error_is_no_endpoint_error():
    sleeps = Sleeps()
    with FakeOpenAI(lambda messages: "A") as server:
        server.failures = [(400, {})]
        with pytest.raises(EndpointError, match="HTTP 400 Bad Request: fake failure 400"):
            client(server, sleeps).complete(HI)
        for status in (401, 403, 404):
            server.failures = [(status, {})]
            with pytest.raises(InputError) as err:
                client(server, sleeps).complete(HI)
            assert not isinstance(err.value, EndpointError) and f"HTTP {status}" in str(err.value)
    assert sleeps == [] and len(server.requests) == 4  # one request each


def test_a_network_failure_is_retried_then_an_endpoint_error():
    sleeps = Sleeps()
    endpoint = ChatEndpoint("http://127.0.0.1:9/v1", "m", role="editor", timeout=2,
                            retry=RetryPolicy(tries=3, sleep=sleeps))
    with pytest.raises(EndpointError, match="cannot reach the editor: .* .3 tries over 3 s.$"):
        endpoint.complete(HI)
    assert sleeps == [1.0, 2.0]


def test_the_default_policy_is_five_tries_with_real_sleep():
    assert chat.DEFAULT_RETRY.tries == 5 and chat.DEFAULT_RETRY.sleep is __import__("time").sleep
    assert ChatEndpoint("http://x/v1", "m", role="judge").retry is chat.DEFAULT_RETRY
