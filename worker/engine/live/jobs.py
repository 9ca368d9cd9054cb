"""What a live session asks to have decoded, and what it keeps while it waits for a final."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from worker.protocol.messages import Segment, TranscribeParams

SAMPLE_RATE = 16000


@dataclass(frozen=True, eq=False)
class DecodeJob:
    """One decode a session wants: run it, then hand the segments back with `LiveSession.done`.

    The caller decodes `audio` at temperature 0, with word timestamps when `word_timestamps`
    (always for partials, whose words LocalAgreement aligns; for finals only when the client
    asked: the alignment pass costs a final about a tenth of its time) — `params()` says it
    in the backend's own terms. Times in the segments it returns are relative to `audio`;
    the session shifts them by `offset`. `id` is unique within the session: `done` knows a
    job that was overtaken by events (speech resumed under a speculative final, the
    utterance ended under a partial) and drops its result.
    """

    kind: Literal["partial", "final"]
    audio: npt.NDArray[np.float32]  # 16 kHz mono, the job's own copy
    prompt: str | None  # what was said before this audio
    utterance: int
    beam_size: int  # 1 for partials (greedy), the configured beam for finals
    language: str | None
    offset: float  # session seconds of audio[0]
    id: int
    word_timestamps: bool = True

    @property
    def duration(self) -> float:
        return self.audio.size / SAMPLE_RATE

    def params(self) -> TranscribeParams:
        """The job as the backends' parameters: `backend.transcribe(job.audio, job.params(), ...)`."""
        return TranscribeParams(
            language=self.language,
            prompt=self.prompt,
            temperature=0.0,
            beam_size=self.beam_size,
            word_timestamps=self.word_timestamps,
        )


@dataclass
class PendingFinal:
    """An utterance whose speech is over (or a speculative final for one that may be): its
    decode, and its result once the decode is done. A Final is emitted for it when both hold."""

    job: DecodeJob
    start: int  # speech start, session samples
    end: int  # speech end, session samples
    adds_context: bool = True  # its text becomes the prompt of what follows (not for a cut part)
    segments: list[Segment] | None = None
