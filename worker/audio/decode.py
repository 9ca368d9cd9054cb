"""Decode an uploaded audio file (any container/codec PyAV reads) to 16 kHz mono float32.

Decoding happens here, in the worker, so the supervisor never holds decoded audio
and its event loop never spends CPU on codecs.
"""

from __future__ import annotations

import io

import numpy as np

from worker.protocol import TranscribeParams

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """The bytes are not audio we can decode; the message is safe to show a client."""


def decode(data: bytes | memoryview, params: TranscribeParams) -> np.ndarray:
    if params.audio_format == "pcm":
        return from_pcm(data, params.pcm_rate, params.pcm_width, params.pcm_channels)
    if params.audio_format != "file":
        raise AudioError(f"unknown audio format {params.audio_format!r}")
    return decode_file(data)


_PCM_DTYPES = {1: "u1", 2: "<i2", 4: "<i4"}


def from_pcm(data: bytes | memoryview, rate: int, width: int, channels: int) -> np.ndarray:
    """Raw PCM (what Wyoming clients send) at any rate, width and channel count.

    Resampled here with FFmpeg's resampler (band-limited), not in the supervisor:
    a plain linear-interpolation converter aliases enough to cost words.
    """
    if width not in _PCM_DTYPES or channels < 1 or not 1000 <= rate <= 384000:
        raise AudioError(f"unsupported raw audio: {rate} Hz, {width} bytes a sample, {channels} channels")
    frame_bytes = width * channels
    if len(data) == 0:
        raise AudioError("no audio samples were sent")
    if len(data) % frame_bytes:
        raise AudioError(f"raw audio length {len(data)} is not a whole number of {frame_bytes}-byte frames")
    samples = np.frombuffer(data, dtype=_PCM_DTYPES[width])
    if width == 1:
        samples = (samples.astype(np.int16) - 128) << 8
    elif width == 4:
        samples = (samples >> 16).astype(np.int16)
    samples = samples.astype(np.int16, copy=False)
    if rate == SAMPLE_RATE and channels == 1:
        return samples.astype(np.float32) / 32768.0
    return _resample(samples, rate, channels)


def _resample(samples: np.ndarray, rate: int, channels: int) -> np.ndarray:
    import av

    layout = {1: "mono", 2: "stereo"}.get(channels)
    if layout is None:  # more than two channels: average them to mono first
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
        layout, channels = "mono", 1
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout=layout)
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]  # flush
    return np.concatenate(out).astype(np.float32) / 32768.0


def decode_file(data: bytes | memoryview) -> np.ndarray:
    import av  # deferred: only the worker pays for FFmpeg
    from faster_whisper.audio import decode_audio

    if len(data) == 0:
        raise AudioError("the audio file is empty")
    try:
        audio: np.ndarray = decode_audio(io.BytesIO(data), sampling_rate=SAMPLE_RATE)
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        raise AudioError(f"could not decode the audio file: {_describe(exc)}") from exc
    if audio.size == 0:
        raise AudioError("the audio file contains no audio samples")
    return audio.astype(np.float32, copy=False)


def _describe(exc: Exception) -> str:
    if isinstance(exc, IndexError):
        return "it has no audio stream"
    # PyAV's messages end in the (meaningless here) file name: keep FFmpeg's reason only.
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
