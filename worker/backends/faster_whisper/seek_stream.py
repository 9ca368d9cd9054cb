"""One section on its way through the batched seek loop (`decoder.BatchDecoder`): worker only.

Its audio (the context before it, then its own samples) and their features; where the seek
is; the tokens so far, which prompt its next window; the segments found; and, for a live
decode, what the model is made to begin with (`forced`) and the audio heard before (`skip`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SeekStream:
    """One section on its way through the seek loop."""

    start: int  # the recording's sample where the section starts
    audio: np.ndarray  # the section's context, then its own samples
    features: np.ndarray  # their log-mel features, one frame per `decoder.HOP` samples
    frames: int  # content frames in `features`
    #: The frame where the section's own audio starts: the window before it is decoded
    #: for its text only, the prompt of the section's first window.
    boundary: int = 0
    seek: int = 0
    tokens: list[int] = field(default_factory=list)
    reset_since: int = 0
    segments: list[dict[str, Any]] = field(default_factory=list)
    last_speech: float = 0.0
    #: Tokens forced after the task tokens of the first window: the timestamp where the audio
    #: not heard before starts, and the words it must begin with (see BatchDecoder.continuation).
    forced: list[int] = field(default_factory=list)
    #: The frame where that audio starts (0: all of it is new), and the text heard before it,
    #: as tokens with timestamps (part of the prompt, and aligned with the words).
    skip: int = 0
    heard: list[int] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.seek >= self.frames

    def release(self) -> None:
        """Let the audio go once decoded: a finished section may wait for earlier ones."""
        self.audio = self.features = np.zeros((0, 0), dtype=np.float32)
