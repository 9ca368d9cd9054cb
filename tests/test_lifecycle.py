"""The model owner's decisions, driven through its inbox with a fake launcher and clock.

No processes and no sleeps: each test steps launches, stops and time by hand, and awaits
what a caller would see (a lease, an error, a state).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
from owner_doubles import FakeClock, FakeLauncher, FakeWorker, spec, until

from supervisor.config import ModelSpec
from supervisor.models.capacity import Capacity
from supervisor.models.owner import ModelOwner, ModelUnavailable
from supervisor.models.policy import Limits, Resident, backoff_seconds, choose_victim, fits
from supervisor.models.states import IllegalTransition, State, check_transition


@pytest.fixture
async def owners() -> AsyncIterator[list[ModelOwner]]:
    """Owners made by a test; each is closed at the end (a leaked owner task would hide bugs)."""
    made: list[ModelOwner] = []
    yield made
    await asyncio.wait_for(asyncio.gather(*(o.close() for o in made)), 10)


def _owner(
    owners: list[ModelOwner], launcher: FakeLauncher, clock: FakeClock | None = None, **fields: object
) -> ModelOwner:
    owner = ModelOwner(spec(**fields), launcher, clock=clock or FakeClock())  # type: ignore[arg-type]
    owner.start()
    owners.append(owner)
    return owner


async def _use(owner: ModelOwner, hold: asyncio.Event | None = None, leased: asyncio.Event | None = None) -> int:
    """One request: lease a worker, optionally hold it until `hold` is set; returns the worker's PID
    once the owner has taken the lease back."""
    async with owner.lease() as lease:
        if leased is not None:
            leased.set()
        if hold is not None:
            await hold.wait()
        pid = lease.worker.pid
    await owner.status()
    return pid


# -- pure decisions -------------------------------------------------------------


def test_state_table_rejects_illegal_moves() -> None:
    check_transition(State.UNLOADED, State.STARTING)
    check_transition(State.STARTING, State.STOPPING)  # an unload or shutdown mid-load
    with pytest.raises(IllegalTransition):
        check_transition(State.UNLOADED, State.READY)
    with pytest.raises(IllegalTransition):
        check_transition(State.STOPPING, State.READY)
    assert [backoff_seconds(n) for n in range(9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]


def test_capacity_policy() -> None:
    a, b = Resident("a", 300, idle=True, last_used=5.0), Resident("b", 300, idle=True, last_used=2.0)
    busy = Resident("c", 300, idle=False, last_used=1.0)
    assert choose_victim([a, b, busy]) == "b"  # least recently used among the idle
    assert choose_victim([busy]) is None
    assert fits(Limits(max_loaded_models=2), [a], 300) and not fits(Limits(max_loaded_models=2), [a, b], 300)
    assert not fits(Limits(memory_budget_mb=500), [a], 300)
    assert fits(Limits(memory_budget_mb=100), [], 300)  # a lone model bigger than the budget still loads
    assert fits(Limits(), [a, b, busy], 10_000)  # no limits


# -- one owner --------------------------------------------------------------------


async def test_concurrent_first_requests_start_one_worker(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    owner = _owner(owners, launcher)
    pids = await asyncio.gather(*(_use(owner) for _ in range(8)))
    assert launcher.calls == 1 and set(pids) == {1000}
    status = await owner.status()
    assert status.requests == 8 and status.in_flight == 0
    await owner.close()
    assert launcher.workers[0].stopped.is_set()


async def test_ttl_waits_for_in_flight_requests_then_stops(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    clock = FakeClock()
    owner = _owner(owners, launcher, clock, ttl=0)
    hold, leased = asyncio.Event(), asyncio.Event()
    long_request = asyncio.create_task(_use(owner, hold, leased))
    await leased.wait()
    status = await owner.status()
    assert status.state == "ready" and status.in_flight == 1
    assert await _use(owner) == 1000  # a second request shares the live worker
    clock.advance(60)
    assert (await owner.status()).state == "ready"  # ttl 0, but one request is still in flight
    hold.set()
    assert await long_request == 1000
    await owner.wait_for_state(State.UNLOADED)
    assert launcher.workers[0].stopped.is_set()


async def test_ttl_counts_idle_time_from_the_last_request(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    clock = FakeClock()
    owner = _owner(owners, launcher, clock, ttl=30)
    await _use(owner)
    clock.advance(29)
    await _use(owner)  # the clock starts again
    clock.advance(29)
    status = await owner.status()
    assert status.state == "ready" and status.ttl_remaining == 1
    clock.advance(1)
    await owner.wait_for_state(State.UNLOADED)
    assert (await owner.status()).unloads == {"ttl": 1}


async def test_request_during_stop_gets_a_fresh_worker(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    owner = _owner(owners, launcher, ttl=0)
    launcher.stops_proceed.clear()
    assert await _use(owner) == 1000
    await launcher.workers[0].stopping.wait()
    late = asyncio.create_task(_use(owner))
    status = await until(owner, lambda s: s.queued == 1)
    assert status.state == "stopping"
    launcher.stops_proceed.set()
    assert await late == 1001


async def test_unload_drains_then_serves_later_requests_with_a_new_worker(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    owner = _owner(owners, launcher)
    hold, leased = asyncio.Event(), asyncio.Event()
    busy = asyncio.create_task(_use(owner, hold, leased))
    await leased.wait()
    unload = asyncio.create_task(owner.unload())
    late = asyncio.create_task(_use(owner))
    await until(owner, lambda s: s.queued == 1)  # the unload is draining; the late request waits
    assert not unload.done() and not launcher.workers[0].stopping.is_set()  # the busy request is not cut off
    hold.set()
    assert await busy == 1000
    report = await unload
    assert report["ended_by"] == "shutdown" and report["pid"] == 1000 and report["freed_rss_mb"] == 5.0
    assert await late == 1001


async def test_crash_counts_nothing_in_flight_and_the_next_request_restarts(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    owner = _owner(owners, launcher, ttl=1)
    hold, leased = asyncio.Event(), asyncio.Event()
    doomed = asyncio.create_task(_use(owner, hold, leased))
    await leased.wait()
    launcher.workers[0].crash()
    status = await owner.status()
    assert status.state == "unloaded" and "unexpectedly" in (status.last_error or "")
    hold.set()
    await doomed  # its release belongs to the dead worker and must not disturb the new one
    assert await _use(owner) == 1001
    assert (await owner.status()).in_flight == 0


async def test_load_failure_backs_off_then_retries(owners: list[ModelOwner]) -> None:
    clock = FakeClock()
    launcher = FakeLauncher(fail=1)
    owner = _owner(owners, launcher, clock)
    with pytest.raises(ModelUnavailable, match="corrupt"):
        await _use(owner)
    assert (await owner.status()).state == "failed"
    with pytest.raises(ModelUnavailable, match="retrying in") as err:
        await _use(owner)
    assert err.value.retry_after and err.value.retry_after > 0 and launcher.calls == 1
    clock.advance(backoff_seconds(1) + 0.1)
    assert await _use(owner) == 1000
    assert (await owner.status()).last_error is None


async def test_a_cancelled_waiter_leaves_no_request_counted(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher(hold=True)
    owner = _owner(owners, launcher, ttl=0)
    waiter = asyncio.create_task(_use(owner))
    await launcher.launching.wait()  # queued behind the worker start
    waiter.cancel()
    launcher.proceed.set()
    await owner.wait_for_state(State.UNLOADED)  # ttl 0: nothing holds it
    assert (await owner.status()).in_flight == 0


async def test_closed_owner_refuses_requests(owners: list[ModelOwner]) -> None:
    owner = _owner(owners, FakeLauncher())
    await owner.close()
    with pytest.raises(ModelUnavailable, match="shut down"):
        await _use(owner)


# -- the owner never waits on a start or a stop ----------------------------------------


async def test_shutdown_during_a_slow_load_aborts_it(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher(hold=True)  # a load that would never finish
    owner = _owner(owners, launcher)
    waiting = asyncio.create_task(_use(owner))
    await launcher.launching.wait()
    await asyncio.wait_for(owner.close(), 5)
    assert launcher.aborted == 1 and not launcher.workers
    with pytest.raises(ModelUnavailable, match="shutting down"):
        await waiting


async def test_unload_during_a_load_leaves_no_worker(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher(hold=True)
    owner = _owner(owners, launcher)
    load = asyncio.create_task(owner.load())
    await launcher.launching.wait()
    status = await owner.status()  # the owner answers while the load runs
    assert status.state == "starting"
    report = await asyncio.wait_for(owner.unload(), 5)
    assert report["ended_by"] == "aborted while loading" and launcher.aborted == 1
    with pytest.raises(ModelUnavailable, match="unloaded while loading"):
        await load
    status = await owner.status()
    assert status.state == "unloaded" and status.pid is None and status.unloads == {"unload": 1}


async def test_unload_during_a_load_stops_a_worker_that_started_anyway(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher(hold=True, ignore_cancel=True)  # finishes its start even when cancelled
    owner = _owner(owners, launcher)
    load = asyncio.create_task(owner.load())
    await launcher.launching.wait()
    unload = asyncio.create_task(owner.unload())
    await until(owner, lambda s: s.state == "stopping")
    launcher.proceed.set()
    assert (await unload)["ended_by"] == "shutdown"
    assert launcher.workers[0].stopped.is_set() and not launcher.alive
    with pytest.raises(ModelUnavailable):
        await load


async def test_requests_during_a_load_queue_for_it(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher(hold=True)
    owner = _owner(owners, launcher)
    load = asyncio.create_task(owner.load())
    await launcher.launching.wait()
    requests = [asyncio.create_task(_use(owner)) for _ in range(3)]
    await until(owner, lambda s: s.queued == 3)
    launcher.proceed.set()
    await load
    assert await asyncio.gather(*requests) == [1000, 1000, 1000] and launcher.calls == 1


# -- several owners behind one capacity gate ---------------------------------------


def _fleet(
    owners: list[ModelOwner], launcher: FakeLauncher, names: list[str], clock: FakeClock | None = None, **limits: float
) -> dict[str, ModelOwner]:
    fleet: dict[str, ModelOwner] = {}
    capacity = Capacity(Limits(**limits), lambda: fleet.values())  # type: ignore[arg-type]
    for name in names:
        fleet[name] = ModelOwner(
            spec(name=name),
            launcher,
            clock=clock or FakeClock(),  # type: ignore[arg-type]
            gate=capacity,
            memory_estimate_mb=300,
        )
        fleet[name].start()
        owners.append(fleet[name])
    return fleet


async def test_single_resident_model_switches_cleanly(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    fleet = _fleet(owners, launcher, ["a", "b"], max_loaded_models=1)
    assert await _use(fleet["a"]) == 1000
    assert await _use(fleet["b"]) == 1001
    assert launcher.workers[0].stopped.is_set()  # a was stopped before b started
    assert (await fleet["a"].status()).state == "unloaded" and (await fleet["b"].status()).state == "ready"
    assert await _use(fleet["a"]) == 1002  # and a comes back, evicting b
    assert launcher.workers[1].stopped.is_set() and launcher.most_alive == 1


async def test_eviction_picks_the_least_recently_used_idle_model(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    clock = FakeClock()
    fleet = _fleet(owners, launcher, ["a", "b", "c"], clock, max_loaded_models=2)
    await _use(fleet["a"])
    clock.advance(1)
    await _use(fleet["b"])
    clock.advance(1)
    await _use(fleet["a"])  # a is now more recent than b
    clock.advance(1)
    await _use(fleet["c"])
    states = {n: (await o.status()).state for n, o in fleet.items()}
    assert states == {"a": "ready", "b": "unloaded", "c": "ready"}


async def test_memory_budget_counts_estimates(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    # a measures 5 MB once used; b is estimated at 300 MB until it runs: 305 > 8.
    fleet = _fleet(owners, launcher, ["a", "b"], memory_budget_mb=8)
    await _use(fleet["a"])
    await _use(fleet["b"])
    assert (await fleet["a"].status()).state == "unloaded"


class CopyingLauncher(FakeLauncher):
    """Workers whose READY announces two model copies: 400 MB once both are loaded."""

    async def __call__(self, spec: ModelSpec, on_exit: Callable[[FakeWorker], None]) -> FakeWorker:
        worker = await super().__call__(spec, on_exit)
        worker.info = msgspec.structs.replace(worker.info, concurrency=2, copies=2, copy_mb=150, footprint_mb=400)
        return worker


async def test_memory_budget_counts_every_model_copy_from_ready_on(owners: list[ModelOwner]) -> None:
    launcher = CopyingLauncher()
    # a's worker measures 5 MB, but said at READY it will hold 400 MB with its second copy:
    # the budget counts 400 from then on, so b (300 MB estimated) does not fit beside it.
    fleet = _fleet(owners, launcher, ["a", "b"], memory_budget_mb=650)
    await _use(fleet["a"])
    status = await fleet["a"].status()
    assert (status.copies, status.memory_mb) == (2, 400)
    capacity = fleet["a"]._gate
    assert isinstance(capacity, Capacity) and capacity.room_mb("b") == 250  # what b's worker may fill
    await _use(fleet["b"])
    assert (await fleet["a"].status()).state == "unloaded"


async def test_two_loads_never_both_take_the_last_place(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher(hold=True)
    fleet = _fleet(owners, launcher, ["a", "b"], max_loaded_models=1)
    loads = [asyncio.create_task(fleet[name].load()) for name in ("a", "b")]
    await launcher.launching.wait()
    statuses = [await o.status() for o in fleet.values()]
    assert launcher.calls == 1 and sorted(s.state for s in statuses) == ["starting", "starting"]
    launcher.proceed.set()  # the first loads; the second then evicts it (it is idle) and loads
    await asyncio.gather(*loads)
    assert launcher.calls == 2 and launcher.most_alive == 1
    assert sorted([(await o.status()).state for o in fleet.values()]) == ["ready", "unloaded"]


async def test_a_full_busy_server_refuses_then_serves_once_a_place_frees(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    fleet = _fleet(owners, launcher, ["a", "b"], max_loaded_models=1, wait_seconds=0.2)
    hold, leased = asyncio.Event(), asyncio.Event()
    busy = asyncio.create_task(_use(fleet["a"], hold, leased))
    await leased.wait()
    with pytest.raises(ModelUnavailable, match="busy") as err:
        await _use(fleet["b"])  # waited 0.2 s, a still busy
    assert err.value.retry_after and err.value.retry_after >= 1 and err.value.code == "capacity_full"
    assert (await fleet["b"].status()).state == "unloaded"  # not a load failure: no back-off

    # With a longer wait, the request is served as soon as a's request ends.
    launcher2 = FakeLauncher()
    fleet2 = _fleet(owners, launcher2, ["a", "b"], max_loaded_models=1, wait_seconds=30)
    hold2, leased2 = asyncio.Event(), asyncio.Event()
    busy2 = asyncio.create_task(_use(fleet2["a"], hold2, leased2))
    await leased2.wait()
    waiting = asyncio.create_task(_use(fleet2["b"]))
    await until(fleet2["b"], lambda s: s.state == "starting")
    assert launcher2.calls == 1  # b waits for a place: it has not launched
    hold2.set()
    assert await waiting == 1001
    hold.set()
    assert await busy == 1000 and await busy2 == 1000


async def test_a_long_lease_is_asked_back_when_its_worker_is_wanted(owners: list[ModelOwner]) -> None:
    """A live session holds its lease for as long as people speak: an unload tells it to wind down."""
    launcher = FakeLauncher()
    owner = _owner(owners, launcher)
    async with owner.lease() as lease:
        assert not lease.wind_down.is_set()
        await _use(owner)  # a file request in between asks nothing back
        assert not lease.wind_down.is_set()
        unload = asyncio.create_task(owner.unload())
        await asyncio.wait_for(lease.wind_down.wait(), 5)
        assert not unload.done() and not launcher.workers[0].stopping.is_set()  # it waits for the lease
    assert (await unload)["ended_by"] == "shutdown"
    async with owner.lease() as fresh:  # the next worker's leases start with no notice
        assert fresh.worker.pid == 1001 and not fresh.wind_down.is_set()


async def test_a_bug_in_a_handler_fails_that_call_and_the_owner_goes_on(
    owners: list[ModelOwner], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception in the owner's handler once ended its task, and every caller after it
    waited forever. Now the caller whose command hit it gets an error, and the next is served."""
    owner = _owner(owners, FakeLauncher())
    original = owner._on_acquire
    calls = 0

    def buggy_once(command: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("a bug")
        original(command)

    monkeypatch.setattr(owner, "_on_acquire", buggy_once)
    with pytest.raises(ModelUnavailable, match="internal error"):
        await asyncio.wait_for(_use(owner), 5)
    assert await asyncio.wait_for(_use(owner), 5) > 0
    assert owner.running
