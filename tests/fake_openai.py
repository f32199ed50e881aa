"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, run in a thread by the test (judge, editor)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    """Answers POST /v1/chat/completions like OpenAI; `reply(messages) -> str` decides the content.

    `status` (default 200) answers every request with that status instead; `failures` is a queue of
    `(status, headers)` answered first, one per request, e.g. `[(429, {"Retry-After": "2"}), (503, {})]`, as a
    rate-limited or overloaded server would (the body is OpenAI's error JSON).
    """

    def __init__(self, reply: Callable[[list[dict]], str]):
        self.reply = reply
        self.requests: list[dict] = []
        self.status = 200
        self.failures: list[tuple[int, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _fail(self, status: int, headers: dict[str, str]) -> None:
                data = json.dumps({"error": {"message": f"fake failure {status}", "type": "fake"}}).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if outer.failures:
                    self._fail(*outer.failures.pop(0))
                    return
                if self.path != "/v1/chat/completions" or outer.status != 200:
                    self._fail(outer.status if outer.status != 200 else 404, {})
                    return
                content = outer.reply(body["messages"])
                payload = {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": content}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
