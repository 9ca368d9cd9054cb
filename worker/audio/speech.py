"""Where audio holds speech, by faster-whisper's Silero VAD: shared by every backend.

faster-whisper is part of the base install, so its ONNX Silero model is always there;
it costs little next to the decoder, and is only asked about quiet stretches (see
worker.audio.pieces).
"""

from __future__ import annotations

import numpy as np


def speech(samples: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) sample ranges of speech in 16 kHz mono float32 `samples`."""
    from faster_whisper.vad import get_speech_timestamps

    return [(t["start"], t["end"]) for t in get_speech_timestamps(samples)]
