"""A model's workers over time: how many started, and what they did, summed across them.

A worker's heartbeat carries counters since its own start (`WorkTotals`); they restart with
each process, and a model may have hundreds in its life (a TTL unload, an eviction, a
crash, each ends one). The owner tells the tally when a worker is adopted and when it is
forgotten; the tally banks the last heartbeat of every worker that ended, so a model's
totals only grow and a scrape after an unload still counts what the unloaded worker did.
What was done after a crashed worker's last heartbeat (at most one heartbeat interval)
is lost with it; a worker that stops cleanly sends a last heartbeat first.
"""

from __future__ import annotations

from typing import Protocol

from common.protocol import Heartbeat, Latencies, WorkTotals


class Reporter(Protocol):
    """What the tally needs of a worker (a `WorkerProcess`)."""

    @property
    def last_heartbeat(self) -> Heartbeat | None: ...


class ModelTally:
    def __init__(self) -> None:
        self.starts = 0  # workers that loaded this model and served
        self._banked = WorkTotals()
        self._current: Reporter | None = None

    def adopted(self, worker: Reporter) -> None:
        self.starts += 1
        self._current = worker

    def forgotten(self) -> None:
        """The current worker has ended (or is being stopped): bank what it reported last."""
        if self._current is not None and (beat := self._current.last_heartbeat) is not None:
            self._banked = add(self._banked, beat.work)
        self._current = None

    @property
    def heartbeat(self) -> Heartbeat | None:
        """The current worker's latest heartbeat (memory, lanes, sessions now)."""
        return self._current.last_heartbeat if self._current is not None else None

    def totals(self) -> WorkTotals:
        """Every worker's work: the banked ones' and the current one's so far."""
        beat = self.heartbeat
        return self._banked if beat is None else add(self._banked, beat.work)


def add(a: WorkTotals, b: WorkTotals) -> WorkTotals:
    return WorkTotals(
        inference_seconds=a.inference_seconds + b.inference_seconds,
        audio_seconds=a.audio_seconds + b.audio_seconds,
        live_inference_seconds=a.live_inference_seconds + b.live_inference_seconds,
        first_partial=_add_latencies(a.first_partial, b.first_partial),
        final_after_speech=_add_latencies(a.final_after_speech, b.final_after_speech),
        passes=a.passes + b.passes,
        pass_items=a.pass_items + b.pass_items,
    )


def _add_latencies(a: Latencies, b: Latencies) -> Latencies:
    width = max(len(a.counts), len(b.counts))
    counts = tuple(x + y for x, y in zip(_pad(a.counts, width), _pad(b.counts, width), strict=True))
    return Latencies(counts=counts, sum=a.sum + b.sum)


def _pad(counts: tuple[int, ...], width: int) -> tuple[int, ...]:
    return counts + (0,) * (width - len(counts))
