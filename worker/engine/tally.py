"""What the worker has done since it started, for its heartbeat (`WorkTotals`).

Only the worker sees how long its compute lanes spend in the model (the supervisor sees a
request's whole round trip: the audio file's decoding and the wait for a lane included;
the lanes' time and batches are counted by worker.engine.batcher and read here) and when a
live session's speech reached it. Requests add to the tally from their own threads, the
live scheduler from the event loop, so every change takes a lock; each is a few additions.
The counters restart with the process: the supervisor banks a worker's last heartbeat when
it ends (`supervisor.models.tally`).
"""

from __future__ import annotations

import bisect
import threading

from common.protocol import LATENCY_BUCKETS, Latencies, WorkTotals
from worker.engine.batcher import Work


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    def frozen(self) -> Latencies:
        return Latencies(counts=tuple(self.counts), sum=self.sum)


class Tally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._audio = 0.0
        self._first_partial = _Histogram()
        self._final_after_speech = _Histogram()

    def decoded(self, audio_seconds: float) -> None:
        """A file request held `audio_seconds` of audio, decoded now."""
        with self._lock:
            self._audio += audio_seconds

    def first_partial(self, seconds: float) -> None:
        with self._lock:
            self._first_partial.observe(seconds)

    def final_after_speech(self, seconds: float) -> None:
        with self._lock:
            self._final_after_speech.observe(seconds)

    def totals(self, compute: Work | None = None) -> WorkTotals:
        """The totals, with the model's time and batches as its compute lanes count them."""
        compute = compute or Work(0.0, 0.0, 0, 0)
        with self._lock:
            return WorkTotals(
                inference_seconds=compute.file_seconds,
                audio_seconds=self._audio,
                live_inference_seconds=compute.live_seconds,
                passes=compute.passes,
                pass_items=compute.items,
                first_partial=self._first_partial.frozen(),
                final_after_speech=self._final_after_speech.frozen(),
            )


class Arrivals:
    """When each stretch of a live session's audio reached the worker: session time (seconds
    of audio from its start) → the wall-clock moment (time.monotonic()) it arrived.

    The live engine speaks in session time (`SpeechStarted.at`, `Final.end`); this turns
    those into "how long ago did that audio arrive", which is what a speaker waits. Only
    the last `keep_s` seconds of audio are remembered (an utterance is at most 30 s, and a
    session owes at most a couple of finals), so a session of hours holds a few thousand
    numbers at most.
    """

    def __init__(self, keep_s: float = 90.0) -> None:
        self._keep_s = keep_s
        self._ends: list[float] = []  # session time at the end of each frame, rising
        self._times: list[float] = []  # when that frame arrived
        self._forgotten = 0.0  # audio up to this session time is no longer remembered
        self.end = 0.0  # session time of all audio received

    def add(self, seconds: float, now: float) -> None:
        """A frame of `seconds` of audio arrived at `now`."""
        self.end += seconds
        self._ends.append(self.end)
        self._times.append(now)
        half = len(self._ends) // 2
        if half >= 32 and self._ends[half] < self.end - self._keep_s:  # trimmed in halves: O(1) a frame
            self._forgotten = self._ends[half - 1]
            del self._ends[:half], self._times[:half]

    def arrived(self, at: float) -> float | None:
        """When the audio at session time `at` arrived; None if that is forgotten or not yet here."""
        if at < self._forgotten:
            return None
        i = bisect.bisect_left(self._ends, at - 1e-6)
        return self._times[i] if i < len(self._ends) else None
