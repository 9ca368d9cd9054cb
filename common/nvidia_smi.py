"""GPU memory as `nvidia-smi` reports it: no ML import, so both sides can ask.

The supervisor asks for /health and to wait until a dead worker's VRAM is free; a CUDA
worker asks about itself for its heartbeat. Each call runs a subprocess (tens of
milliseconds, at worst the timeout), so callers keep it off their event loop.
"""

from __future__ import annotations

import shutil
import subprocess

_QUERY_APPS = ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
_TIMEOUT_S = 5
_MIB = 1024 * 1024


def query(args: list[str]) -> list[list[str]] | None:
    """`nvidia-smi ARGS` as CSV rows of stripped fields; None when it is missing or fails."""
    exe = shutil.which("nvidia-smi")  # looked up each call: tests put a stand-in on PATH
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=_TIMEOUT_S, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [[field.strip() for field in line.split(",")] for line in out.splitlines() if line.strip()]


def memory_by_pid() -> dict[int, int] | None:
    """MB of GPU memory each process holds now; None when that cannot be known (no nvidia-smi)."""
    rows = query(_QUERY_APPS)
    if rows is None:
        return None
    usage: dict[int, int] = {}
    for row in rows:
        if len(row) >= 2 and row[0].isdigit():
            usage[int(row[0])] = usage.get(int(row[0]), 0) + (int(row[1]) if row[1].isdigit() else 0)
    return usage


def process_memory_bytes(pid: int) -> int | None:
    """Bytes of GPU memory `pid` holds; None when unknown.

    A process nvidia-smi does not list is unknown rather than 0: inside a container the
    driver reports host PIDs, which never match ours.
    """
    usage = memory_by_pid()
    if usage is None or pid not in usage:
        return None
    return usage[pid] * _MIB
