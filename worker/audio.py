"""Decode an uploaded audio file (any container/codec PyAV reads) to 16 kHz mono float32.

Decoding happens here, in the worker, so the supervisor never holds decoded audio
and its event loop never spends CPU on codecs.
"""

from __future__ import annotations

import io

import numpy as np

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """The bytes are not audio we can decode; the message is safe to show a client."""


def decode(data: bytes | memoryview, audio_format: str = "file") -> np.ndarray:
    if audio_format == "pcm16k":
        return from_pcm16(data)
    if audio_format != "file":
        raise AudioError(f"unknown audio format {audio_format!r}")
    return decode_file(data)


def from_pcm16(data: bytes | memoryview) -> np.ndarray:
    """Raw 16 kHz mono s16le samples (what Wyoming clients send) as float32."""
    if len(data) % 2:
        raise AudioError("raw 16-bit audio must have an even number of bytes")
    if len(data) == 0:
        raise AudioError("no audio samples were sent")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def decode_file(data: bytes | memoryview) -> np.ndarray:
    import av  # deferred: only the worker pays for FFmpeg
    from faster_whisper.audio import decode_audio

    if len(data) == 0:
        raise AudioError("the audio file is empty")
    try:
        audio = decode_audio(io.BytesIO(data), sampling_rate=SAMPLE_RATE)
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
