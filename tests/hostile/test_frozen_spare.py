"""Frozen (SIGSTOP) and killed workers, spares included, never wedge a load or fail a healthy model.

The servers here run `ready_timeout` at its default (300 s) with a short `heartbeat_timeout`,
so anything that waited for READY from a frozen process would hang these tests.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import cast

import psutil
import pytest
from conftest import Server, wait_for, worker_pids

CONFIG = """
[server]
heartbeat_interval = 0.2
heartbeat_timeout = 3
[defaults]
ttl = -1
[models."tiny.en"]
source = "bundled"
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _spare(server: Server, other_than: tuple[int, ...] = ()) -> int:
    found = wait_for(
        lambda: (pid := server.health()["spare_pid"]) not in (None, *other_than) and pid, 60, what="a warm spare"
    )
    return cast(int, found)


@pytest.fixture
def frozen() -> Iterator[Callable[[int], None]]:
    """SIGSTOP a process; whatever the test's outcome, nothing stays stopped after it."""
    stopped: list[int] = []

    def freeze(pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)

    yield freeze
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_frozen_spare_costs_a_cold_load_seconds_and_the_model_stays_healthy(make_server, frozen) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(CONFIG, warm_spare=True)
    spare = _spare(server)
    frozen(spare)

    response = server.transcribe("fox.wav")  # the client gives up after 60 s; a wedge took 310 s
    assert response.status_code == 200, response.text
    assert "fox" in response.json()["text"].lower()
    worker = int(response.headers["x-asr-worker-pid"])
    assert worker != spare  # loaded on a fresh process
    listed = server.client.get("/v1/models/tiny.en").json()
    assert listed["state"] == "ready" and listed["loaded"]
    wait_for(lambda: not _alive(spare), 10, what="the frozen spare to be killed and reaped")
    replacement = _spare(server, other_than=(spare,))
    assert sorted(worker_pids(server.pid)) == sorted([worker, replacement])  # nothing else left behind

    # The model's own worker frozen while idle: killed after heartbeat_timeout, and the model
    # is merely unloaded (not failed); the next request loads it again, on the new spare.
    frozen(worker)
    wait_for(lambda: server.model()["state"] == "unloaded", 15, what="the frozen worker to be noticed")
    assert "no heartbeat" in server.model()["last_error"]
    assert not _alive(worker)
    response = server.transcribe("short.wav")
    assert response.status_code == 200 and int(response.headers["x-asr-worker-pid"]) == replacement


def test_a_spare_killed_while_being_handed_out_does_not_fail_the_model(make_server, frozen) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(CONFIG, warm_spare=True)
    spare = _spare(server)
    frozen(spare)  # holds it between being taken and answering LOAD, so the kill lands there
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(server.transcribe, "fox.wav")
        wait_for(lambda: server.model()["state"] == "starting", 10, what="the load to take the spare")
        os.kill(spare, signal.SIGKILL)
        response = pending.result(timeout=60)
    assert response.status_code == 200, response.text
    assert int(response.headers["x-asr-worker-pid"]) != spare
    model = server.model()
    assert model["state"] == "ready" and model["last_error"] is None


def test_a_frozen_idle_spare_is_replaced_and_one_frozen_at_shutdown_does_not_hold_it_up(make_server, frozen) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(CONFIG.replace("[defaults]", "stop_timeout = 10\n[defaults]"), warm_spare=True)
    spare = _spare(server)
    frozen(spare)
    replacement = _spare(server, other_than=(spare,))  # killed after heartbeat_timeout, a new one started
    wait_for(lambda: not _alive(spare), 10, what="the frozen spare to be reaped")

    frozen(replacement)
    asked = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("the supervisor did not exit within 30 s")
    # Polite phases for a model's worker would take 2 × stop_timeout (20 s) on a frozen process.
    assert time.monotonic() - asked < 10
    assert not _alive(replacement)
