"""Builds the Containerfile's CPU image for tests/fleet/test_container.py.

    python tests/fleet/image_build.py LOG     # build; exit status 0 when the image exists

No image registry is reachable here, so the base image is made locally: Debian bookworm
with python3 and tini (`mmdebstrap`, cached under ~/.cache/asr-supervisor/container),
then `podman import`; the Containerfile takes it as its BASE build argument (users get a
public Python image by default). pip reaches PyPI during the build with the machine's CA
certificates. The suite starts this in the background at its start, at the lowest CPU
priority (tests/conftest.py), so the two minutes of downloads and unpacking overlap the
other tests instead of adding to them; the container test, run last, waits for the status
file this writes when it ends (`wait`): with pytest-xdist it may run in another process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "asr-supervisor" / "container"
BASE_PACKAGES = "python3,python3-venv,ca-certificates,tini"
#: podman as it works on these machines: runc, cgroupfs, limits it may not raise.
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
IMAGE = "localhost/asr-supervisor-test:cpu"


def available() -> bool:
    return bool(shutil.which("podman") and shutil.which("mmdebstrap"))


def build(log: Path) -> int:
    """Build IMAGE, writing every step's output to `log`; the first failing step's status."""
    CACHE.mkdir(parents=True, exist_ok=True)
    base = CACHE / "bookworm-base.tar"
    certs = ["-v", "/etc/ssl/certs:/etc/ssl/certs:ro"] if Path("/etc/ssl/certs").is_dir() else []
    steps: list[list[str]] = []
    if not base.exists():
        partial = base.with_suffix(".partial.tar")
        steps.append(["mmdebstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(partial)])
        steps.append(["mv", str(partial), str(base)])
    steps.append([*PODMAN, "import", str(base), "localhost/asr-base:bookworm"])
    steps.append(
        [
            *PODMAN,
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
        ]
    )
    with log.open("ab") as out:
        for step in steps:
            out.write(f"$ {' '.join(step)}\n".encode())
            out.flush()
            status = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=900, check=False).returncode
            if status:
                return status
    return 0


def status_file(log: Path) -> Path:
    """Where the build started in the background writes its exit status when it ends."""
    return log.with_name(log.name + ".status")


def wait(log: Path, timeout: float) -> int:
    """The exit status of the background build writing `log`, once it ends (124 after `timeout`)."""
    status, deadline = status_file(log), time.monotonic() + timeout
    while not status.exists():
        if time.monotonic() > deadline:
            return 124
        time.sleep(1)
    return int(status.read_text())


def main(log: Path) -> int:
    status_file(log).unlink(missing_ok=True)
    status = build(log)
    partial = status_file(log).with_suffix(".partial")
    partial.write_text(str(status))
    partial.rename(status_file(log))  # whole or not at all, for `wait`
    return status


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
