"""Encode tests/assets/fox.wav as m4a (AAC), webm (Opus) and opus (Ogg/Opus) with PyAV.

sox cannot write these containers; PyAV (a faster-whisper dependency) can. Run with the
project's virtualenv: `.venv/bin/python scripts/encode-clips.py`.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np

ASSETS = Path(__file__).resolve().parent.parent / "tests" / "assets"
TARGETS = [
    ("fox.m4a", "mp4", "aac", 16000),
    ("fox.webm", "webm", "libopus", 48000),
    ("fox.opus", "ogg", "libopus", 48000),
]


def encode(wav: Path, container: str, codec: str, rate: int) -> bytes:
    with wave.open(str(wav)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        source_rate = w.getframerate()
    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=rate)
        stream.layout = "mono"
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = source_rate
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(chunk):
                muxer.mux(packet)
        for packet in stream.encode(None):
            muxer.mux(packet)
    return out.getvalue()


if __name__ == "__main__":
    for name, container, codec, rate in TARGETS:
        (ASSETS / name).write_bytes(encode(ASSETS / "fox.wav", container, codec, rate))
        print(name)
