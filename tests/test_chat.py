"""The judge's and the editor's HTTP client never hands the API key to wherever a redirect points."""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prefgate.chat import ChatEndpoint
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
            client = ChatEndpoint(endpoint.base_url, "m", role="judge", api_key_env="JUDGE_KEY", retries=2)
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
