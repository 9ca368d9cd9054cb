"""Decode an uploaded audio file (any container/codec PyAV reads) or raw PCM to 16 kHz mono float32.

Decoding happens here, in the worker, so the supervisor never holds decoded audio
and its event loop never spends CPU on codecs.

A request holds at most its model's `max_audio_seconds`. A file is measured twice: by the
duration its container declares, before anything is decoded (a 9 KB FLAC at 1 Hz that
says 3 h is refused in milliseconds), and by the samples it really yields, while decoding
(a header may understate), stopping at the first frame past the limit. Memory is the
16 kHz samples plus a small constant at any input rate: see `worker.audio.resample`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from worker.audio.resample import SAMPLE_RATE, SLICE_SAMPLES, SLICE_SECONDS, AudioTooLong, Resampler
from worker.protocol import TranscribeParams

if TYPE_CHECKING:
    import av
    import av.container

__all__ = ["SAMPLE_RATE", "AudioError", "AudioTooLong", "decode", "decode_file", "from_pcm"]


class AudioError(ValueError):
    """The bytes are not audio we can decode; the message is safe to show a client."""


def decode(data: bytes | memoryview, params: TranscribeParams, max_seconds: float = math.inf) -> np.ndarray:
    """The request's audio; AudioError if it is not audio, AudioTooLong if it is over `max_seconds`."""
    if params.audio_format == "pcm":
        return from_pcm(data, params.pcm_rate, params.pcm_width, params.pcm_channels, max_seconds)
    if params.audio_format != "file":
        raise AudioError(f"unknown audio format {params.audio_format!r}")
    return decode_file(data, max_seconds)


_PCM_DTYPES = {1: "u1", 2: "<i2", 4: "<i4"}


def from_pcm(
    data: bytes | memoryview, rate: int, width: int, channels: int, max_seconds: float = math.inf
) -> np.ndarray:
    """Raw PCM (what Wyoming clients send) at any rate, width and channel count.

    Resampled here with FFmpeg's resampler (band-limited), not in the supervisor:
    a plain linear-interpolation converter aliases enough to cost words. Converted
    `SLICE_SECONDS` at a time, so no temporary is the size of the whole input.
    """
    if width not in _PCM_DTYPES or channels < 1 or not 1000 <= rate <= 384000:
        raise AudioError(f"unsupported raw audio: {rate} Hz, {width} bytes a sample, {channels} channels")
    frame_bytes = width * channels
    if len(data) == 0:
        raise AudioError("no audio samples were sent")
    if len(data) % frame_bytes:
        raise AudioError(f"raw audio length {len(data)} is not a whole number of {frame_bytes}-byte frames")
    frames = len(data) // frame_bytes
    if frames / rate > max_seconds:
        raise AudioTooLong(frames / rate, max_seconds)
    samples = np.frombuffer(data, dtype=_PCM_DTYPES[width])
    step = min(SLICE_SECONDS * rate, SLICE_SAMPLES) * channels
    if rate == SAMPLE_RATE and channels == 1:
        out = np.empty(frames, dtype=np.float32)
        for start in range(0, frames, step):
            out[start : start + step] = _int16(samples[start : start + step])
        out *= np.float32(1 / 32768)
        return out
    import av

    resampler = Resampler(max_seconds, expected=frames / rate)
    for start in range(0, samples.size, step):
        block, layout = _int16(samples[start : start + step]), {1: "mono", 2: "stereo"}.get(channels)
        if layout is None:  # more than two channels: average them to mono first
            block, layout = block.reshape(-1, channels).mean(axis=1).astype(np.int16), "mono"
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = rate
        resampler.add(frame)
    return resampler.finish()


def _int16(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.uint8:
        return ((samples.astype(np.int16) - 128) << 8).astype(np.int16)
    if samples.dtype.itemsize == 4:
        return (samples >> 16).astype(np.int16)
    return samples


def decode_file(data: bytes | memoryview, max_seconds: float = math.inf) -> np.ndarray:
    import av  # deferred: only the worker pays for FFmpeg

    if len(data) == 0:
        raise AudioError("the audio file is empty")
    try:
        with av.open(_MemoryFile(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError("could not decode the audio file: it has no audio stream")
            stream = container.streams.audio[0]
            declared = declared_seconds(container, stream)
            if declared > max_seconds:
                raise AudioTooLong(declared, max_seconds)
            resampler = Resampler(max_seconds, expected=declared)
            for frame in _frames(container, stream):
                resampler.add(frame)
            audio = resampler.finish()
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError) as exc:
        raise AudioError(f"could not decode the audio file: {_describe(exc)}") from exc
    if audio.size == 0:
        raise AudioError("the audio file contains no audio samples")
    return audio


def declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float:
    """How long the file says its audio is (0 if it does not say): the stream's own figure first."""
    import av

    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _frames(container: av.container.InputContainer, stream: av.AudioStream) -> Iterator[av.AudioFrame]:
    """The stream's frames up to the first undecodable data: a file cut short plays as far as it goes."""
    import av

    frames = container.decode(stream)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            return
        yield frame


class _MemoryFile(io.RawIOBase):
    """The request's bytes as a read-only file, without the copy io.BytesIO makes of a memoryview."""

    def __init__(self, data: bytes | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self._view[self._pos : self._pos + len(buffer)]
        memoryview(buffer).cast("B")[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def _describe(exc: Exception) -> str:
    # PyAV's messages end in the (meaningless here) file name: keep FFmpeg's reason only.
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
