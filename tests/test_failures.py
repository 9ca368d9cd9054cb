"""Workers die, supervisors die, models fail to load: the service stays honest and clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
from conftest import Server, all_worker_pids_with_parent_arg, make_long_clip, wait_for, worker_pids

TTL_OFF = """
[defaults]
ttl = -1
[models."tiny.en"]
source = "bundled"
"""


def test_kill_9_during_a_request_gives_503_and_the_next_request_a_new_worker(make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(TTL_OFF)
    assert server.transcribe("short.wav").status_code == 200
    victim = server.model()["pid"]
    long_clip = make_long_clip(tmp_path, repeats=6)

    with server.request_in_flight(long_clip) as pending:
        wait_for(lambda: server.model()["in_flight"] == 1, 30, what="the request to reach the worker")
        os.kill(victim, signal.SIGKILL)
        response = pending.result(timeout=30)

    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "worker_crashed" and error["type"] == "server_error"
    assert "killed by signal 9" in error["message"]

    assert server.proc.poll() is None, "the supervisor must survive a worker crash"
    model = wait_for(lambda: (m := server.model())["state"] == "unloaded" and m, 5, what="crash noticed")
    assert "unexpectedly" in model["last_error"]

    response = server.transcribe("fox.wav")
    assert response.status_code == 200 and "fox" in response.json()["text"].lower()
    assert int(response.headers["x-asr-worker-pid"]) != victim


def test_no_worker_outlives_a_sigkilled_supervisor(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(TTL_OFF)
    assert server.transcribe("short.wav").status_code == 200
    workers = worker_pids(server.pid)
    assert len(workers) == 1

    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()

    def survivors() -> list[int]:
        return [p for p in workers if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]

    # A worker notices its supervisor is gone within its lifeline's poll (about a second).
    wait_for(lambda: not survivors(), 5, what=f"workers {workers} to follow their supervisor")


def test_sigterm_stops_the_supervisor_and_its_workers_cleanly(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(TTL_OFF)
    assert server.transcribe("short.wav").status_code == 200
    worker = server.model()["pid"]
    server.proc.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal after its graceful shutdown; systemd counts that as clean.
    assert server.proc.wait(30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log()
    assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE
    assert "state=closing→ended reason=shutdown" in server.log()  # the shutdown stopped it, and the owner ended
    assert "Traceback" not in server.log()


def test_a_model_that_cannot_load_reports_why_and_backs_off(make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"not a CTranslate2 model")
    server: Server = make_server(f"""
    [models."tiny.en"]
    source = "bundled"
    [models."broken"]
    source = "{broken}"
    """)
    response = server.transcribe("fox.wav", model="broken")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_unavailable" and "failed to load" in error["message"]
    assert "Retry-After" in response.headers

    model = server.model("broken")
    assert model["state"] == "failed" and model["last_error"] and model["retry_in"] is not None
    # During the back-off the error comes straight back, without spawning another worker.
    response = server.transcribe("fox.wav", model="broken")
    assert response.status_code == 503 and "retrying in" in response.json()["error"]["message"]

    # (A missing model directory fails start-up now: tests/test_model_sources.py.)
    assert all_worker_pids_with_parent_arg(server.pid) == []  # failed loads leave no process behind
    assert server.transcribe("fox.wav", model="tiny.en").status_code == 200  # other models unaffected


def test_cuda_asked_for_on_a_machine_without_it_fails_clearly(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server("""
    [models."tiny.en"]
    source = "bundled"
    device = "cuda"
    """)
    response = server.transcribe("fox.wav")
    assert response.status_code == 503
    assert "no CUDA device" in response.json()["error"]["message"]
    assert "no CUDA device" in server.model()["last_error"]


def test_port_in_use_is_a_clean_failure(shared_server: Server) -> None:
    first = shared_server
    second = subprocess.run(
        [sys.executable, "-m", "supervisor", "--config", str(first.config_path), "--port", str(first.port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert "address already in use" in second.stderr.lower()


def test_a_hung_worker_is_killed_and_replaced(make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server("""
    [server]
    heartbeat_interval = 0.2
    heartbeat_timeout = 2
    [defaults]
    ttl = -1
    """)
    assert server.transcribe("short.wav").status_code == 200
    hung = server.model()["pid"]
    long_clip = make_long_clip(tmp_path, repeats=3)
    with server.request_in_flight(long_clip) as pending:
        os.kill(hung, signal.SIGSTOP)  # frozen: alive, but silent
        response = pending.result(timeout=30)
    assert response.status_code == 503, response.text
    assert "no heartbeat" in response.json()["error"]["message"]
    wait_for(
        lambda: not psutil.pid_exists(hung) or psutil.Process(hung).status() == psutil.STATUS_ZOMBIE,
        10,
        what="the hung worker to be killed",
    )
    response = server.transcribe("fox.wav")
    assert response.status_code == 200 and int(response.headers["x-asr-worker-pid"]) != hung
