"""The half of a Parakeet backend both engines share: requests, READY, languages, batches (worker only).

An engine subclass loads its library's model in `load()` and decodes stretches of audio
into timed words in `decode_batch()`, several in one call; cutting audio into stretches
and words into segments is `windows`' job, the same for both. The stretches of concurrent
requests and live sessions go through one `Batcher` (worker.engine.batcher): those
waiting at one moment are decoded in one call on a free lane, live finals first. Both
libraries take a batch of stretches of different lengths and pad them, masked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from common.protocol import ModelOptions, ReadyInfo, TranscribeParams, TranscribeResult
from worker.backends.base import OnSegment
from worker.backends.parakeet import windows
from worker.engine.batcher import URGENCY, Batcher

#: The stretches a batch holds under batch_size = "auto": a stretch is up to 2 minutes, and
#: the encoder's attention over it takes tens of MB a layer, so fewer than Whisper's windows.
AUTO_BATCH = {"cpu": 4, "cuda": 8}


@dataclass(frozen=True, eq=False)
class Stretch:
    """One stretch of audio to decode; any two share a call (both libraries pad a batch)."""

    samples: np.ndarray
    urgency: int
    key: str = "stretch"


class ParakeetBackend:
    keeps_prefix = False  # a transducer has no prompt to force words with

    def __init__(self, options: ModelOptions) -> None:
        self._options = options
        self.max_audio_seconds = options.max_audio_seconds
        self._languages: list[str] = []  # from the catalogue entry; [] accepts any
        self._loaded = False
        self.batcher: Batcher[Stretch, list[windows.TimedWord]] = Batcher(self._pass, 1)
        self._batch = 1

    def decode_batch(self, model: Any, stretches: list[np.ndarray]) -> list[list[windows.TimedWord]]:
        """Each stretch's words, decoded by `model` in one call (runs on a compute lane)."""
        raise NotImplementedError

    def _pass(self, model: Any, stretches: list[Stretch]) -> list[list[windows.TimedWord]]:
        return self.decode_batch(model, [s.samples for s in stretches])

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
        urgency = URGENCY[params.live]

        def submit(stretches: list[np.ndarray]) -> list[Future[list[windows.TimedWord]]]:
            return self.batcher.submit([Stretch(samples, urgency) for samples in stretches])

        ahead = self._batch  # a long file's windows in batches too, as many as one holds
        return windows.transcribe(audio, submit, on_segment, language, params.word_timestamps, skip, ahead)

    def _ready(
        self,
        *,
        model: Any,
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
        """READY for a model just loaded (`started` by time.perf_counter()): its `lanes` all
        run on `model` (one copy), and take the batch `batch_size` sets."""
        option = self._options.batch_size
        batch = option if isinstance(option, int) else AUTO_BATCH.get(device, 1)
        self.batcher, self._batch = Batcher(self._pass, batch), batch
        for _lane in range(lanes):
            self.batcher.add_lane(model)
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
            slots=max(lanes, batch),
            copies=1,
            lane_weights=lane_weights,
            lanes_reason=reason,
            copy_mb=round(copy_mb, 1),
            footprint_mb=round(rss_mb, 1),
        )
