"""G.711 μ-law and A-law (8 kHz telephone audio, one byte a sample) to s16le PCM.

Realtime clients may send `audio/pcmu` or `audio/pcma`; the worker takes PCM. A 256-entry
table per law (the standard's decoding, as `audioop` did before Python dropped it) turns
each byte into its 16-bit sample, so the supervisor stays free of audio libraries.
"""

from __future__ import annotations

from typing import Literal


def _ulaw(byte: int) -> int:
    byte = ~byte & 0xFF
    exponent, mantissa = (byte >> 4) & 0x07, byte & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if byte & 0x80 else magnitude


def _alaw(byte: int) -> int:
    byte ^= 0x55
    exponent, mantissa = (byte >> 4) & 0x07, byte & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if byte & 0x80 else -magnitude


_TABLES = {
    "pcmu": [_ulaw(b).to_bytes(2, "little", signed=True) for b in range(256)],
    "pcma": [_alaw(b).to_bytes(2, "little", signed=True) for b in range(256)],
}


def to_pcm16(data: bytes, law: Literal["pcmu", "pcma"]) -> bytes:
    """`data` (G.711 bytes) as signed 16-bit little-endian PCM at the same rate."""
    return b"".join(map(_TABLES[law].__getitem__, data))
