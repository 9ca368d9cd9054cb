"""Decoded frames at any rate → one 16 kHz mono float32 array, in bounded memory, under a time limit.

Three things keep memory to the output samples plus a small constant, whatever the input:

- The resampler is fed slices of at most `SLICE_SECONDS` of audio. FFmpeg's output for one
  input frame is that frame's whole duration at 16 kHz: a 4096-sample FLAC block at 1 Hz
  would come out as 65 M samples (262 MB) in one piece.
- The samples go straight into one array that grows in place (`ndarray.resize` is a
  `realloc`, which moves large blocks by remapping pages, not copying), reserved up front
  from the container's declared duration: no list of pieces joined at the end, and no
  whole-length s16 or float temporary beside it.
- The limit is checked on the input's own clock before each frame is resampled, so a file
  over it stops within one frame of the limit and its excess is never resampled.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import av

SAMPLE_RATE = 16000
#: Audio fed to the resampler at once: its output per call is at most this much at 16 kHz (320 KB).
SLICE_SECONDS = 10
#: ... and at most this many input samples (8 MB at 8 channels of float), for very high rates.
SLICE_SAMPLES = 1 << 18
#: The smallest growth of the output array, so a file with no declared duration is not
#: reallocated every frame (numpy zero-fills what it adds: the step is what may sit unused).
MIN_GROWTH_SECONDS = 30


class AudioTooLong(Exception):
    """More audio than the model's `max_audio_seconds`; the message is safe to show a client."""

    def __init__(self, seconds: float, limit: float, *, at_least: bool = False) -> None:
        if at_least:
            what = f"the audio is longer than this model's limit of {limit:.6g} s (max_audio_seconds)"
        else:
            what = f"{seconds:.6g} s of audio is over this model's limit of {limit:.6g} s (max_audio_seconds)"
        super().__init__(what)
        self.seconds = seconds
        self.limit = limit


class SampleBuffer:
    """A float32 array written at its end, grown in place, trimmed in place at `take()`."""

    def __init__(self, reserve: int) -> None:
        # np.empty touches no page: a reserve that is never written costs no memory.
        self._data = np.empty(max(reserve, 1), dtype=np.float32)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, samples: np.ndarray, scale: float = 1.0) -> None:
        """Add `samples` (any numeric dtype), multiplied by `scale`."""
        end = self._size + samples.size
        if end > self._data.size:
            grown = max(end, self._data.size + max(self._data.size // 8, MIN_GROWTH_SECONDS * SAMPLE_RATE))
            self._data.resize(grown, refcheck=False)  # ours alone: no view of it has been handed out
        self._data[self._size : end] = samples
        if scale != 1.0:
            self._data[self._size : end] *= np.float32(scale)
        self._size = end

    def take(self) -> np.ndarray:
        """The samples; the buffer must not be used afterwards."""
        self._data.resize(self._size, refcheck=False)
        return self._data


class Resampler:
    """Frames in (any rate, format, layout), 16 kHz mono float32 out, at most `limit` seconds.

    `expected` is the duration the container declares (0 if none): the output is reserved
    for it, so an honest file never grows its array.
    """

    def __init__(self, limit: float, expected: float = 0.0) -> None:
        import av  # deferred: only the worker pays for FFmpeg

        self.limit = limit
        self.seconds = 0.0  # input seen so far, on the input's own clock
        # s16 out, as faster-whisper's own decoder: FFmpeg then normalises its downmix (stereo
        # is (L+R)/2; to float it would be (L+R)/sqrt(2)), so transcripts stay as they were.
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._fifo = av.AudioFifo()
        reserve = min(expected, limit) * SAMPLE_RATE
        self._out = SampleBuffer(math.ceil(reserve) + SAMPLE_RATE)

    def add(self, frame: av.AudioFrame) -> None:
        """Take one decoded frame; AudioTooLong once the input passes the limit (before resampling it).

        A stream that changes its rate or layout midway is refused by the FIFO (ValueError),
        as it would be by FFmpeg's resampler.
        """
        rate = frame.sample_rate
        if rate <= 0:
            raise ValueError("a frame has no sample rate")
        self.seconds += frame.samples / rate
        if self.seconds > self.limit:
            raise AudioTooLong(self.seconds, self.limit, at_least=True)
        frame.pts = None  # the FIFO checks timestamps for gaps; decoders' are not always exact
        self._fifo.write(frame)
        step = min(SLICE_SECONDS * rate, SLICE_SAMPLES)
        while self._fifo.samples >= step:
            self._resample(self._fifo.read(step))

    def finish(self) -> np.ndarray:
        """Everything, the resampler's own delay included; the Resampler is spent afterwards."""
        if self._fifo.samples:
            self._resample(self._fifo.read())
        self._resample(None)
        return self._out.take()

    def _resample(self, frame: av.AudioFrame | None) -> None:
        for out in self._resampler.resample(frame):
            self._out.append(out.to_ndarray().reshape(-1), 1 / 32768)
