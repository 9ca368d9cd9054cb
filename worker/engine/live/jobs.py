"""What a live session asks to have decoded, and what it keeps while it waits for a final."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from common.protocol.types import Heard, Segment, TranscribeParams

SAMPLE_RATE = 16000
#: The shortest context window a partial asks for (Whisper's own is 30 s): shorter costs
#: less (faster-whisper pads every window to 30 s; the decoder here pads to the window asked
#: for), but much shorter windows degrade the greedy text ("God-Morling" for "Good
#: morning"); `python -m bench --live` measures what it saves. Finals keep 30 s all the
#: same: in this window they were faster too, but the fox clip's final lost words ("the
#: quick round-fark jump over the lazy nog").
LIVE_WINDOW_SECONDS = 15
WHISPER_WINDOW_SECONDS = 30


def live_window(audio_seconds: float) -> int | None:
    """The window a decode of `audio_seconds` asks for; None (the model's own) once that is no saving."""
    seconds = max(LIVE_WINDOW_SECONDS, math.ceil(audio_seconds + 1.0))
    return seconds if seconds < WHISPER_WINDOW_SECONDS else None


@dataclass(frozen=True, eq=False)
class DecodeJob:
    """One decode a session wants: run it, then hand the segments back with `LiveSession.done`.

    The caller decodes `audio` at temperature 0, with word timestamps when `word_timestamps`
    (always for partials, whose words LocalAgreement aligns; for finals only when the client
    asked: the alignment pass adds to a final's time) — `params()` says it
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
    #: What earlier finals heard in the audio's first `heard_seconds` (times in `audio`): the
    #: decoder reads the utterance with it, as a file's decoder reads a sentence after the
    #: one before, and returns only what follows.
    heard: tuple[Heard, ...] = ()
    heard_seconds: float = 0.0
    prefix: str | None = None  # a final's committed words: its text begins with them

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
            # An utterance is seconds long, not Whisper's 30: a window its own length makes a
            # partial several times cheaper. The final, which stays, keeps Whisper's own.
            window_seconds=live_window(self.duration) if self.kind == "partial" else None,
            heard=list(self.heard),
            heard_seconds=self.heard_seconds,
            prefix=self.prefix,
            live=self.kind,
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
