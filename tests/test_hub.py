"""The hub reachability probe: offline switches read at call time, a connection attempt with a deadline."""

from __future__ import annotations

import socket
import time

import pytest

from prefgate.hub import _probe, hub_offline, hub_unreachable


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "https_proxy",
                "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    _probe.cache_clear()
    yield
    _probe.cache_clear()


@pytest.mark.parametrize("value", ["1", "true", "ON", "yes"])
def test_an_offline_switch_set_after_import_is_honoured(monkeypatch, value):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_unreachable() == "HF_HUB_OFFLINE is set"


def test_a_library_switch_counts_only_where_asked(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert hub_unreachable("HF_DATASETS_OFFLINE") == "HF_DATASETS_OFFLINE is set"
    assert hub_unreachable("TRANSFORMERS_OFFLINE").startswith("cannot reach 127.0.0.1:9")


def test_a_listening_endpoint_is_reachable_and_a_closed_one_is_not(monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_unreachable() is None
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.perf_counter()
    assert hub_unreachable().startswith("cannot reach 127.0.0.1:9 (")
    assert time.perf_counter() - start < 2


def test_a_silent_host_is_given_up_on_after_the_timeout(monkeypatch):
    """An attempt that hangs (a name lookup ignores the socket timeout) is given up on at the deadline: it
    runs in a thread the probe stops waiting for."""
    import prefgate.hub as hub

    def hang(*args, **kwargs):
        time.sleep(3)
        raise OSError("too late")

    monkeypatch.setattr(hub.socket, "create_connection", hang)
    start = time.perf_counter()
    assert _probe("https://example.invalid", None, 0.2) == "example.invalid:443 did not answer within 0.2 s"
    assert time.perf_counter() - start < 2


def test_a_local_path_is_never_probed(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline(str(tmp_path)) == ""
    assert "HF_HUB_OFFLINE is set; only the local cache was searched" in hub_offline("org/name")
