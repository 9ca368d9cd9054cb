"""The warm spare: a worker with libraries imported, taken by the next load, then replaced."""

from __future__ import annotations

import os
import signal
from typing import cast

import psutil
from conftest import Server, all_worker_pids_with_parent_arg, wait_for

CONFIG = """
[defaults]
ttl = 2
[models."tiny.en"]
source = "bundled"
"""


def _alive(pid: int | None) -> bool:
    return pid is not None and psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def test_first_request_takes_the_spare_and_a_new_spare_follows(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(CONFIG, warm_spare=True)
    spare = cast(int, wait_for(lambda: server.health()["spare_pid"], 30, what="a warm spare"))
    assert server.model()["state"] == "unloaded" and _alive(spare)  # a spare is no model

    response = server.transcribe("fox.wav")
    assert response.status_code == 200 and "fox" in response.json()["text"].lower()
    assert int(response.headers["x-asr-worker-pid"]) == spare  # the spare became the model's worker

    replacement = cast(
        int,
        wait_for(
            lambda: (p := server.health()["spare_pid"]) not in (None, spare) and p, 30, what="a replacement spare"
        ),
    )
    # TTL unload ends the model's worker; the spare stays, ready for the next load.
    wait_for(lambda: server.model()["state"] == "unloaded", 15, what="TTL unload")
    assert not _alive(spare) and _alive(replacement)
    assert all_worker_pids_with_parent_arg(server.pid) == [replacement]

    response = server.transcribe("short.wav")
    assert response.status_code == 200 and int(response.headers["x-asr-worker-pid"]) == replacement


def test_a_spare_that_dies_is_replaced_and_none_outlives_the_supervisor(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(CONFIG, warm_spare=True)
    spare = cast(int, wait_for(lambda: server.health()["spare_pid"], 30, what="a warm spare"))
    os.kill(spare, signal.SIGKILL)
    replacement = cast(
        int,
        wait_for(
            lambda: (p := server.health()["spare_pid"]) not in (None, spare) and p, 30, what="a replacement spare"
        ),
    )
    assert server.transcribe("short.wav").status_code == 200

    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    wait_for(
        lambda: not _alive(replacement) and all_worker_pids_with_parent_arg(server.pid) == [],
        5,
        what="the spare and every worker to follow their supervisor",
    )


def test_a_bad_model_on_a_spare_leaves_no_process(make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken-model"  # passes the start-up check (it has a model.bin), fails to load
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"not a CTranslate2 model")
    server: Server = make_server(f'[models."broken"]\nsource = "{broken}"\n', warm_spare=True)
    spare = cast(int, wait_for(lambda: server.health()["spare_pid"], 30, what="a warm spare"))
    response = server.transcribe("fox.wav", model="broken")
    assert response.status_code == 503 and "failed to load" in response.json()["error"]["message"]
    assert not _alive(spare)  # the spare that tried is gone, not left half-loaded
    # The worker said what is wrong with the model: that is the model's failure, not the
    # spare's, so no fresh process is tried and the model backs off.
    assert server.model("broken")["state"] == "failed"
    assert "fresh worker" not in server.log()
