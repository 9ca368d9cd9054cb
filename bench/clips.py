"""The benchmark's audio: the committed test clips, plus a ~60 s one built from them.

Every path in the benchmark gets the same WAV bytes: the in-process baseline decodes them
from a BytesIO exactly as the worker does, HTTP uploads them, and Wyoming sends their PCM.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "tests" / "assets"
RATE = 16000
PAUSE_SECONDS = 0.5


@dataclass(frozen=True)
class Clip:
    name: str  # "short", "medium" or "long": the row names in the report
    data: bytes  # the whole WAV file, as uploaded
    pcm: bytes  # its 16-bit mono 16 kHz frames, as Wyoming clients send them
    seconds: float
    #: None: faster-whisper's fallback schedule, what clients get by default. The long clip
    #: uses 0: its sentences repeat, which trips Whisper's compression-ratio check and sends
    #: the first window through sampling at temperatures 0.2 ... 1.0 (3x slower, random
    #: text, different on every run), so the two sides of a comparison would not do the same work.
    temperature: float | None = None


def _read_pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as src:
        if (src.getframerate(), src.getsampwidth(), src.getnchannels()) != (RATE, 2, 1):
            raise ValueError(f"{path} is not 16 kHz 16-bit mono")
        return src.readframes(src.getnframes())


def _write_wav(path: Path, pcm: bytes) -> bytes:
    with wave.open(str(path), "wb") as dst:
        dst.setnchannels(1)
        dst.setsampwidth(2)
        dst.setframerate(RATE)
        dst.writeframes(pcm)
    return path.read_bytes()


def _clip(name: str, path: Path) -> Clip:
    pcm = _read_pcm(path)
    return Clip(name, path.read_bytes(), pcm, len(pcm) / 2 / RATE)


def load_clips(tmp: Path, long_seconds: float = 60.0) -> dict[str, Clip]:
    """short.wav (~2 s), weather.wav (~9 s) and a long clip written into `tmp`.

    The long clip cycles weather, fox, short with 0.5 s of silence after each until it
    reaches `long_seconds`: real speech throughout, so Whisper decodes every 30 s window.
    """
    sources = [_read_pcm(ASSETS / f"{n}.wav") for n in ("weather", "fox", "short")]
    silence = b"\0\0" * int(RATE * PAUSE_SECONDS)
    parts: list[bytes] = []
    size, i = 0, 0
    while size < long_seconds * RATE * 2:
        part = sources[i % len(sources)] + silence
        parts.append(part)
        size += len(part)
        i += 1
    long_path = tmp / "long.wav"
    long_pcm = b"".join(parts)
    return {
        "short": _clip("short", ASSETS / "short.wav"),
        "medium": _clip("medium", ASSETS / "weather.wav"),
        "long": Clip("long", _write_wav(long_path, long_pcm), long_pcm, len(long_pcm) / 2 / RATE, temperature=0.0),
    }
