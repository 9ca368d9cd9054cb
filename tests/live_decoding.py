"""Real decoding of a live session's jobs, in process: what the worker does with a DecodeJob."""

from __future__ import annotations

import time
from collections.abc import Callable

from common.protocol.types import Segment
from worker.backends.base import Backend
from worker.engine.live import DecodeJob


class Decoder:
    """`decoder(job)`: the job decoded by `backend` (loaded) as the worker decodes it, with the
    options the job asks for; the time each took is kept per kind."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.times: dict[str, list[tuple[float, float]]] = {"partial": [], "final": []}  # (audio s, decode s)

    def __call__(self, job: DecodeJob) -> list[Segment]:
        started = time.perf_counter()
        out = self._backend.transcribe(job.audio, job.params(), lambda _segment: True).segments
        self.times[job.kind].append((job.duration, time.perf_counter() - started))
        return out

    def report(self) -> str:
        lines = []
        for kind, times in self.times.items():
            if times:
                took = [t for _, t in times]
                lines.append(
                    f"{kind}: {len(took)} jobs, mean {sum(took) / len(took):.3f} s, max {max(took):.3f} s "
                    f"(audio up to {max(a for a, _ in times):.1f} s)"
                )
        return "; ".join(lines)


def decoder_for(backend: Backend) -> Callable[[DecodeJob], list[Segment]]:
    return Decoder(backend)
