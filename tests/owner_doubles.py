"""Stand-ins for what a model owner talks to: a clock the test moves, a launcher and workers it steps.

The owner's decisions are tested with these (no processes, no model, no sleeps): each test
moves time with `FakeClock.advance` and lets launches and stops finish by setting events,
then awaits what a caller would see.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from common.protocol import Heartbeat, ModelOptions, ReadyInfo
from supervisor.config import ModelSpec
from supervisor.models.owner import ModelOwner
from supervisor.models.snapshot import ModelSnapshot
from supervisor.workers.process import WorkerLoadError

SPEC = ModelSpec(
    name="m",
    ttl=-1,
    preload=False,
    description="",
    options=ModelOptions(backend="faster-whisper", source="bundled", device="cpu", compute_type="int8", concurrency=1),
)


def spec(**fields: object) -> ModelSpec:
    return dataclasses.replace(SPEC, **fields)  # type: ignore[arg-type]


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self._timers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.t

    def timer(self, seconds: float) -> asyncio.Future[None]:
        fired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._timers.append((self.t + seconds, fired))
        self._fire()
        return fired

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self._fire()

    def _fire(self) -> None:
        for deadline, fired in list(self._timers):
            if fired.done():
                self._timers.remove((deadline, fired))
            elif deadline <= self.t:
                fired.set_result(None)
                self._timers.remove((deadline, fired))


class FakeWorker:
    def __init__(self, pid: int, on_exit: Callable[[FakeWorker], None], launcher: FakeLauncher) -> None:
        self.pid = pid
        self.info = ReadyInfo(pid=pid, backend="fake", device="cpu", compute_type="int8", load_seconds=0.0)
        self.exit_code: int | None = None
        self.death_reason: str | None = None
        self.hung = False
        self.last_heartbeat: Heartbeat | None = None  # a fake worker sends none
        self.stopping = asyncio.Event()
        self.stopped = asyncio.Event()
        self._on_exit = on_exit
        self._launcher = launcher

    def rss_bytes(self) -> int:
        return 5 * 1_048_576

    async def stop(self) -> str:
        self.stopping.set()
        await self._launcher.stops_proceed.wait()  # a real stop takes a while: requests arrive meanwhile
        self.stopped.set()
        self._launcher.alive.discard(self.pid)
        return "shutdown"

    def crash(self) -> None:
        self.exit_code = -9
        self._launcher.alive.discard(self.pid)
        self._on_exit(self)


class FakeLauncher:
    """Launches that finish when `proceed` is set (at once by default) and may fail or be aborted."""

    def __init__(self, fail: int = 0, hold: bool = False, ignore_cancel: bool = False) -> None:
        self.workers: list[FakeWorker] = []
        self.fail = fail
        self.ignore_cancel = ignore_cancel  # a launcher that finishes its start even when cancelled
        self.proceed = asyncio.Event()
        self.stops_proceed = asyncio.Event()
        self.stops_proceed.set()
        if not hold:
            self.proceed.set()
        self.launching = asyncio.Event()
        self.calls = 0
        self.aborted = 0
        self.alive: set[int] = set()
        self.most_alive = 0

    async def __call__(self, spec: ModelSpec, on_exit: Callable[[FakeWorker], None]) -> FakeWorker:
        self.calls += 1
        self.launching.set()
        try:
            await self.proceed.wait()
        except asyncio.CancelledError:
            if not self.ignore_cancel:
                self.aborted += 1  # nothing was left running: a real launcher reaps what it started
                raise
        if self.fail:
            self.fail -= 1
            raise WorkerLoadError("model.bin is corrupt")
        worker = FakeWorker(1000 + len(self.workers), on_exit, self)
        self.workers.append(worker)
        self.alive.add(worker.pid)
        self.most_alive = max(self.most_alive, len(self.alive))
        return worker


async def until(owner: ModelOwner, predicate: Callable[[ModelSnapshot], bool]) -> ModelSnapshot:
    """The owner's status once `predicate` holds: each status() lets other tasks post their commands."""
    for _ in range(1000):
        if predicate(status := await owner.status()):
            return status
    raise AssertionError(f"never true: {status}")
