"""A private directory for the workers' `ipc://` sockets.

ZeroMQ ipc endpoints are Unix sockets, so the directory's 0700 mode is what keeps other
local users (and the network, which cannot reach a Unix socket at all) off the workers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import psutil

_PREFIX = "asr-supervisor-"


def base_dir(configured: str | None) -> Path:
    if configured:
        return Path(configured)
    return Path(os.environ.get("RUNTIME_DIRECTORY") or os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())


def create(configured: str | None) -> Path:
    """Make a fresh 0700 directory named after our PID, first sweeping dead supervisors' ones."""
    base = base_dir(configured)
    base.mkdir(parents=True, exist_ok=True)
    sweep_stale(base)
    path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=base))  # mkdtemp: mode 0700
    os.chmod(path, 0o700)
    return path


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def sweep_stale(base: Path) -> None:
    """Remove directories left by supervisors that were killed before they could clean up."""
    for entry in base.glob(f"{_PREFIX}*"):
        pid_text = entry.name[len(_PREFIX) :].split("-", 1)[0]
        with contextlib.suppress(ValueError, OSError):
            if entry.stat().st_uid == os.getuid() and not psutil.pid_exists(int(pid_text)):
                shutil.rmtree(entry, ignore_errors=True)
