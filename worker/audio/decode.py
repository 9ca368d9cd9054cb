"""Decode an uploaded audio file (any container/codec PyAV reads) or raw PCM to 16 kHz mono float32.

Decoding happens here, in the worker, so the supervisor never holds decoded audio
and its event loop never spends CPU on codecs.

`open_stream` is the one decoding path: it checks what can be checked before a sample is
decoded and returns a `DecodedAudio`, whose iteration yields the audio as 16 kHz blocks of
at most `BLOCK_SECONDS`, holding a block or two at a time at any input rate or length (see
`worker.audio.resample`). `decode` joins those blocks into one array.

A request holds at most its model's `max_audio_seconds`. A file is measured twice: by the
duration its container declares, before anything is decoded (a 9 KB FLAC at 1 Hz that
says 3 h is refused in milliseconds, by `open_stream` itself), and by the samples it really
yields, while decoding (a header may understate), stopping at the first frame past the limit
(raised from the iteration, after the blocks before it).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Generator, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import numpy as np

from common.protocol import TranscribeParams
from worker.audio.resample import (
    BLOCK_SECONDS,
    SAMPLE_RATE,
    SLICE_SAMPLES,
    SLICE_SECONDS,
    AudioTooLong,
    blocks,
    collect,
    resample,
)

if TYPE_CHECKING:
    import av
    import av.container

__all__ = [
    "BLOCK_SECONDS",
    "SAMPLE_RATE",
    "AudioError",
    "AudioTooLong",
    "DecodedAudio",
    "decode",
    "decode_file",
    "from_pcm",
    "open_file",
    "open_pcm",
    "open_stream",
]


class AudioError(ValueError):
    """The bytes are not audio we can decode; the message is safe to show a client."""


class DecodedAudio:
    """One upload's audio as consecutive 16 kHz mono float32 blocks, decoded as they are iterated.

    A single pass: iterating it again goes on where the last iteration stopped. AudioTooLong
    and AudioError may come from the iteration (see `open_stream`). The decoder, and its view
    of the caller's bytes, are released when the iteration ends or fails; `close()` (or leaving
    a `with` block) releases them when it is abandoned midway.
    """

    def __init__(
        self,
        declared_seconds: float,
        blocks: Generator[np.ndarray, None, None],
        container: av.container.InputContainer | None = None,
    ) -> None:
        #: The duration the container declares (0.0 if it does not say; raw PCM: exact).
        self.declared_seconds = declared_seconds
        self._blocks = blocks
        self._container = container
        self._samples = 0

    @property
    def seconds(self) -> float:
        """The 16 kHz audio yielded so far."""
        return self._samples / SAMPLE_RATE

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        try:
            block = next(self._blocks)
        except Exception:  # its end, or an error that ends it: the decoder is done with
            self.close()
            raise
        self._samples += block.size
        return block

    def close(self) -> None:
        self._blocks.close()
        if self._container is not None:
            self._container.close()  # a second close (the iteration's own, at its end) is a no-op
            self._container = None  # and with it the view of the caller's bytes

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def open_stream(
    data: bytes | memoryview | Path, params: TranscribeParams, max_seconds: float = math.inf
) -> DecodedAudio:
    """The request's audio, to be iterated in blocks; `data` must outlive the iteration (it is not copied).

    `data` may be a file's path: it is then read as it is decoded, never held whole.

    Raised here: AudioError if it is not audio, AudioTooLong if it declares over `max_seconds`.
    Raised by the iteration: AudioTooLong once its samples pass `max_seconds`, AudioError if
    FFmpeg fails midway or the file holds no samples at all.
    """
    if params.audio_format == "pcm":
        if isinstance(data, Path):
            data = _read(data)
        return open_pcm(data, params.pcm_rate, params.pcm_width, params.pcm_channels, max_seconds)
    if params.audio_format != "file":
        raise AudioError(f"unknown audio format {params.audio_format!r}")
    return open_file(data, max_seconds)


def decode(data: bytes | memoryview, params: TranscribeParams, max_seconds: float = math.inf) -> np.ndarray:
    """The request's audio as one array; AudioError if it is not audio, AudioTooLong if it is over `max_seconds`."""
    return _whole(open_stream(data, params, max_seconds), max_seconds)


def decode_file(data: bytes | memoryview, max_seconds: float = math.inf) -> np.ndarray:
    """`open_file`'s blocks as one array."""
    return _whole(open_file(data, max_seconds), max_seconds)


def from_pcm(
    data: bytes | memoryview, rate: int, width: int, channels: int, max_seconds: float = math.inf
) -> np.ndarray:
    """`open_pcm`'s blocks as one array."""
    return _whole(open_pcm(data, rate, width, channels, max_seconds), max_seconds)


def _whole(audio: DecodedAudio, max_seconds: float) -> np.ndarray:
    with audio:  # reserved for what it declares: an honest file never grows its array
        return collect(audio, min(audio.declared_seconds, max_seconds))


_PCM_DTYPES = {1: "u1", 2: "<i2", 4: "<i4"}


def open_pcm(
    data: bytes | memoryview, rate: int, width: int, channels: int, max_seconds: float = math.inf
) -> DecodedAudio:
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
    pieces = (_int16(samples[start : start + step]) for start in range(0, samples.size, step))
    if rate == SAMPLE_RATE and channels == 1:
        return DecodedAudio(frames / rate, blocks(pieces))
    return DecodedAudio(frames / rate, blocks(resample(_pcm_frames(pieces, rate, channels), max_seconds)))


def _int16(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.uint8:
        return ((samples.astype(np.int16) - 128) << 8).astype(np.int16)
    if samples.dtype.itemsize == 4:
        return (samples >> 16).astype(np.int16)
    return samples


def _pcm_frames(pieces: Iterator[np.ndarray], rate: int, channels: int) -> Iterator[av.AudioFrame]:
    import av  # deferred: only the worker pays for FFmpeg

    for piece in pieces:
        block, layout = piece, {1: "mono", 2: "stereo"}.get(channels)
        if layout is None:  # more than two channels: average them to mono first
            block, layout = block.reshape(-1, channels).mean(axis=1).astype(np.int16), "mono"
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = rate
        yield frame


def open_file(data: bytes | memoryview | Path, max_seconds: float = math.inf) -> DecodedAudio:
    """An audio file in any container PyAV reads; see `open_stream` for what is raised where."""
    import av  # deferred: only the worker pays for FFmpeg

    source: str | _MemoryFile  # a path FFmpeg opens, reads and closes itself
    if isinstance(data, Path):
        try:
            empty = data.stat().st_size == 0
        except OSError as exc:
            raise AudioError(f"could not read the uploaded file: {exc.strerror}") from exc
        source = str(data)
    else:
        source, empty = _MemoryFile(data), len(data) == 0
    if empty:
        raise AudioError("the audio file is empty")
    with _as_audio_error():
        container = av.open(source, mode="r", metadata_errors="ignore")
    try:
        if not container.streams.audio:
            raise AudioError("could not decode the audio file: it has no audio stream")
        stream = container.streams.audio[0]
        declared = declared_seconds(container, stream)
        if declared > max_seconds:
            raise AudioTooLong(declared, max_seconds)
    except BaseException:
        container.close()
        raise
    return DecodedAudio(declared, _file_blocks(container, stream, max_seconds), container)


def _file_blocks(
    container: av.container.InputContainer, stream: av.AudioStream, max_seconds: float
) -> Generator[np.ndarray, None, None]:
    produced = 0
    with container, _as_audio_error():
        for block in blocks(resample(_frames(container, stream), max_seconds)):
            produced += block.size
            yield block
    if not produced:
        raise AudioError("the audio file contains no audio samples")


@contextlib.contextmanager
def _as_audio_error() -> Iterator[None]:
    """FFmpeg's errors (and a stream that changes format midway) as AudioError."""
    import av

    try:
        yield
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError) as exc:
        raise AudioError(f"could not decode the audio file: {_describe(exc)}") from exc


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


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AudioError(f"could not read the uploaded file: {exc.strerror}") from exc


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
