"""The model owner's decisions, driven with a fake launcher (no processes, no model)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from supervisor.config import ModelSpec
from supervisor.models.owner import ModelSlot, ModelUnavailable
from supervisor.models.states import IllegalTransition, State, backoff_seconds, check_transition
from supervisor.workers.process import WorkerLoadError
from worker.protocol import ModelOptions, ReadyInfo

SPEC = ModelSpec(name="m", ttl=-1, preload=False, description="",
                 options=ModelOptions(backend="faster-whisper", source="bundled", device="cpu", compute_type="int8",
                                      cache_dir=None, cpu_threads=0, concurrency=1, beam_size=5))


class FakeWorker:
    def __init__(self, pid: int, on_exit: Callable[[FakeWorker], None]) -> None:
        self.pid = pid
        self.info = ReadyInfo(pid=pid, backend="fake", device="cpu", compute_type="int8", load_seconds=0.0)
        self.exit_code: int | None = None
        self.stopped = False
        self._on_exit = on_exit

    def rss_bytes(self) -> int:
        return 5 * 1_048_576

    async def stop(self) -> str:
        await asyncio.sleep(0.05)  # a real stop takes a while: requests arrive meanwhile
        self.stopped = True
        return "shutdown"

    def crash(self) -> None:
        self.exit_code = -9
        self._on_exit(self)


class FakeLauncher:
    def __init__(self, fail: int = 0) -> None:
        self.workers: list[FakeWorker] = []
        self.fail = fail

    async def __call__(self, spec: ModelSpec, on_exit: Callable) -> FakeWorker:  # type: ignore[type-arg]
        await asyncio.sleep(0.05)
        if self.fail:
            self.fail -= 1
            raise WorkerLoadError("model.bin is corrupt")
        worker = FakeWorker(1000 + len(self.workers), on_exit)
        self.workers.append(worker)
        return worker


def _slot(launcher: FakeLauncher, clock: Callable[[], float] | None = None, **spec: object) -> ModelSlot:
    slot = ModelSlot(dataclasses.replace(SPEC, **spec), launcher, **({"clock": clock} if clock else {}))  # type: ignore[arg-type]
    slot.start()
    return slot


async def _use(slot: ModelSlot, hold: float = 0.0) -> int:
    async with slot.lease() as worker:
        await asyncio.sleep(hold)
        return worker.pid


def test_state_table_rejects_illegal_moves() -> None:
    check_transition(State.UNLOADED, State.STARTING)
    with pytest.raises(IllegalTransition):
        check_transition(State.UNLOADED, State.READY)
    with pytest.raises(IllegalTransition):
        check_transition(State.STOPPING, State.READY)
    assert [backoff_seconds(n) for n in range(0, 9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]


async def test_concurrent_first_requests_start_one_worker() -> None:
    launcher = FakeLauncher()
    slot = _slot(launcher)
    pids = await asyncio.gather(*(_use(slot, 0.01) for _ in range(8)))
    assert len(launcher.workers) == 1 and set(pids) == {1000}
    assert slot.snapshot()["requests"] == 8 and slot.snapshot()["in_flight"] == 0
    await slot.close()
    assert launcher.workers[0].stopped


async def test_ttl_waits_for_in_flight_requests_then_stops() -> None:
    launcher = FakeLauncher()
    slot = _slot(launcher, ttl=0)
    long_request = asyncio.create_task(_use(slot, hold=0.3))
    await asyncio.sleep(0.1)
    assert slot.snapshot()["state"] == "ready" and slot.snapshot()["in_flight"] == 1
    assert await _use(slot) == 1000  # a second request shares the live worker
    assert slot.snapshot()["state"] == "ready"  # ttl 0, but one request is still in flight
    await long_request
    await asyncio.sleep(0.2)
    assert slot.snapshot()["state"] == "unloaded" and launcher.workers[0].stopped
    await slot.close()


async def test_request_during_stop_gets_a_fresh_worker() -> None:
    launcher = FakeLauncher()
    slot = _slot(launcher, ttl=0)
    assert await _use(slot) == 1000
    await asyncio.sleep(0.01)
    assert slot.snapshot()["state"] == "stopping"
    assert await _use(slot) == 1001
    await slot.close()


async def test_unload_drains_then_serves_later_requests_with_a_new_worker() -> None:
    launcher = FakeLauncher()
    slot = _slot(launcher)
    busy = asyncio.create_task(_use(slot, hold=0.2))
    await asyncio.sleep(0.1)
    unload = asyncio.create_task(slot.unload())
    await asyncio.sleep(0.01)
    late = asyncio.create_task(_use(slot))
    await asyncio.sleep(0.05)
    assert not unload.done() and not launcher.workers[0].stopped  # the busy request is not cut off
    assert await busy == 1000
    report = await unload
    assert report["ended_by"] == "shutdown" and report["pid"] == 1000 and report["freed_rss_mb"] == 5.0
    assert await late == 1001
    await slot.close()


async def test_crash_counts_nothing_in_flight_and_the_next_request_restarts() -> None:
    launcher = FakeLauncher()
    slot = _slot(launcher, ttl=1)
    started = asyncio.Event()

    async def doomed() -> None:
        async with slot.lease():
            started.set()
            await asyncio.sleep(0.2)

    task = asyncio.create_task(doomed())
    await started.wait()
    launcher.workers[0].crash()
    await asyncio.sleep(0.01)
    assert slot.snapshot()["state"] == "unloaded" and "unexpectedly" in slot.snapshot()["last_error"]
    await task  # its release belongs to the dead worker and must not disturb the new one
    assert await _use(slot, 0.05) == 1001
    await asyncio.sleep(0.01)  # let the owner take the release
    assert slot.snapshot()["in_flight"] == 0
    await slot.close()


async def test_load_failure_backs_off_then_retries() -> None:
    now = [0.0]
    launcher = FakeLauncher(fail=1)
    slot = _slot(launcher, clock=lambda: now[0])
    with pytest.raises(ModelUnavailable, match="corrupt"):
        await _use(slot)
    assert slot.snapshot()["state"] == "failed"
    with pytest.raises(ModelUnavailable, match="retrying in") as err:
        await _use(slot)
    assert err.value.retry_after and err.value.retry_after > 0
    now[0] += backoff_seconds(1) + 0.1
    assert await _use(slot) == 1000
    assert slot.snapshot()["last_error"] is None
    await slot.close()


async def test_a_cancelled_waiter_leaves_no_request_counted() -> None:
    launcher = FakeLauncher()
    slot = _slot(launcher, ttl=0)
    waiter = asyncio.create_task(_use(slot))
    await asyncio.sleep(0.01)  # queued behind the worker start
    waiter.cancel()
    await asyncio.sleep(0.2)
    assert slot.snapshot()["in_flight"] == 0
    assert slot.snapshot()["state"] == "unloaded"  # ttl 0: nothing holds it
    await slot.close()


async def test_closed_slot_refuses_requests() -> None:
    slot = _slot(FakeLauncher())
    await slot.close()
    with pytest.raises(ModelUnavailable, match="shut down"):
        await _use(slot)


# -- capacity: the owner asks the gate before it spawns ---------------------------

from supervisor.models.capacity import Capacity, Limits  # noqa: E402


def _fleet(launcher: FakeLauncher, names: list[str], **limits: float) -> dict[str, ModelSlot]:
    slots: dict[str, ModelSlot] = {}
    capacity = Capacity(Limits(**limits), lambda: list(slots.values()))  # type: ignore[arg-type]
    for name in names:
        slots[name] = ModelSlot(dataclasses.replace(SPEC, name=name), launcher, gate=capacity,  # type: ignore[arg-type]
                                memory_estimate_mb=300)
        slots[name].start()
    return slots


async def test_single_resident_model_switches_cleanly() -> None:
    launcher = FakeLauncher()
    slots = _fleet(launcher, ["a", "b"], max_loaded_models=1)
    assert await _use(slots["a"]) == 1000
    assert await _use(slots["b"]) == 1001
    assert launcher.workers[0].stopped  # a was stopped before b started
    assert slots["a"].snapshot()["state"] == "unloaded" and slots["b"].snapshot()["state"] == "ready"
    assert await _use(slots["a"]) == 1002  # and a comes back, evicting b
    assert launcher.workers[1].stopped
    for slot in slots.values():
        await slot.close()


async def test_eviction_picks_the_least_recently_used_idle_model() -> None:
    launcher = FakeLauncher()
    slots = _fleet(launcher, ["a", "b", "c"], max_loaded_models=2)
    await _use(slots["a"])
    await _use(slots["b"])
    await _use(slots["a"])  # a is now more recent than b
    await asyncio.sleep(0.01)
    await _use(slots["c"])
    states = {n: s.snapshot()["state"] for n, s in slots.items()}
    assert states == {"a": "ready", "b": "unloaded", "c": "ready"}
    for slot in slots.values():
        await slot.close()


async def test_memory_budget_counts_estimates() -> None:
    launcher = FakeLauncher()
    # a measures 5 MB once used; b is estimated at 300 MB until it runs: 305 > 8.
    slots = _fleet(launcher, ["a", "b"], memory_budget_mb=8)
    await _use(slots["a"])
    await _use(slots["b"])
    assert slots["a"].snapshot()["state"] == "unloaded"
    for slot in slots.values():
        await slot.close()


async def test_a_full_busy_server_refuses_then_serves_once_a_place_frees() -> None:
    launcher = FakeLauncher()
    slots = _fleet(launcher, ["a", "b"], max_loaded_models=1, wait_seconds=0.2)
    busy = asyncio.create_task(_use(slots["a"], hold=0.5))
    await asyncio.sleep(0.1)
    with pytest.raises(ModelUnavailable, match="busy") as err:
        await _use(slots["b"])  # waited 0.2 s, a still busy
    assert err.value.retry_after and err.value.retry_after >= 1
    assert slots["b"].snapshot()["state"] == "unloaded"  # not a load failure: no back-off

    # With a longer wait, the request is served as soon as a's request ends.
    slots2 = _fleet(FakeLauncher(), ["a", "b"], max_loaded_models=1, wait_seconds=5)
    busy2 = asyncio.create_task(_use(slots2["a"], hold=0.3))
    await asyncio.sleep(0.1)
    assert await _use(slots2["b"]) == 1001
    assert await busy == 1000 and await busy2 == 1000
    for slot in [*slots.values(), *slots2.values()]:
        await slot.close()
