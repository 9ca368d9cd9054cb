"""Model backends behind one small interface; each imports its ML library lazily."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from worker.protocol import ModelOptions, ReadyInfo, Segment, TranscribeParams, TranscribeResult

#: Called with each segment as it is decoded; returning False stops the transcription
#: (its client went away), and the result holds the segments so far.
OnSegment = Callable[[Segment], bool]


class LoadError(RuntimeError):
    """The model cannot be loaded here; the message tells the administrator what to fix."""


class Backend(Protocol):
    """What the worker needs from a model, whatever the library behind it."""

    def load(self) -> ReadyInfo:
        """Load the model; raise LoadError with an actionable message on failure."""
        ...

    def transcribe(self, audio: np.ndarray, params: TranscribeParams, on_segment: OnSegment,
                   lane: int = 0) -> TranscribeResult:
        """Transcribe 16 kHz mono float32 audio, on inference lane `lane` (its own thread)."""
        ...


BACKENDS = ("faster-whisper",)


def warm_up(name: str, inference: bool = False) -> None:
    """Pay a backend's one-time costs ahead of any model (what a warm spare is for).

    Imports always; with `inference`, also a throwaway inference (pooled spares only: a
    worker started for a waiting request would only add the throwaway model's load).
    """
    if name == "faster-whisper":
        from worker.backends.faster_whisper import warm_up as warm_up_whisper

        warm_up_whisper(inference)


def create_backend(options: ModelOptions) -> Backend:
    if options.backend == "faster-whisper":
        from worker.backends.faster_whisper import FasterWhisperBackend

        return FasterWhisperBackend(options)
    raise LoadError(f"unknown backend {options.backend!r}; known: {', '.join(BACKENDS)}")
