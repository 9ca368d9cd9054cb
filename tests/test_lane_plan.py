"""Lanes' model copies: the decision (pure), the lanes that open as copies load, and what the budget counts."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from common.backends import describe
from common.lane_plan import RAM_SHARE, plan, requested_lanes
from supervisor.config import ConfigError, load_settings
from supervisor.models import files
from supervisor.models.policy import Limits, Resident, room_mb
from worker.engine.lanes import Lanes

# -- how many lanes --------------------------------------------------------------


def test_auto_lanes_are_two_on_a_multicore_cpu_and_one_on_cuda_or_one_core() -> None:
    assert requested_lanes("auto", "cpu", 16) == 2
    assert requested_lanes(0, "cpu", 2) == 2  # 0 is the old spelling of auto
    assert requested_lanes("auto", "cpu", 1) == 1
    assert requested_lanes("auto", "cuda", 16) == 1
    assert requested_lanes(3, "cuda", 1) == 3  # an explicit number is obeyed


# -- copies or shared weights ----------------------------------------------------


def test_one_lane_is_one_copy() -> None:
    p = plan(1, "copy", "cpu", copy_mb=3000, base_mb=100, room_mb=10, available_mb=10)
    assert (p.lanes, p.copies, p.weights) == (1, 1, "copy")


def test_explicit_choices_are_obeyed_whatever_they_cost() -> None:
    copy = plan(4, "copy", "cpu", copy_mb=3000, base_mb=100, room_mb=10, available_mb=10)
    shared = plan(4, "shared", "cpu", copy_mb=1, base_mb=100, room_mb=None, available_mb=None)
    assert (copy.copies, copy.weights) == (4, "copy")
    assert (shared.copies, shared.weights) == (1, "shared")


def test_auto_copies_what_fits_the_budget_and_a_quarter_of_the_ram() -> None:
    # tiny.en on this kind of machine: 72 MB a copy, 20 GB available, no budget.
    p = plan(2, "auto", "cpu", copy_mb=72, base_mb=110, room_mb=None, available_mb=20_000)
    assert (p.copies, p.weights) == (2, "copy")
    # With a budget: the worker's RSS before loading + every copy must fit its room.
    assert plan(2, "auto", "cpu", copy_mb=72, base_mb=110, room_mb=254, available_mb=20_000).copies == 2


def test_auto_shares_when_the_copies_would_not_fit_the_budget() -> None:
    p = plan(2, "auto", "cpu", copy_mb=72, base_mb=110, room_mb=253, available_mb=20_000)
    assert (p.copies, p.weights) == (1, "shared")
    assert "memory_budget_mb" in p.reason and "71 MB left" in p.reason


def test_auto_shares_when_the_copies_would_take_over_a_quarter_of_the_available_ram() -> None:
    # large-v3 int8 on a 16 GB laptop with 10 GB available: another 3 GB copy is too much.
    p = plan(2, "auto", "cpu", copy_mb=3000, base_mb=110, room_mb=None, available_mb=10_000)
    assert (p.copies, p.weights) == (1, "shared") and "available RAM" in p.reason
    # ... but on a server with 64 GB available it copies.
    assert plan(2, "auto", "cpu", copy_mb=3000, base_mb=110, room_mb=None, available_mb=64_000).copies == 2
    # The bound is on the extra copies: three more of 1000 MB need 12 GB available.
    assert plan(4, "auto", "cpu", copy_mb=1000, base_mb=0, room_mb=None, available_mb=3000 / RAM_SHARE).copies == 4
    assert plan(4, "auto", "cpu", copy_mb=1000, base_mb=0, room_mb=None, available_mb=2999 / RAM_SHARE).copies == 1


def test_auto_shares_on_cuda() -> None:
    p = plan(2, "auto", "cuda", copy_mb=72, base_mb=110, room_mb=None, available_mb=64_000)
    assert (p.copies, p.weights) == (1, "shared") and "VRAM" in p.reason


# -- the budget's side -------------------------------------------------------------


def test_the_room_a_budget_leaves_is_the_budget_minus_the_other_models() -> None:
    others = [Resident("a", 300, True, 0), Resident("b", 250, False, 0)]
    assert room_mb(Limits(memory_budget_mb=1000), others) == 450
    assert room_mb(Limits(memory_budget_mb=500), others) == 0  # over budget already: no room for copies
    assert room_mb(Limits(), others) is None  # no budget: only the RAM bound applies


def _spec(tmp_path: Path, keys: str):  # type: ignore[no-untyped-def]
    config = tmp_path / "asr.toml"
    config.write_text(f'[models.m]\nsource = "bundled"\n{keys}\n')
    return load_settings(config).models["m"]


def test_the_estimate_before_a_first_load_counts_every_copy_that_will_be_taken(tmp_path: Path) -> None:
    one = files.memory_estimate_mb(_spec(tmp_path, 'concurrency = 3\nlane_weights = "shared"'))
    three = files.memory_estimate_mb(_spec(tmp_path, 'concurrency = 3\nlane_weights = "copy"'))
    auto = files.memory_estimate_mb(_spec(tmp_path, "concurrency = 3"))
    weights = one - describe("faster-whisper").runtime_mb
    assert weights > 50  # tiny.en's files
    assert three == pytest.approx(describe("faster-whisper").runtime_mb + 3 * weights, abs=0.2)
    assert auto == one  # auto takes copies only within the room the budget leaves: one must fit


def test_config_takes_auto_numbers_and_the_old_zero_and_names_a_bad_value(tmp_path: Path) -> None:
    assert _spec(tmp_path, "").options.concurrency == "auto"
    assert _spec(tmp_path, "").options.lane_weights == "auto"
    assert _spec(tmp_path, "concurrency = 0").options.concurrency == 0
    assert _spec(tmp_path, 'concurrency = 4\nlane_weights = "copy"').options.lane_weights == "copy"
    with pytest.raises(ConfigError, match="concurrency"):
        _spec(tmp_path, 'concurrency = "many"')
    with pytest.raises(ConfigError, match=r"lane_weights.*'auto', 'copy', 'shared'"):
        _spec(tmp_path, 'lane_weights = "mirror"')


# -- lanes that open as their copies load ------------------------------------------


async def test_a_lane_takes_requests_only_once_its_copy_is_loaded_on_its_own_thread() -> None:
    lanes = Lanes(2, open_now=1)
    loading, loaded = threading.Event(), threading.Event()
    prepared_on: list[str] = []

    def prepare(lane: int) -> None:
        prepared_on.append(threading.current_thread().name)
        loading.set()
        loaded.wait(10)

    def job(tag: str, lane: int) -> tuple[str, int]:
        time.sleep(0.05)
        return tag, lane

    assert (lanes.count, lanes.planned) == (1, 2)
    opening = asyncio.create_task(lanes.open_rest(prepare, idle_s=0.05))
    await asyncio.to_thread(loading.wait, 10)
    # While lane 1's copy loads, two requests share lane 0, one after the other.
    assert await asyncio.gather(lanes.run(job, "a"), lanes.run(job, "b")) == [("a", 0), ("b", 0)]
    loaded.set()
    await opening
    assert prepared_on == ["lane1_0"] and lanes.count == 2
    assert sorted(await asyncio.gather(lanes.run(job, "c"), lanes.run(job, "d"))) == [("c", 0), ("d", 1)]


async def test_a_copy_loads_when_a_request_waits_for_a_lane_not_beside_a_lone_request() -> None:
    """A cold start's first request runs alone; the copy's CPU is spent when it is needed or idle."""
    lanes = Lanes(2, open_now=1)
    prepared = asyncio.Event()
    release_first = threading.Event()
    loop = asyncio.get_running_loop()

    def prepare(lane: int) -> None:
        loop.call_soon_threadsafe(prepared.set)

    def job(tag: str, lane: int) -> tuple[str, int]:
        if tag == "first":
            release_first.wait(10)
        return tag, lane

    first = asyncio.create_task(lanes.run(job, "first"))
    opening = asyncio.create_task(lanes.open_rest(prepare, idle_s=0.05))
    # The clock: lanes with nothing to do, waiting six of those idle periods before they prepare.
    idle, idle_prepared = Lanes(2, open_now=1), asyncio.Event()
    clock = asyncio.create_task(idle.open_rest(lambda lane: loop.call_soon_threadsafe(idle_prepared.set), idle_s=0.3))
    await asyncio.wait_for(idle_prepared.wait(), 5)
    await clock
    assert not prepared.is_set() and lanes.count == 1  # a lone busy lane does not count as idle
    second = asyncio.create_task(lanes.run(job, "second"))  # waits for a lane: the copy is wanted now
    await asyncio.wait_for(prepared.wait(), 5)
    await opening
    assert await second == ("second", 1)  # it took the new lane, not lane 0 once free
    release_first.set()
    assert await first == ("first", 0)


async def test_a_copy_loads_beside_a_long_request() -> None:
    """A long file that arrives first does not keep its own copies from loading until it ends."""
    lanes = Lanes(2, open_now=1)
    prepared = asyncio.Event()
    release = threading.Event()
    loop = asyncio.get_running_loop()
    long_request = asyncio.create_task(lanes.run(lambda lane: release.wait(10) and lane))
    opening = asyncio.create_task(
        lanes.open_rest(lambda lane: loop.call_soon_threadsafe(prepared.set), idle_s=60, busy_s=0.1)
    )
    await asyncio.wait_for(prepared.wait(), 5)  # with the request still running
    await opening
    assert lanes.count == 2 and not long_request.done()
    release.set()
    assert await long_request == 0


async def test_copies_load_by_themselves_once_the_worker_is_idle() -> None:
    lanes = Lanes(3, open_now=1)
    started = time.monotonic()
    await asyncio.wait_for(lanes.open_rest(lambda lane: None, idle_s=0.1), 5)
    assert lanes.count == 3 and time.monotonic() - started >= 0.1


async def test_a_copy_that_fails_to_load_leaves_the_worker_serving_on_fewer_lanes() -> None:
    lanes = Lanes(3, open_now=1)

    def prepare(lane: int) -> None:
        raise MemoryError("no room for another copy")

    await lanes.open_rest(prepare, idle_s=0)
    assert lanes.count == 1 and lanes.busy == 0
    assert await lanes.run(lambda lane: lane) == 0
