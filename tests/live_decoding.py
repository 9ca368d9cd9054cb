"""Real decoding of a live session's jobs, in process: what the worker does with a DecodeJob."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from worker.backends.faster_whisper.engine import _segment
from worker.engine.live import DecodeJob
from worker.protocol.messages import Segment


class Decoder:
    """`decoder(job)`: the job decoded by `model` (a faster_whisper.WhisperModel) with the
    options the job asks for; the time each took is kept per kind."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.times: dict[str, list[tuple[float, float]]] = {"partial": [], "final": []}  # (audio s, decode s)

    def __call__(self, job: DecodeJob) -> list[Segment]:
        params = job.params()
        started = time.perf_counter()
        segments, _ = self._model.transcribe(
            job.audio,
            language=params.language,
            initial_prompt=params.prompt,
            beam_size=params.beam_size,
            temperature=params.temperature,
            word_timestamps=params.word_timestamps,
            vad_filter=False,
        )
        out = [_segment(i, s) for i, s in enumerate(segments)]
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


def decoder_for(model: Any) -> Callable[[DecodeJob], list[Segment]]:
    return Decoder(model)
