"""A server that cannot start says why in one line, exits non-zero, and leaves nothing behind.

Under systemd, a server that logged 'startup failed' and kept running would look active
while serving nothing, with its warm spare still holding memory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import all_worker_pids_with_parent_arg, free_port

#: "Within a few seconds": start-up itself takes about two on a loaded 2-core machine.
BOUND = 30.0

CONFIG = """
[server]
warm_spare = true
{extra}
[models."tiny.en"]
source = "bundled"
ttl = -1
preload = true
"""


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _start(tmp_path: Path, *args: str, extra: str = "") -> tuple[subprocess.CompletedProcess[str], float, list[int]]:
    """Run the supervisor to its exit; return it, how long it ran, and the workers it left."""
    config = tmp_path / "asr.toml"
    config.write_text(textwrap.dedent(CONFIG.format(extra=extra)))
    env = {k: v for k, v in os.environ.items() if k != "ASR_CONFIG"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        stdout, stderr = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"the supervisor was still running after {BOUND}s:\n{stderr}")
    elapsed = time.monotonic() - started
    left = all_worker_pids_with_parent_arg(proc.pid)
    for pid in left:  # the test fails below; do not leave them to the next one
        psutil.Process(pid).kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), elapsed, left


def _assert_failed_clearly(result: subprocess.CompletedProcess[str], left: list[int], *expected: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("asr-supervisor: "), result.stderr
    for part in expected:
        assert part in last, result.stderr
    assert not left, f"workers left behind: {left}"


def test_wyoming_port_taken(tmp_path: Path, taken_port: int) -> None:
    result, elapsed, left = _start(tmp_path, "--port", str(free_port()), "--wyoming-port", str(taken_port))
    _assert_failed_clearly(result, left, "Wyoming", f"127.0.0.1:{taken_port}", "in use")
    assert elapsed < BOUND


def test_http_port_taken(tmp_path: Path, taken_port: int) -> None:
    result, elapsed, left = _start(tmp_path, "--port", str(taken_port), "--wyoming-port", str(free_port()))
    _assert_failed_clearly(result, left, "HTTP", f"127.0.0.1:{taken_port}", "in use")
    assert elapsed < BOUND


def test_unwritable_runtime_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # unwritable below it, for root too
    result, _, left = _start(
        tmp_path,
        "--port",
        str(free_port()),
        "--wyoming-port",
        str(free_port()),
        extra=f'runtime_dir = "{blocker}/run"',
    )
    _assert_failed_clearly(result, left, "runtime directory", str(blocker), "runtime_dir")


def test_an_address_that_is_not_ours(tmp_path: Path) -> None:
    result, _, left = _start(
        tmp_path, "--host", "192.0.2.1", "--port", str(free_port()), "--wyoming-port", str(free_port())
    )
    _assert_failed_clearly(result, left, "HTTP", "192.0.2.1:")
