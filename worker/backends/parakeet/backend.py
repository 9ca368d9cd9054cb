"""The half of a Parakeet backend both engines share: requests, READY, languages (worker only).

An engine subclass loads its library's model in `load()` and decodes one stretch of audio
into timed words in `decode()`; cutting audio into stretches and words into segments is
`windows`' job, the same for both.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Literal

import numpy as np

from common.protocol import ModelOptions, ReadyInfo, TranscribeParams, TranscribeResult
from worker.backends.base import OnSegment
from worker.backends.parakeet import windows


class ParakeetBackend:
    keeps_prefix = False  # a transducer has no prompt to force words with

    def __init__(self, options: ModelOptions) -> None:
        self._options = options
        self.max_audio_seconds = options.max_audio_seconds
        self._languages: list[str] = []  # from the catalogue entry; [] accepts any
        self._loaded = False

    def decode(self, samples: np.ndarray) -> list[windows.TimedWord]:
        raise NotImplementedError

    def load_lane(self, lane: int) -> None:
        """Lanes beyond the first load nothing: one lane (NeMo) or one shared model (onnx)."""

    def transcribe(
        self, audio: np.ndarray | Iterable[np.ndarray], params: TranscribeParams, on_segment: OnSegment, lane: int = 0
    ) -> TranscribeResult:
        assert self._loaded, "transcribe() before load()"
        # An English-only model's result says "en", as Whisper's does; v3 detects its language
        # itself and reports none unless the request named one.
        language = params.language or (self._languages[0] if len(self._languages) == 1 else None)
        skip = params.heard_seconds
        return windows.transcribe(audio, self.decode, on_segment, language, params.word_timestamps, skip)

    def _ready(
        self,
        *,
        backend: str,
        languages: list[str],
        device: str,
        compute_type: str,
        started: float,
        lanes: int,
        lane_weights: Literal["copy", "shared"],
        reason: str,
        copy_mb: float,
        rss_mb: float,
    ) -> ReadyInfo:
        """READY for a model just loaded (`started` by time.perf_counter())."""
        self._languages, self._loaded = languages, True
        return ReadyInfo(
            pid=os.getpid(),
            backend=backend,
            device=device,
            compute_type=compute_type,
            load_seconds=round(time.perf_counter() - started, 3),
            languages=languages,
            multilingual=len(languages) != 1,
            concurrency=lanes,
            copies=1,
            lane_weights=lane_weights,
            lanes_reason=reason,
            copy_mb=round(copy_mb, 1),
            footprint_mb=round(rss_mb, 1),
        )
