"""`asrctl` against a live server."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ASSETS, Server, free_port


def asrctl(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASR_URL": url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "supervisor.ctl", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_transcribe_and_status(shared_server: Server) -> None:
    out = asrctl("transcribe", str(ASSETS / "fox.wav"), url=shared_server.url)
    assert out.returncode == 0, out.stderr
    assert "fox" in out.stdout.lower() and "{" not in out.stdout

    out = asrctl("status", url=shared_server.url)
    assert out.returncode == 0, out.stderr
    assert "healthy" in out.stdout
    assert "devices: best cpu; CUDA: none" in out.stdout
    assert "tiny.en (default)" in out.stdout and "ready" in out.stdout
    assert str(shared_server.model()["pid"]) in out.stdout

    out = asrctl("models", "list", url=shared_server.url)
    assert out.returncode == 0 and "tiny.en" in out.stdout


def test_errors_are_one_line_and_nonzero(shared_server: Server) -> None:
    out = asrctl("transcribe", str(ASSETS / "fox.wav"), "--model", "nope", url=shared_server.url)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "nope" in out.stderr and "404" in out.stderr

    out = asrctl("status", url=f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 1 and "cannot reach" in out.stderr and out.stderr.strip().count("\n") == 0


def test_load_and_unload_by_hand(make_server) -> None:  # type: ignore[no-untyped-def]
    import psutil
    from conftest import worker_pids

    server: Server = make_server("""
    [server]
    admin_keys = ["boss"]
    [models."tiny.en"]
    source = "bundled"
    ttl = 300
    [models."large-v3"]
    source = "bundled"
    ttl = -1
    """)
    out = asrctl("models", "load", "large-v3", url=server.url)
    assert out.returncode == 1 and "API key" in out.stderr  # admin routes need the admin key

    out = asrctl("models", "load", "large-v3", "--ttl", "600", "--api-key", "boss", url=server.url)
    assert out.returncode == 0, out.stderr
    model = server.model("large-v3")
    assert model["state"] == "ready" and model["ttl"] == 600 and model["rss_mb"] > 20
    pid = model["pid"]
    assert "ready" in out.stdout and str(pid) in out.stdout

    out = asrctl("models", "unload", "large-v3", "--api-key", "boss", url=server.url)
    assert out.returncode == 0, out.stderr
    assert f"worker {pid} ended by shutdown" in out.stdout and "freed" in out.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert server.model("large-v3")["state"] == "unloaded"

    out = asrctl("models", "unload", "large-v3", "--api-key", "boss", url=server.url)
    assert out.returncode == 0 and "was not loaded" in out.stdout

    assert server.transcribe("short.wav").status_code == 200  # /v1 audio needs no key: only admin keys are set
    out = asrctl("models", "unload", "--all", "--api-key", "boss", url=server.url)
    assert out.returncode == 0 and "tiny.en: worker" in out.stdout
    assert worker_pids(server.pid) == []

    out = asrctl("models", "unload", "nope", "--api-key", "boss", url=server.url)
    assert out.returncode == 1 and "nope" in out.stderr


def test_seed_unload_path_waits_for_in_flight_work(make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]

    from conftest import make_long_clip

    server: Server = make_server("[defaults]\nttl = -1\n")
    clip = make_long_clip(tmp_path, repeats=1)
    with server.request_in_flight(clip) as busy:
        report = server.client.post("/v1/model/unload", params={"model": "tiny.en"}).json()
        response = busy.result()
    assert response.status_code == 200 and "weather" in response.json()["text"].lower()  # not cut off
    assert report["unloaded"][0]["ended_by"] == "shutdown" and report["freed_rss_mb"] > 20
    assert server.model()["state"] == "unloaded"
    r = server.client.post("/v1/model/unload")
    assert r.status_code == 400
