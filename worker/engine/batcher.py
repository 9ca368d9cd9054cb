"""One model's compute lanes, and the work of every request and live session waiting for them.

Each request runs on a slot, one of the worker's request threads (worker.engine.lanes).
When it has items to decode (a backend's windows) it hands them here and waits. The model
runs only on compute lanes: one thread per model copy (or per worker of a library that
shares one copy), here. A lane that is free takes the waiting items that can go through
one call with the most urgent (live finals, then files, then live partials; oldest first),
runs the backend's pass on them, and hands each its result. Items that wait while the
lanes are busy gather into the next pass by themselves, so nothing waits on purpose to
fill a batch: a lone item goes at once.

Which items may share a call is the backend's: each item has a `key`, and only items with
equal keys share a pass. A pass takes at most its fair share of the waiting items with its
key (with two lanes free and six items, three each: on a CPU two calls side by side beat
one twice as wide, as beam search and small batches leave threads idle), and at most
`per_pass`: `batch_size` shared by the open lanes, so that what the passes hold at once
(their memory) is what `batch_size` allowed, whatever the number of lanes.

Other model work a request needs (a language detected, words aligned) goes through
`solo`: one job on a compute lane, so the model runs on no more threads than lanes.

The backends: worker.backends.faster_whisper.passes (Whisper's windows) and
worker.backends.parakeet.backend (Parakeet's stretches of audio).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
ItemT = TypeVar("ItemT", bound="Item")
ResultT = TypeVar("ResultT")

#: How urgent an item is: a pass serves the most urgent waiting item's key first.
FINAL, FILE, PARTIAL = 0, 1, 2
URGENCY = {"final": FINAL, None: FILE, "partial": PARTIAL}


class Item(Protocol):
    """What a backend hands the batcher: which items it may share a call with, and how urgent it is."""

    @property
    def key(self) -> Hashable: ...

    @property
    def urgency(self) -> int: ...


#: A backend's pass: the model of a lane and the items of one call; their results, in order.
Pass = Callable[[Any, list[ItemT]], list[ResultT]]


@dataclass(frozen=True)
class Work:
    """What the compute lanes did since the start, for the heartbeat: seconds in the model on
    files and on live sessions (a pass's time shared by its items), passes and items."""

    file_seconds: float
    live_seconds: float
    passes: int
    items: int


@dataclass(eq=False)
class _Job:
    urgency: int
    key: Hashable
    item: Any = None  # an Item; None for a solo job
    fn: Callable[[Any], Any] | None = None  # a solo job's work
    done: Future[Any] = field(default_factory=Future)
    seq: int = 0


class Batcher(Generic[ItemT, ResultT]):
    """The compute lanes of one model, and the items waiting for them."""

    def __init__(self, run_pass: Pass[ItemT, ResultT], batch_size: int, name: str = "compute") -> None:
        """`run_pass(model, items)` decodes items of one key in one call; `batch_size`: the most
        items all lanes' passes hold at once (their memory)."""
        self._run_pass = run_pass
        self._batch_size = max(1, batch_size)
        self._name = name
        self._lock = threading.Lock()
        self._models: list[Any] = []
        self._threads: list[ThreadPoolExecutor] = []
        self._free: set[int] = set()
        self._waiting: list[_Job] = []  # in the order they came
        self._seq = itertools.count()
        #: Passes run and items they held, since the start: items / passes is the mean batch.
        self.passes = 0
        self.items = 0
        self._seconds = {FINAL: 0.0, FILE: 0.0, PARTIAL: 0.0}  # lanes' time in the model, by urgency

    def add_lane(self, model: Any) -> None:
        """Open one more compute lane, on `model` (a copy of its own, or the first one shared)."""
        with self._lock:
            lane = len(self._models)
            self._models.append(model)
            self._threads.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self._name}{lane}"))
            self._free.add(lane)
            self._dispatch()

    @property
    def lanes(self) -> int:
        return len(self._models)

    @property
    def busy(self) -> int:
        """Compute lanes running a pass or a solo job now."""
        with self._lock:
            return len(self._models) - len(self._free)

    @property
    def waiting(self) -> int:
        """Items and solo jobs waiting for a compute lane."""
        with self._lock:
            return len(self._waiting)

    @property
    def per_pass(self) -> int:
        """The most items one pass holds: `batch_size` shared by the open lanes."""
        return max(1, self._batch_size // max(1, len(self._models)))

    def work(self) -> Work:
        with self._lock:
            seconds = self._seconds
            return Work(seconds[FILE], seconds[FINAL] + seconds[PARTIAL], self.passes, self.items)

    def decode(self, items: Sequence[ItemT]) -> list[ResultT]:
        """Each item's result, once a pass has run it (blocks: call from a slot's thread)."""
        return [done.result() for done in self.submit(items)]

    def submit(self, items: Sequence[ItemT]) -> list[Future[ResultT]]:
        """Each item's result to come: for a caller that uses the first before the last is done."""
        jobs = [_Job(item.urgency, item.key, item=item) for item in items]
        self._enter(jobs)
        return [job.done for job in jobs]

    def solo(self, fn: Callable[[Any], T], urgency: int = FILE) -> T:
        """`fn(model)`, run alone on a compute lane: model work outside the backend's passes."""
        job = _Job(urgency, object(), fn=fn)  # a key of its own: it never shares a pass
        self._enter([job])
        result: T = job.done.result()
        return result

    def _enter(self, jobs: list[_Job]) -> None:
        with self._lock:
            for job in jobs:
                job.seq = next(self._seq)
                self._waiting.append(job)
            self._dispatch()

    def _dispatch(self) -> None:
        """Start a pass on each free lane while items wait (the lock is held)."""
        while self._free and self._waiting:
            lane = min(self._free)  # the lowest lane: a lone request keeps one thread's caches warm
            first = min(self._waiting, key=lambda j: (j.urgency, j.seq))
            group = [j for j in self._waiting if j is first or (j.fn is None and j.key == first.key)]
            share = -(-len(group) // len(self._free))
            taken = group[: min(self.per_pass, share)]
            chosen = set(map(id, taken))
            self._waiting = [j for j in self._waiting if id(j) not in chosen]
            self._free.discard(lane)
            self._threads[lane].submit(self._run, lane, taken)

    def _run(self, lane: int, jobs: list[_Job]) -> None:
        model = self._models[lane]
        started = time.perf_counter()
        try:
            if jobs[0].fn is not None:
                outcomes: list[Any] = [jobs[0].fn(model)]
            else:
                outcomes = self._run_pass(model, [job.item for job in jobs])
                with self._lock:
                    self.passes += 1
                    self.items += len(jobs)
            if len(outcomes) != len(jobs):
                raise RuntimeError(f"a pass gave {len(outcomes)} results for {len(jobs)} items")
        except Exception as exc:  # noqa: BLE001 (handed to the requests that wait for it)
            for job in jobs:
                job.done.set_exception(exc)
        else:
            for job, outcome in zip(jobs, outcomes, strict=True):
                job.done.set_result(outcome)
        finally:
            share = (time.perf_counter() - started) / len(jobs)
            with self._lock:
                for job in jobs:
                    self._seconds[job.urgency] = self._seconds.get(job.urgency, 0.0) + share
                self._free.add(lane)
                self._dispatch()
