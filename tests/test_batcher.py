"""The batcher's decisions (worker.engine.batcher): which waiting items share a pass, and in what order.

Pure decision logic: a pass here records what it was given instead of running a model.
Lanes are held by solo jobs until every item waits, so what shares a pass is decided by the
code, not by timing. The same batcher with the real model: test_shared_passes.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import wait_for

from worker.engine.batcher import FILE, FINAL, PARTIAL, Batcher


@dataclass(frozen=True)
class Item:
    name: str
    key: str = "a"
    urgency: int = FILE


class Recorder:
    """A pass that answers each item with its name in upper case, and remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()

    def __call__(self, model: str, items: list[Item]) -> list[str]:
        with self.lock:
            self.calls.append((model, [i.name for i in items]))
        return [i.name.upper() for i in items]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(16) as threads:
        yield threads


def _held(batcher: Batcher[Any, Any], pool: ThreadPoolExecutor) -> Callable[[], None]:
    gate = threading.Event()
    for _ in range(batcher.lanes):
        pool.submit(batcher.solo, lambda _model: gate.wait())
    wait_for(lambda: batcher.busy == batcher.lanes, timeout=10, what="every lane held")
    return gate.set


def _submit(batcher: Batcher[Item, str], pool: ThreadPoolExecutor, items: list[Item]) -> list[Future[list[str]]]:
    """Each item from a request (a thread) of its own, entered in order."""
    futures = []
    for n, item in enumerate(items, 1):
        futures.append(pool.submit(batcher.decode, [item]))
        wait_for(lambda n=n: batcher.waiting == n, timeout=10, what=f"{n} items waiting")
    return futures


def test_items_that_wait_together_share_one_pass_and_each_gets_its_own_result(pool: ThreadPoolExecutor) -> None:
    calls = Recorder()
    batcher: Batcher[Item, str] = Batcher(calls, batch_size=8)
    batcher.add_lane("model")
    release = _held(batcher, pool)
    futures = _submit(batcher, pool, [Item(n) for n in "abcd"])
    release()
    assert [f.result(timeout=10) for f in futures] == [["A"], ["B"], ["C"], ["D"]]
    assert calls.calls == [("model", ["a", "b", "c", "d"])]
    assert (batcher.passes, batcher.items) == (1, 4)


def test_a_lone_item_goes_at_once() -> None:
    calls = Recorder()
    batcher: Batcher[Item, str] = Batcher(calls, batch_size=8)
    batcher.add_lane("model")
    assert batcher.decode([Item("a")]) == ["A"]  # nothing waits to fill a batch
    assert calls.calls == [("model", ["a"])]


def test_only_items_with_one_key_share_a_pass(pool: ThreadPoolExecutor) -> None:
    calls = Recorder()
    batcher: Batcher[Item, str] = Batcher(calls, batch_size=8)
    batcher.add_lane("model")
    release = _held(batcher, pool)
    futures = _submit(batcher, pool, [Item("a1", "a"), Item("b1", "b"), Item("a2", "a")])
    release()
    for f in futures:
        f.result(timeout=10)
    assert [names for _model, names in calls.calls] == [["a1", "a2"], ["b1"]]


def test_two_free_lanes_split_the_waiting_items_and_a_pass_holds_its_share_of_the_batch(
    pool: ThreadPoolExecutor,
) -> None:
    calls = Recorder()
    batcher: Batcher[Item, str] = Batcher(calls, batch_size=4)
    batcher.add_lane("copy 0")
    batcher.add_lane("copy 1")
    assert batcher.per_pass == 2  # the batch's memory, shared by both lanes
    # Both lanes free at once: six waiting items split, and none takes more than its share.
    futures = pool.submit(batcher.decode, [Item(f"x{i}") for i in range(6)])
    assert futures.result(timeout=10) == [f"X{i}" for i in range(6)]
    assert sorted(len(names) for _model, names in calls.calls) == [2, 2, 2]
    assert {model for model, _names in calls.calls} == {"copy 0", "copy 1"}


def test_finals_go_first_then_files_then_partials(pool: ThreadPoolExecutor) -> None:
    calls = Recorder()
    batcher: Batcher[Item, str] = Batcher(calls, batch_size=1)
    batcher.add_lane("model")
    release = _held(batcher, pool)
    items = [Item("partial", "p", PARTIAL), Item("file", "f", FILE), Item("final", "l", FINAL)]
    futures = _submit(batcher, pool, items)
    release()
    for f in futures:
        f.result(timeout=10)
    assert [names for _model, names in calls.calls] == [["final"], ["file"], ["partial"]]


def test_a_failing_pass_fails_its_requests_only_and_the_lane_goes_on(pool: ThreadPoolExecutor) -> None:
    def run_pass(model: str, items: list[Item]) -> list[str]:
        if any(i.name == "bad" for i in items):
            raise MemoryError("out of memory")
        return [i.name for i in items]

    batcher: Batcher[Item, str] = Batcher(run_pass, batch_size=8)
    batcher.add_lane("model")
    release = _held(batcher, pool)
    futures = _submit(batcher, pool, [Item("bad"), Item("good", "other key")])
    release()
    with pytest.raises(MemoryError, match="out of memory"):
        futures[0].result(timeout=10)
    assert futures[1].result(timeout=10) == ["good"]
    assert batcher.solo(lambda model: f"still serving on {model}") == "still serving on model"


def test_a_pass_that_answers_the_wrong_number_of_items_fails_them_instead_of_hanging() -> None:
    batcher: Batcher[Item, str] = Batcher(lambda model, items: [], batch_size=8)
    batcher.add_lane("model")
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        batcher.decode([Item("a")])
