"""Freed memory goes back to the system once the worker has been idle a moment (worker only).

A long file's batch holds a few hundred MB while it is decoded (the decoder's
cross-attention cache, for every window and beam hypothesis in the batch: 92 MB a window
for tiny.en at beam 5), and when the file is done glibc keeps those pages as free heap for
the next allocation: the worker's RSS stayed at the file's peak until the model was
unloaded, an hour or more on a busy box (733 MB against 301 MB loaded, in-process, after a
10-minute file at batch 8). `malloc_trim(0)` hands the free pages back in tens of
milliseconds. Trimming after every request would make the next one fault its pages in
again, so it runs only once the lanes have been quiet for `IDLE_BEFORE_TRIM_S` and RSS has
grown by `TRIM_GROWTH_MB` since the last trim: after long work, not between the short
requests of a busy server or the partials of a live session. The model's own memory and
the peak the supervisor budgets for are untouched: only memory nobody holds goes back.

Where the C library has no `malloc_trim` (musl), nothing is trimmed.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

from worker.engine.lanes import Lanes

log = logging.getLogger("worker")

#: Quiet lanes for this long first: a burst of requests is not interrupted by a trim.
IDLE_BEFORE_TRIM_S = 2.0
#: RSS grown by this much since the last trim is worth giving back.
TRIM_GROWTH_MB = 64
_MB = 1_048_576


def libc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)`, or None where the C library has none."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols: no library search
    except AttributeError:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


async def give_back_when_idle(
    lanes: Lanes,
    rss_bytes: Callable[[], int],
    trim: Callable[[], object] | None,
    idle_s: float = IDLE_BEFORE_TRIM_S,
    growth_mb: float = TRIM_GROWTH_MB,
) -> None:
    """Forever: after each spell of work, once the lanes are quiet, trim the heap if RSS grew."""
    if trim is None:
        log.info("no malloc_trim in this C library: freed memory stays with the worker until it ends")
        return
    kept = rss_bytes()
    while True:
        await lanes.quiet(idle_s)
        before = rss_bytes()
        if before - kept >= growth_mb * _MB:
            await asyncio.to_thread(trim)
            kept = rss_bytes()
            log.info(
                "idle: gave %d MB of freed memory back (RSS %d -> %d MB)",
                (before - kept) // _MB,
                before // _MB,
                kept // _MB,
            )
        await lanes.until_busy()
