"""Make sure a worker never outlives the supervisor that started it.

Two independent guards, because either alone has a gap:
- Linux's parent-death signal kills us the instant the parent thread exits, but it is
  racy at start-up (the parent may already be gone before we ask for it) and Linux-only;
- a watcher that compares our parent PID with the one we were given closes that race
  and works everywhere, at the cost of up to `interval` seconds of delay.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def _parent_alive(parent_pid: int) -> bool:
    # After re-parenting (to init or a subreaper) our PPID changes, so this check
    # catches a dead parent even when its PID has already been reused.
    return os.getppid() == parent_pid


def request_death_signal() -> None:
    """Ask the kernel to SIGKILL us when the parent dies (Linux only; no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def exit_if_orphaned(parent_pid: int) -> None:
    if parent_pid and not _parent_alive(parent_pid):
        os._exit(3)


def watch_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Start a daemon thread that ends the process as soon as the parent is gone.

    A thread, not an asyncio task: it must fire even while the event loop is stuck.
    """
    if not parent_pid:
        return

    def run() -> None:
        while True:
            time.sleep(interval)
            exit_if_orphaned(parent_pid)

    threading.Thread(target=run, name="parent-watch", daemon=True).start()
