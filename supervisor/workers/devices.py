"""What compute this machine has, found without importing an ML library.

CUDA is read from `nvidia-smi` (present wherever the NVIDIA driver is; the query lives in
`common.nvidia_smi`, which a CUDA worker also uses for its heartbeat), Apple's MPS
from the platform, the CPU from the OS. Workers do the authoritative check when they
load (CTranslate2's own device count); this is for /health, `asrctl status`, and for
waiting until a dead worker's VRAM is really free.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import time
from functools import lru_cache
from typing import Any

from common import nvidia_smi

log = logging.getLogger("asr.devices")

_QUERY_GPUS = ["--query-gpu=index,name,memory.total,memory.used", "--format=csv,noheader,nounits"]


def cuda_devices() -> list[dict[str, Any]]:
    rows = nvidia_smi.query(_QUERY_GPUS) or []
    devices = []
    for row in rows:
        try:
            devices.append(
                {"index": int(row[0]), "name": row[1], "memory_total_mb": int(row[2]), "memory_used_mb": int(row[3])}
            )
        except (IndexError, ValueError):
            continue
    return devices


@lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    return {
        "cpu": {"count": os.cpu_count(), "model": platform.processor() or platform.machine()},
        "mps": platform.system() == "Darwin" and platform.machine() == "arm64",
    }


_cache: tuple[float, dict[str, Any]] | None = None
_CACHE_SECONDS = 5.0  # /health is polled; nvidia-smi takes tens of milliseconds


def detect() -> dict[str, Any]:
    """The machine's devices and the best one a model with `device = "auto"` would get."""
    global _cache
    now = time.monotonic()
    if _cache is None or now - _cache[0] > _CACHE_SECONDS:
        cuda = cuda_devices()
        _cache = (now, _static() | {"cuda": cuda, "best": "cuda" if cuda else "cpu"})
    return _cache[1]


def latest() -> dict[str, Any] | None:
    """The last `detect()` reading, without running nvidia-smi: for readers on the event
    loop (the metrics collector), after the caller has refreshed it in a thread."""
    return None if _cache is None else _cache[1]


def cuda_memory_by_pid() -> dict[int, int] | None:
    """MB of GPU memory each process holds now; None when that cannot be known (no nvidia-smi)."""
    return nvidia_smi.memory_by_pid()


def cuda_pids() -> set[int] | None:
    """PIDs holding GPU memory now; None when that cannot be known (no nvidia-smi)."""
    usage = cuda_memory_by_pid()
    return None if usage is None else set(usage)


async def wait_vram_released(pid: int, timeout: float) -> bool:
    """After a CUDA worker exits, wait (bounded) until the driver no longer lists it.

    A reaped process normally frees its VRAM at once, but the driver can lag; starting
    the next model into memory that is still held is how a model swap OOMs.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        pids = await asyncio.to_thread(cuda_pids)
        if pids is None or pid not in pids:
            return True
        if time.monotonic() >= deadline:
            log.warning("pid %d still holds GPU memory %.0fs after exiting", pid, timeout)
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
