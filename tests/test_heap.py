"""When the worker gives freed memory back (worker.engine.heap): real lanes, a recorded trim.

The memory itself is measured on a real server in tests/test_long_recordings.py; this pins
the decision: trim once the lanes are quiet after work that grew the RSS, and not after
work that barely did (short requests would pay for pages faulted in again).
"""

from __future__ import annotations

import asyncio

from worker.engine import heap
from worker.engine.lanes import Lanes

MB = 1_048_576


async def test_work_that_grew_the_heap_is_trimmed_once_quiet_and_small_work_is_not() -> None:
    lanes = Lanes(2)
    rss = [300 * MB]
    looked: asyncio.Queue[int] = asyncio.Queue()  # the RSS the loop read after each quiet spell
    trimmed: list[int] = []

    def read_rss() -> int:
        looked.put_nowait(rss[0])
        return rss[0]

    def trim() -> None:
        trimmed.append(rss[0])
        rss[0] = 310 * MB  # what the trim gave back

    def work(grow_mb: int, _lane: int) -> None:
        rss[0] += grow_mb * MB

    task = asyncio.create_task(heap.give_back_when_idle(lanes, read_rss, trim, idle_s=0.01, growth_mb=64))
    try:
        assert await looked.get() == 300 * MB  # where it starts from
        await lanes.run(work, 20)  # a short request: 20 MB more
        assert await looked.get() == 320 * MB
        assert trimmed == [], "a short request's memory was trimmed"
        await lanes.run(work, 500)  # a long file's batch
        assert await looked.get() == 820 * MB
        assert await looked.get() == 310 * MB  # read again after the trim
        assert trimmed == [820 * MB]
        await lanes.run(work, 30)  # 30 MB over what the trim left: not worth it
        assert await looked.get() == 340 * MB
        assert trimmed == [820 * MB]
    finally:
        task.cancel()


async def test_nothing_is_trimmed_where_the_c_library_cannot() -> None:
    lanes = Lanes(1)
    await asyncio.wait_for(heap.give_back_when_idle(lanes, lambda: 0, None), 5)  # returns at once
