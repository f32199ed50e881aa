"""Can the Hugging Face hub be asked? Decided in a few seconds, before a library spends a minute retrying.

A name such as `owner/name` that is not a local path is a hub id. Offline, `datasets` and `transformers`
retry the hub for 20-50 s before they give up, and they read `HF_HUB_OFFLINE` only once, at import. So
before a hub id goes to them, `hub_unreachable()` says why the hub cannot be asked now, or None:
- an offline switch set now (`HF_HUB_OFFLINE`, or the library's own `HF_DATASETS_OFFLINE` /
  `TRANSFORMERS_OFFLINE`), read at call time;
- no TCP connection to the hub endpoint (`HF_ENDPOINT`, default https://huggingface.co; through the HTTPS
  proxy where one is set) within `timeout` seconds, name lookup included.
Data loading then fails at once with one line; model and tokenizer loading use the local cache only
(`local_files_only=True`), so a model downloaded earlier still loads offline.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "ON", "YES", "TRUE"}


def offline_switch(*library_vars: str) -> str | None:
    """The name of the offline variable that is set (HF_HUB_OFFLINE or one of `library_vars`), or None."""
    for var in ("HF_HUB_OFFLINE", *library_vars):
        if os.environ.get(var, "").strip().upper() in _TRUE:
            return var
    return None


def hub_unreachable(*library_vars: str, timeout: float = 3.0) -> str | None:
    """Why the hub cannot be asked now (see the module docstring), or None when it answers."""
    var = offline_switch(*library_vars)
    if var:
        return f"{var} is set"
    endpoint = os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    return _probe(endpoint, urllib.request.getproxies().get("https"), timeout)


@functools.lru_cache(maxsize=8)
def _probe(endpoint: str, proxy: str | None, timeout: float) -> str | None:
    """One TCP connection attempt per (endpoint, proxy) and process."""
    url = urlsplit(proxy or endpoint)
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(err.strerror or str(err) or type(err).__name__)

    # the name lookup ignores the socket timeout, so the attempt runs in a thread we stop waiting for
    thread = threading.Thread(target=attempt, daemon=True, name="prefgate-hub-probe")
    thread.start()
    thread.join(timeout + 0.5)
    if not outcome:
        return f"{host}:{port} did not answer within {timeout:g} s"
    return None if outcome[0] is None else f"cannot reach {host}:{port} ({outcome[0]})"


def hub_offline(name_or_path: str) -> str:
    """For a model or tokenizer name that is no local path while the hub cannot be asked: a note for the
    error message, and the caller passes `local_files_only=True`; otherwise ''."""
    if Path(name_or_path).exists():
        return ""
    why = hub_unreachable("TRANSFORMERS_OFFLINE")
    return f" (no such local path, and the hub cannot be asked: {why}; only the local cache was searched)" \
        if why else ""
