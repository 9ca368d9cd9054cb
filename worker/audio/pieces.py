"""How a backend should read long or silent audio: in windows, skipping long silences. ML-free.

Two things go wrong when Whisper is handed a long recording whole:

- Memory. faster-whisper computes the log-mel features of its whole input at once, and
  the STFT behind them peaks at about 16x the samples' own size (1 MB per second of
  audio): 3.5 GB for an hour. So long audio is read in windows of at most
  `WINDOW_SECONDS`, each cut at the quietest moment of its last `CUT_SEARCH_SECONDS`
  (a pause between words, not a word), and the features never exceed one window's.
- Silence. On a 30 s window without speech Whisper writes what it saw most in training
  after silence ("You", ". . ."), with a low no-speech score that its own guards do not
  catch. Stretches of at least `MIN_GAP_SECONDS` under `SILENCE_DBFS` are therefore
  never decoded (Whisper is given the rest as clip timestamps), and audio that is all
  silence is answered with no text without running the model at all.

Audio shorter than a window with no long silence, which is nearly every request, is one
window spanning everything: the backend then makes exactly the call it made before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.audio.resample import SAMPLE_RATE

#: Loudness is measured over frames this long.
FRAME = SAMPLE_RATE // 10
#: A frame quieter than this is silence. Digital silence and a quiet room's hiss are below
#: it; speech Whisper can still make out is above it (see tests/hostile/test_audio_bombs.py).
SILENCE_DBFS = -55.0
#: The longest audio given to the model at once: its features' peak is ~1 MB a second.
WINDOW_SECONDS = 120
#: A window ends at the quietest frame within this much of its end.
CUT_SEARCH_SECONDS = 15
#: Silence at least this long is skipped; shorter pauses are left to Whisper, which reads
#: them as pauses.
MIN_GAP_SECONDS = 5
#: Silence kept either side of sound, so a word's fade is not cut.
PAD_SECONDS = 0.5
#: Loudness is computed this many frames at a time, so its squares never outgrow a block.
_BLOCK_FRAMES = 600


@dataclass(frozen=True)
class Window:
    """Samples [start, end) of the audio, and the parts of them to decode (in seconds from `start`)."""

    start: int
    end: int
    clips: tuple[tuple[float, float], ...]

    @property
    def whole(self) -> bool:
        """True when every sample is to be decoded: no clip timestamps needed."""
        return self.clips == ((0.0, (self.end - self.start) / SAMPLE_RATE),)


def loudness(samples: np.ndarray) -> np.ndarray:
    """Each `FRAME`'s RMS level in dBFS (-inf for digital silence); the last frame may be short."""
    frames = -(-samples.size // FRAME)
    out = np.empty(frames, dtype=np.float64)
    for first in range(0, frames, _BLOCK_FRAMES):
        block = samples[first * FRAME : (first + _BLOCK_FRAMES) * FRAME].astype(np.float64)
        whole = block.size // FRAME
        power = np.square(block[: whole * FRAME]).reshape(whole, FRAME).mean(axis=1)
        if block.size % FRAME:
            power = np.append(power, np.square(block[whole * FRAME :]).mean())
        out[first : first + power.size] = power
    with np.errstate(divide="ignore"):
        return 10 * np.log10(out)


def plan(
    samples: np.ndarray,
    window_seconds: float = WINDOW_SECONDS,
    min_gap_seconds: float = MIN_GAP_SECONDS,
) -> list[Window]:
    """The windows to decode, in order; empty when the audio is all silence."""
    if samples.size == 0:
        return []
    level = loudness(samples)
    sound = _sound(level < SILENCE_DBFS, round(min_gap_seconds * SAMPLE_RATE / FRAME))
    windows = []
    for start, end in _cuts(samples.size, level, round(window_seconds * SAMPLE_RATE)):
        clips = _clips(sound, start, end)
        if clips:
            windows.append(Window(start, end, clips))
    return windows


def _sound(silent: np.ndarray, min_gap: int) -> np.ndarray:
    """Per frame: to be decoded, i.e. not inside a silent run of `min_gap` frames or more (less its padding)."""
    keep = np.ones(silent.size, dtype=bool)
    pad = round(PAD_SECONDS * SAMPLE_RATE / FRAME)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], silent.astype(np.int8), [0]))))
    for run_start, run_end in zip(edges[::2], edges[1::2], strict=True):
        if run_end - run_start >= min_gap:
            keep[run_start + (pad if run_start > 0 else 0) : run_end - (pad if run_end < silent.size else 0)] = False
    return keep


def _cuts(size: int, level: np.ndarray, window: int) -> list[tuple[int, int]]:
    """[start, end) sample ranges of at most `window`, each ended at the quietest frame near its end."""
    search = CUT_SEARCH_SECONDS * SAMPLE_RATE
    spans, start = [], 0
    while size - start > window:
        lo, hi = (start + window - search) // FRAME, (start + window) // FRAME
        quietest = hi - 1 - int(np.argmin(level[lo:hi][::-1]))  # the latest of equals: windows stay long
        end = int(quietest) * FRAME + FRAME // 2
        spans.append((start, end))
        start = end
    spans.append((start, size))
    return spans


def _clips(sound: np.ndarray, start: int, end: int) -> tuple[tuple[float, float], ...]:
    """The runs of `sound` within samples [start, end), in seconds from `start`."""
    first, last = start // FRAME, -(-end // FRAME)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], sound[first:last].astype(np.int8), [0]))))
    clips = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        lo, hi = max(int(first + a) * FRAME, start), min(int(first + b) * FRAME, end)
        if hi > lo:
            clips.append(((lo - start) / SAMPLE_RATE, (hi - start) / SAMPLE_RATE))
    return tuple(clips)
