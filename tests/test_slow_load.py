"""A load that takes its time must not hold anything else up: unload and shutdown abort it.

The model is a hub name whose download goes to a loopback "hub" that accepts connections
and never answers, so the worker sits in its load for as long as the test likes.
"""

from __future__ import annotations

import concurrent.futures
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, all_worker_pids_with_parent_arg, wait_for, worker_pids
from silent_hub import SilentHub, silent_hub_env


@pytest.fixture
def silent_hub() -> Iterator[SilentHub]:
    hub = SilentHub()
    yield hub
    hub.close()


def _config(tmp_path: Path, preload: bool) -> str:
    return f"""
    [server]
    default_model = "slow"
    stop_timeout = 3
    ready_timeout = 120
    [models."slow"]
    source = "acme/slow-model"
    cache_dir = "{tmp_path / "cache"}"
    preload = {str(preload).lower()}
    """


def test_unload_during_a_load_aborts_it_and_leaves_no_process(
    make_server,
    silent_hub: SilentHub,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    server: Server = make_server(_config(tmp_path, preload=False), env=silent_hub_env(silent_hub, tmp_path))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        load = pool.submit(server.client.post, "/v1/model/load", params={"model": "slow"})
        assert silent_hub.connected.wait(60), "the worker never started downloading"
        assert server.model("slow")["state"] == "starting" and worker_pids(server.pid)
        # The owner answers while the load runs, and the unload ends it.
        started = time.monotonic()
        unload = server.client.post("/v1/model/unload", params={"model": "slow"})
        took = time.monotonic() - started
        assert unload.status_code == 200, unload.text
        assert unload.json()["unloaded"][0]["ended_by"] == "aborted while loading"
        refused = load.result()
    assert refused.status_code == 503 and "unloaded while loading" in refused.json()["error"]["message"]
    assert took < 3 * 3, f"unload took {took:.1f}s: longer than the stop phases"
    assert not worker_pids(server.pid)
    model = server.model("slow")
    assert model["state"] == "unloaded" and model["pid"] is None and model["unloads"] == {"unload": 1}
    assert "load aborted" in server.log() and "ended by shutdown" in server.log()


def test_shutdown_during_a_slow_load_is_prompt(make_server, silent_hub: SilentHub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(_config(tmp_path, preload=True), env=silent_hub_env(silent_hub, tmp_path))
    assert silent_hub.connected.wait(60), "the preload never started downloading"
    wait_for(lambda: server.model("slow")["state"] == "starting", 10, what="the preload")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(30)
    took = time.monotonic() - started
    # uvicorn re-raises the signal once its shutdown is complete; systemd counts that as clean.
    assert server.proc.returncode in (0, -signal.SIGTERM), server.log()
    assert "Application shutdown complete" in server.log()
    assert took < 3 * 3, f"shutdown took {took:.1f}s: longer than the stop phases"
    assert not all_worker_pids_with_parent_arg(server.pid)
    assert "ended by shutdown" in server.log()  # the worker left at SHUTDOWN, mid-load: no signal needed
