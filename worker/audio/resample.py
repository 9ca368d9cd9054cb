"""Decoded frames at any rate → 16 kHz mono float32 blocks, in bounded memory, under a time limit.

Two generators in a pipe: `resample` turns frames into 16 kHz s16 pieces, `blocks` regroups
those into float32 blocks of `BLOCK_SECONDS`. Iterating them holds a block or two of output
plus a small constant, whatever the input's rate, channels or length:

- The resampler is fed slices of at most `SLICE_SECONDS` of audio. FFmpeg's output for one
  input frame is that frame's whole duration at 16 kHz: a 4096-sample FLAC block at 1 Hz
  would come out as 65 M samples (262 MB) in one piece.
- Each piece is converted straight into its place in the current block: no float copy of it.
- The limit is checked on the input's own clock before each frame is resampled, so a file
  over it stops within one frame of the limit and its excess is never resampled.

`SampleBuffer` collects blocks into one array for callers that want the whole audio: it
grows in place (`ndarray.resize` is a `realloc`, which moves large blocks by remapping pages,
not copying), reserved up front from the container's declared duration, so there is no list
of pieces joined at the end.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import av

SAMPLE_RATE = 16000
#: Audio fed to the resampler at once: its output per call is at most this much at 16 kHz (320 KB).
SLICE_SECONDS = 10
#: ... and at most this many input samples (8 MB at 8 channels of float), for very high rates.
SLICE_SAMPLES = 1 << 18
#: The longest block a stream yields (640 KB of float32); only the last one is shorter.
BLOCK_SECONDS = 10
#: The smallest growth of a SampleBuffer, so a file with no declared duration is not
#: reallocated every block (numpy zero-fills what it adds: the step is what may sit unused).
MIN_GROWTH_SECONDS = 30

_SCALE = np.float32(1 / 32768)  # s16 → [-1, 1): a power of two, so the conversion is exact


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


def resample(frames: Iterable[av.AudioFrame], limit: float) -> Generator[np.ndarray, None, None]:
    """Frames in (any rate, format, layout), 16 kHz mono s16 pieces out, FFmpeg's delay flushed last.

    AudioTooLong once the input passes `limit` seconds, before the frame that passes it is
    resampled. A stream that changes its rate or layout midway is refused by the FIFO
    (ValueError), as it would be by FFmpeg's resampler.
    """
    import av  # deferred: only the worker pays for FFmpeg

    # s16 out, as faster-whisper's own decoder: FFmpeg then normalises its downmix (stereo
    # is (L+R)/2; to float it would be (L+R)/sqrt(2)), so transcripts stay as they were.
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    fifo = av.AudioFifo()
    seconds = 0.0  # input seen so far, on the input's own clock
    for frame in frames:
        rate = frame.sample_rate
        if rate <= 0:
            raise ValueError("a frame has no sample rate")
        seconds += frame.samples / rate
        if seconds > limit:
            raise AudioTooLong(seconds, limit, at_least=True)
        frame.pts = None  # the FIFO checks timestamps for gaps; decoders' are not always exact
        fifo.write(frame)
        step = min(SLICE_SECONDS * rate, SLICE_SAMPLES)
        while fifo.samples >= step:
            yield from _resample(resampler, fifo.read(step))
    if fifo.samples:
        yield from _resample(resampler, fifo.read())
    yield from _resample(resampler, None)  # the resampler's own delay


def _resample(resampler: av.AudioResampler, frame: av.AudioFrame | None) -> Iterator[np.ndarray]:
    for out in resampler.resample(frame):
        yield out.to_ndarray().reshape(-1)


def blocks(pieces: Iterable[np.ndarray]) -> Generator[np.ndarray, None, None]:
    """The s16 `pieces` regrouped as float32 blocks of BLOCK_SECONDS (the last shorter), none empty.

    Each block is a new array, the caller's to keep.
    """
    size = BLOCK_SECONDS * SAMPLE_RATE
    block, filled = np.empty(size, dtype=np.float32), 0
    for piece in pieces:
        start = 0
        while start < piece.size:
            count = min(size - filled, piece.size - start)
            block[filled : filled + count] = piece[start : start + count]
            filled, start = filled + count, start + count
            if filled == size:
                block *= _SCALE
                yield block
                block, filled = np.empty(size, dtype=np.float32), 0
    if filled:
        block.resize(filled, refcheck=False)  # ours alone: no view of it has been handed out
        block *= _SCALE
        yield block


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


def collect(audio: Iterator[np.ndarray], reserve_seconds: float) -> np.ndarray:
    """Blocks joined into one array, reserved for `reserve_seconds` (plus a second) up front."""
    out = SampleBuffer(math.ceil(reserve_seconds * SAMPLE_RATE) + SAMPLE_RATE)
    for block in audio:
        out.append(block)
    return out.take()
