"""The Containerfile, linted, built and run: a transcription through the image, then a clean stop.

The image is built by tests/fleet/image_build.py (on a Debian base made with mmdebstrap:
no registry is reachable here), in the background from the suite's start, and this test
runs last. The container runs as its image says (non-root, read-only root filesystem,
tini as PID 1), serves the bundled model offline, answers its HEALTHCHECK, transcribes a
clip, and stops with exit 0 on SIGTERM. This is the suite's one image build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import conftest
import httpx
import image_build
import pytest
from conftest import ASSETS, free_port
from image_build import LIMITS, PODMAN

REPO = Path(__file__).resolve().parents[2]


def test_hadolint_passes_the_containerfile() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    linted = subprocess.run([hadolint, str(REPO / "Containerfile")], capture_output=True, text=True, timeout=60)
    assert linted.returncode == 0, linted.stdout + linted.stderr


needs_podman = pytest.mark.skipif(not image_build.available(), reason="needs podman, runc and mmdebstrap")


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"podman {' '.join(args[:2])}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def image() -> str:
    """The image, from the build the suite started in the background (or built now)."""
    log = conftest.IMAGE_BUILD_LOG
    status = image_build.wait(log, 900) if log.exists() else image_build.build(log)
    assert status == 0, f"the image build failed:\n{log.read_text()[-4000:] if log.exists() else ''}"
    return image_build.IMAGE


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[tuple[str, int]]:
    name = f"asr-test-{os.getpid()}"
    port, wyoming = free_port(), free_port()
    _run(
        "run",
        "--detach",
        "--name",
        name,
        "--publish",
        f"127.0.0.1:{port}:5000",
        "--publish",
        f"127.0.0.1:{wyoming}:10300",
        *LIMITS,
        "--read-only",  # as Kubernetes runs it; podman mounts a tmpfs on /tmp
        "-v",
        f"asr-test-models-{os.getpid()}:/var/cache/asr-supervisor",
        image,
    )
    try:
        yield name, port
    finally:
        subprocess.run([*PODMAN, "rm", "--force", "--time", "0", name], capture_output=True, timeout=60)
        subprocess.run([*PODMAN, "volume", "rm", "--force", f"asr-test-models-{os.getpid()}"], capture_output=True)


def _logs(name: str) -> str:
    done = subprocess.run([*PODMAN, "logs", name], capture_output=True, text=True, timeout=30)
    return (done.stdout + done.stderr)[-4000:]


@needs_podman
@pytest.mark.timeout(900)  # the base image and the build, when nothing is cached: about 2 minutes
def test_the_image_serves_the_bundled_model_and_stops_cleanly(container: tuple[str, int]) -> None:
    name, port = container
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"the container never got ready:\n{_logs(name)}"
        time.sleep(0.2)
    assert subprocess.run([*PODMAN, "healthcheck", "run", name], capture_output=True).returncode == 0
    processes = _run("top", name, "user", "pid", "args").stdout.splitlines()[1:]
    assert processes and all(line.split()[0] == "10001" for line in processes), processes
    assert any(line.split()[1] == "1" and "tini" in line for line in processes), processes  # PID 1 reaps

    with (ASSETS / "fox.wav").open("rb") as audio:
        response = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": audio}, timeout=120)
    assert response.status_code == 200, response.text
    assert "quick brown fox" in response.json()["text"].lower()

    _run("stop", "--time", "60", name, timeout=120)  # SIGTERM to tini, which forwards it
    state = _run("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    assert state == "0", f"exit {state}:\n{_logs(name)}"
