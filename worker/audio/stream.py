"""A live session's audio, frame by frame: s16le mono PCM at any rate → 16 kHz mono float32.

One `PcmStream` per session. Resampling keeps FFmpeg's resampler (and so its filter
state) across frames, so frame edges leave no clicks or gaps, which a converter started
afresh on every 100 ms frame would; its few samples of filter delay come out at `flush()`.
At 16 kHz nothing is resampled: the samples are only scaled to float.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.audio.decode import SAMPLE_RATE, AudioError

if TYPE_CHECKING:
    import av

#: The largest frame a session accepts (over 30 s of 16 kHz audio; clients send 20-100 ms).
MAX_FRAME_BYTES = 1 << 20

_EMPTY = np.zeros(0, dtype=np.float32)


class PcmStream:
    """Converts one session's frames in order, keeping the resampler's state between them."""

    def __init__(self, rate: int) -> None:
        if not 1000 <= rate <= 384000:
            raise AudioError(f"unsupported sample rate {rate} Hz")
        self.rate = rate
        self._resampler: av.AudioResampler | None = None
        self._time_base = Fraction(1, rate)
        self._pts = 0  # input samples so far: the next frame's timestamp
        if rate != SAMPLE_RATE:
            import av  # deferred: only the worker pays for FFmpeg

            # Float out: the 16 kHz samples are not rounded to 16 bits a second time.
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def convert(self, data: bytes | memoryview) -> np.ndarray:
        """The 16 kHz float32 samples for `data` (its bytes are copied; the buffer may be reused).

        Raises AudioError for a frame that is not whole 16-bit samples or is over MAX_FRAME_BYTES.
        """
        size = len(data)
        if size > MAX_FRAME_BYTES:
            raise AudioError(f"an audio frame of {size} bytes is over the limit of {MAX_FRAME_BYTES}")
        if size % 2:
            raise AudioError(f"an audio frame of {size} bytes is not whole 16-bit samples")
        if size == 0:
            return _EMPTY
        samples = np.frombuffer(data, dtype="<i2")
        if self._resampler is None:
            return samples.astype(np.float32) / np.float32(32768.0)
        import av

        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.time_base = self._time_base
        frame.pts = self._pts
        self._pts += samples.size
        return _joined(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """The samples the resampler still holds (its filter delay): call once, at the end."""
        if self._resampler is None:
            return _EMPTY
        return _joined(self._resampler.resample(None))


def _joined(frames: list[Any]) -> np.ndarray:
    if not frames:
        return _EMPTY
    out = np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames])
    return out.astype(np.float32, copy=False)
