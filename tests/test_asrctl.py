"""`asrctl` against a live server."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ASSETS, Server, free_port


def asrctl(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASR_URL": url, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "supervisor.ctl", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_transcribe_and_status(shared_server: Server) -> None:
    out = asrctl("transcribe", str(ASSETS / "fox.wav"), url=shared_server.url)
    assert out.returncode == 0, out.stderr
    assert "fox" in out.stdout.lower() and "{" not in out.stdout

    out = asrctl("status", url=shared_server.url)
    assert out.returncode == 0, out.stderr
    assert "healthy" in out.stdout
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
