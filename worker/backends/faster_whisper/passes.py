"""Shared passes: the windows of every request and live session of one model, decoded together.

Each request's seek loop (worker.backends.faster_whisper.decoder) runs on a slot, one of
the worker's request threads (worker.engine.lanes); when it has windows to decode it hands
them here and waits. The model runs only on compute lanes: one thread per model copy (or
per CTranslate2 worker on shared weights), here. A compute lane that is free takes the
waiting windows that can go through one CTranslate2 call with the most urgent (live
finals, then files, then live partials; oldest first), encodes and decodes them in one
pass, temperature fallback included, and hands each its result. Windows that wait while
the lanes are busy gather into the next pass by themselves, so nothing waits on purpose to
fill a batch: a lone window goes at once.

What windows must share to go in one call (`Window.key`): the generate options, the
window's length (the encoder's input), where the prompt's `<|startoftranscript|>` sits
(after as many tokens of earlier text) and how many task tokens follow it: CTranslate2's
rule for a batch. A forced start after those may differ in length.

A pass takes at most its fair share of the windows waiting with its key: with two lanes
free and six windows, three each. On a CPU two calls side by side beat one call twice as
wide (beam search leaves intra-op threads idle), and a long file's sections split over
both lanes decode about 1.25x faster than in one pass (docs/measurements.md). A pass holds
at most `per_pass` windows, `batch_size` shared by the open lanes: the batch's memory (the
cross-attention cache, per window and beam hypothesis) is then what `batch_size` allowed,
whatever the number of lanes.

Everything else that runs the model for a request (its language, word alignment) goes
through `solo`: one job on a compute lane, so the model never runs on more threads than
there are compute lanes.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from worker.backends.faster_whisper.generate import Decoded, FallbackGenerator
from worker.backends.faster_whisper.options import Options

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

T = TypeVar("T")

#: How urgent a window is: a pass serves the most urgent waiting window's key first.
FINAL, FILE, PARTIAL = 0, 1, 2


@dataclass(frozen=True)
class Outcome:
    """One window's decode, and its encoder output where the caller asked to keep it (None:
    encode it again, as on CUDA, where the output stays on the device)."""

    decoded: Decoded
    encoded: np.ndarray | None


@dataclass(eq=False)
class Window:
    """One window to decode: its features (mel frames, already padded to the window) and prompt."""

    features: np.ndarray
    prompt: list[int]
    options: Options
    tokenizer: Tokenizer
    urgency: int = FILE
    keep_encoded: bool = False
    done: Future[Outcome] = field(default_factory=Future)
    seq: int = 0

    @property
    def key(self) -> tuple[object, ...]:
        """What windows in one call share: CTranslate2 requires `<|startoftranscript|>` at one
        position, and as many task tokens after it; what follows (a forced start) may differ."""
        tokenizer, prompt = self.tokenizer, self.prompt
        sot = prompt.index(tokenizer.sot) if tokenizer.sot in prompt else -1
        end = sot + 1
        while end < len(prompt) and tokenizer.sot <= prompt[end] <= tokenizer.no_timestamps:
            end += 1
        return (self.options.generate_key(), self.features.shape[-1], sot, end)


@dataclass(eq=False)
class _Solo:
    fn: Callable[[Any], Any]
    urgency: int
    done: Future[Any] = field(default_factory=Future)
    seq: int = 0

    @property
    def key(self) -> object:
        return self  # never shares a pass


class SharedPasses:
    """The compute lanes of one model, and the windows waiting for them."""

    def __init__(self, batch_size: int) -> None:
        """`batch_size`: the most windows all lanes' passes hold at once (their memory)."""
        self._batch_size = max(1, batch_size)
        self._lock = threading.Lock()
        self._models: list[WhisperModel] = []
        self._threads: list[ThreadPoolExecutor] = []
        self._free: set[int] = set()
        self._waiting: list[Window | _Solo] = []  # in the order they came
        self._seq = itertools.count()
        self._generators: dict[tuple[int, object], FallbackGenerator] = {}
        #: Passes run and windows they held, since the start: windows / passes is the mean batch.
        self.passes = 0
        self.windows = 0

    def add_lane(self, model: WhisperModel) -> None:
        """Open one more compute lane, on `model` (a copy of its own, or the first one shared)."""
        with self._lock:
            lane = len(self._models)
            self._models.append(model)
            self._threads.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"compute{lane}"))
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
        """Windows and solo jobs waiting for a compute lane."""
        with self._lock:
            return len(self._waiting)

    @property
    def per_pass(self) -> int:
        """The most windows one pass holds: `batch_size` shared by the open lanes."""
        return max(1, self._batch_size // max(1, len(self._models)))

    def decode(self, windows: list[Window]) -> list[Outcome]:
        """Each window's decode, once a pass has run it (blocks: call from a slot's thread)."""
        self._enter(windows)
        return [w.done.result() for w in windows]

    def solo(self, fn: Callable[[WhisperModel], T], urgency: int = FILE) -> T:
        """`fn(model)`, run alone on a compute lane: model work outside the seek loop's windows."""
        job = _Solo(fn, urgency)
        self._enter([job])
        result: T = job.done.result()
        return result

    def _enter(self, jobs: Sequence[Window | _Solo]) -> None:
        with self._lock:
            for job in jobs:
                job.seq = next(self._seq)
                self._waiting.append(job)
            self._dispatch()

    def _dispatch(self) -> None:
        """Start a pass on each free lane while windows wait (the lock is held)."""
        while self._free and self._waiting:
            lane = min(self._free)  # the lowest lane: a lone request keeps one thread's caches warm
            first = min(self._waiting, key=lambda j: (j.urgency, j.seq))
            key = first.key
            group = [j for j in self._waiting if j is first or j.key == key]
            share = -(-len(group) // len(self._free))
            taken = group[: min(self.per_pass, share)]  # a solo job is a group of one
            chosen = set(map(id, taken))
            self._waiting = [j for j in self._waiting if id(j) not in chosen]
            self._free.discard(lane)
            self._threads[lane].submit(self._run, lane, taken)

    def _run(self, lane: int, jobs: list[Window | _Solo]) -> None:
        try:
            if isinstance(jobs[0], _Solo):
                solo = jobs[0]
                try:
                    solo.done.set_result(solo.fn(self._models[lane]))
                except Exception as exc:  # noqa: BLE001 (handed to the request that waits for it)
                    solo.done.set_exception(exc)
            else:
                windows = [j for j in jobs if isinstance(j, Window)]
                try:
                    outcomes = self._pass(lane, windows)
                except Exception as exc:  # noqa: BLE001 (handed to the request that waits for it)
                    for w in windows:
                        w.done.set_exception(exc)
                else:
                    for w, outcome in zip(windows, outcomes, strict=True):
                        w.done.set_result(outcome)
        finally:
            with self._lock:
                self._free.add(lane)
                self._dispatch()

    def _pass(self, lane: int, windows: list[Window]) -> list[Outcome]:
        model = self._models[lane]
        first = windows[0]
        generators = self._generators
        gkey = (lane, first.options.generate_key())
        generator = generators.get(gkey)
        if generator is None:
            generator = generators[gkey] = FallbackGenerator(model, first.tokenizer, first.options)
        batch = np.stack([w.features for w in windows])
        encoded = model.encode(batch)
        kept: np.ndarray | None = None
        if any(w.keep_encoded for w in windows) and encoded.device == "cpu":
            kept = np.array(encoded)
        decoded = generator.generate(encoded, batch, [w.prompt for w in windows])
        with self._lock:
            self.passes += 1
            self.windows += len(windows)
        return [
            Outcome(d, kept[i] if kept is not None and w.keep_encoded else None)
            for i, (w, d) in enumerate(zip(windows, decoded, strict=True))
        ]
