"""The Containerfile, linted, built and run: a transcription through the image, then a clean stop.

No image registry is reachable here, so the base image is made locally: Debian bookworm
with python3 and tini (`mmdebstrap`, cached under ~/.cache/asr-supervisor/container), then
`podman import`; the Containerfile takes it as its BASE build argument (users get a public
Python image by default). pip reaches PyPI during the build. The container runs as its
image says (non-root, read-only root filesystem, tini as PID 1), serves the bundled model
offline, answers its HEALTHCHECK, transcribes a clip, and stops with exit 0 on SIGTERM.
This is the suite's one image build: about 2 minutes on 2 cores with the base cached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ASSETS, free_port

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "asr-supervisor" / "container"
BASE_PACKAGES = "python3,python3-venv,ca-certificates,tini"
#: podman as it works on these machines: runc, cgroupfs, limits it may not raise, the host's
#: network, and its CA certificates (for pip inside the build).
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
IMAGE = "localhost/asr-supervisor-test:cpu"


def test_hadolint_passes_the_containerfile() -> None:
    hadolint = shutil.which("hadolint") or str(Path(os.sys.executable).parent / "hadolint")
    linted = subprocess.run([hadolint, str(REPO / "Containerfile")], capture_output=True, text=True, timeout=60)
    assert linted.returncode == 0, linted.stdout + linted.stderr


needs_podman = pytest.mark.skipif(
    not (shutil.which("podman") and shutil.which("mmdebstrap")), reason="needs podman, runc and mmdebstrap"
)


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"podman {' '.join(args[:2])}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def image() -> str:
    CACHE.mkdir(parents=True, exist_ok=True)
    base = CACHE / "bookworm-base.tar"
    if not base.exists():
        partial = base.with_suffix(".partial.tar")
        made = subprocess.run(
            ["mmdebstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(partial)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert made.returncode == 0, made.stderr[-3000:]
        partial.rename(base)
    _run("import", str(base), "localhost/asr-base:bookworm")
    certs = ["-v", "/etc/ssl/certs:/etc/ssl/certs:ro"] if Path("/etc/ssl/certs").is_dir() else []
    _run(
        "build",
        "--format",
        "docker",  # OCI images have no HEALTHCHECK: podman keeps it in the docker format only
        "--network",
        "host",
        *LIMITS,
        *certs,
        "--build-arg",
        "BASE=localhost/asr-base:bookworm",
        "-t",
        IMAGE,
        "-f",
        str(REPO / "Containerfile"),
        str(REPO),
        timeout=900,
    )
    return IMAGE


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
