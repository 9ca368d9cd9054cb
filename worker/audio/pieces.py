"""How a backend should read long or silent audio: in windows, skipping long silences. ML-free.

Two things go wrong when Whisper is handed a long recording whole:

- Memory. faster-whisper computes the log-mel features of its whole input at once, and
  the STFT behind them peaks at about 16x the samples' own size (1 MB per second of
  audio): 3.5 GB for an hour. So long audio is read in windows of at most
  `WINDOW_SECONDS`, each cut at the quietest moment of its last `CUT_SEARCH_SECONDS`
  (a pause between words, not a word), and the features never exceed one window's.
  An upload arrives as a stream of blocks (worker.audio.decode.open_stream), and
  `sections` cuts it as it arrives, holding one window: an hour never exists as one array.
- Silence. On a 30 s window without speech Whisper writes what it saw most in training
  after silence ("You You You", ". . ."), with a low no-speech score that its own guards
  do not catch. So quiet stretches of at least `MIN_GAP_SECONDS` are not decoded (each
  stretch around them is a Section of its own), and audio that is all silence gets no
  text without the model running at all.

What counts as quiet is decided by level first, which is free: frames under `LOUD_DBFS`
are quiet, frames under `SILENT_DBFS` (digital silence, dither) are silence. Whisper
still reads speech recorded 50 dB too low, at levels a quiet room's hiss also has, so a
quiet stretch that is not all silence goes to a speech detector (the backend's VAD) and
only what it calls speech is kept. Speech at a normal level never asks the detector.

Audio shorter than a window with no long quiet stretch, which is nearly every request, is
one section spanning everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from worker.audio.resample import SAMPLE_RATE

#: Loudness is measured over frames this long.
FRAME = SAMPLE_RATE // 10
#: A frame at least this loud is sound: speech at a normal level, or anything else audible.
LOUD_DBFS = -55.0
#: A frame quieter than this is silence, whatever it holds: digital zero, or dither (about
#: -90 dBFS); the quietest speech Whisper still reads, 50 dB too low, peaks near -64.
SILENT_DBFS = -80.0
#: The longest audio given to the model at once: its features' peak is ~1 MB a second.
WINDOW_SECONDS = 120
#: A window ends at the quietest frame within this much of its end.
CUT_SEARCH_SECONDS = 15
#: Quiet stretches at least this long are looked at; shorter pauses are left to Whisper,
#: which reads them as pauses.
MIN_GAP_SECONDS = 5
#: Audio kept either side of what is decoded, so a word's fade is not cut.
PAD_SECONDS = 0.5
#: Audio before a section handed to its decoder as context (see Section.context).
CONTEXT_SECONDS = 15
#: Loudness is computed this many frames at a time, so its squares never outgrow a block.
_BLOCK_FRAMES = 600

#: Where samples hold speech: [start, end) sample ranges (the backend's voice activity detector).
SpeechDetector = Callable[[np.ndarray], Iterable[tuple[int, int]]]


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


@dataclass(frozen=True)
class Section:
    """A stretch of audio to decode: its samples, from sample `start` of the recording."""

    start: int
    samples: np.ndarray
    #: The audio just before `start` (at most `CONTEXT_SECONDS`), for a decoder to read for
    #: context only; empty at the recording's start.
    context: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    @property
    def end(self) -> int:
        return self.start + self.samples.size


def plan(
    samples: np.ndarray,
    speech: SpeechDetector | None = None,
    window_seconds: float = WINDOW_SECONDS,
    min_gap_seconds: float = MIN_GAP_SECONDS,
) -> list[Window]:
    """The windows to decode, in order; empty when the audio is all silence.

    Without `speech`, every long quiet stretch is skipped, speech or not.
    """
    if samples.size == 0:
        return []
    level = loudness(samples)
    windows = []
    for start, end in _cuts(samples.size, level, round(window_seconds * SAMPLE_RATE)):
        window = _window(samples, level, start, end, speech, min_gap_seconds)
        if window is not None:
            windows.append(window)
    return windows


def sections(
    blocks: Iterable[np.ndarray],
    speech: SpeechDetector | None = None,
    window_seconds: float = WINDOW_SECONDS,
    min_gap_seconds: float = MIN_GAP_SECONDS,
) -> Iterator[Section]:
    """The stretches to decode of audio arriving in blocks, in order, holding one window at a time.

    The same windows and clips as `plan` on the whole audio, each clip a Section: a window's
    cut depends only on its own last `CUT_SEARCH_SECONDS`, so it can be made as soon as a
    window's worth of audio (and one frame more) has arrived.
    """
    window = round(window_seconds * SAMPLE_RATE)
    before = np.zeros(0, dtype=np.float32)  # the audio just before held[0], for context
    held: list[np.ndarray] = []
    size = 0
    offset = 0  # the recording's sample at held[0][0]
    for block in blocks:
        held.append(block)
        size += block.size
        while size > window + FRAME:
            buffer = np.concatenate(held) if len(held) > 1 else held[0]
            level = loudness(buffer[: window + FRAME])
            end = _cuts(window + FRAME, level, window)[0][1]
            yield from _sections(buffer, level, end, offset, before, speech, min_gap_seconds)
            before = _context(before, buffer[:end])
            held, size, offset = [buffer[end:]], size - end, offset + end
    if size:
        buffer = np.concatenate(held) if len(held) > 1 else held[0]
        yield from _sections(buffer, loudness(buffer), buffer.size, offset, before, speech, min_gap_seconds)


class Blocks:
    """Audio as blocks, whether it came whole (an array) or as a stream of blocks, counted.

    `samples` is how many have been read so far: the recording's length once it is read.
    """

    def __init__(self, audio: np.ndarray | Iterable[np.ndarray], block_seconds: float = 10) -> None:
        self._audio = audio
        self._block = round(block_seconds * SAMPLE_RATE)
        self.samples = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        if isinstance(self._audio, np.ndarray):
            blocks: Iterable[np.ndarray] = (
                self._audio[i : i + self._block] for i in range(0, self._audio.size, self._block)
            )
        else:
            blocks = self._audio
        for block in blocks:
            self.samples += block.size
            yield block

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE


def _context(before: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """The last CONTEXT_SECONDS of `before` followed by `audio` (a copy)."""
    keep = CONTEXT_SECONDS * SAMPLE_RATE
    if audio.size >= keep:
        return audio[-keep:].copy()
    return np.concatenate([before[max(0, before.size - (keep - audio.size)) :], audio])


def _sections(
    buffer: np.ndarray,
    level: np.ndarray,
    end: int,
    offset: int,
    before: np.ndarray,
    speech: SpeechDetector | None,
    min_gap_seconds: float,
) -> Iterator[Section]:
    """The clips of the window buffer[:end] as sections (copies: the buffer is let go)."""
    window = _window(buffer, level, 0, end, speech, min_gap_seconds)
    for a, b in window.clips if window is not None else ():
        first, last = round(a * SAMPLE_RATE), round(b * SAMPLE_RATE)
        yield Section(offset + first, buffer[first:last].copy(), _context(before, buffer[:first]))


def _window(
    samples: np.ndarray,
    level: np.ndarray,
    start: int,
    end: int,
    speech: SpeechDetector | None,
    min_gap_seconds: float,
) -> Window | None:
    """Samples [start, end) as a Window with the parts to decode; None if there are none."""
    min_gap = round(min_gap_seconds * SAMPLE_RATE / FRAME)
    first, last = start // FRAME, -(-end // FRAME)
    keep = _keep(samples, level[first:last], first, min_gap, speech)
    clips = []
    for a, b in _runs(keep):
        lo, hi = max((first + a) * FRAME, start), min((first + b) * FRAME, end)
        if hi > lo:
            clips.append(((lo - start) / SAMPLE_RATE, (hi - start) / SAMPLE_RATE))
    return Window(start, end, tuple(clips)) if clips else None


def _keep(
    samples: np.ndarray, level: np.ndarray, first: int, min_gap: int, speech: SpeechDetector | None
) -> np.ndarray:
    """Per frame of one window (from frame `first`): to be decoded or not."""
    keep = np.ones(level.size, dtype=bool)
    pad = round(PAD_SECONDS * SAMPLE_RATE / FRAME)
    for a, b in _runs(level < LOUD_DBFS):
        if b - a < min_gap:
            continue
        # Padding only beside sound: a run at the window's edge goes on in the next window.
        keep[a + (pad if a > 0 else 0) : b - (pad if b < level.size else 0)] = False
        if speech is None or level[a:b].max() < SILENT_DBFS:
            continue
        offset = (first + a) * FRAME
        for s, e in speech(samples[offset : (first + b) * FRAME]):
            keep[max(a + s // FRAME - pad, a) : min(a + -(-e // FRAME) + pad, b)] = True
    return keep


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The [start, end) index ranges where `mask` is True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _cuts(size: int, level: np.ndarray, window: int) -> list[tuple[int, int]]:
    """[start, end) sample ranges of at most `window`, each ended at the quietest frame near its end."""
    search = CUT_SEARCH_SECONDS * SAMPLE_RATE
    spans, start = [], 0
    while size - start > window:
        lo, hi = (start + window - search) // FRAME, (start + window) // FRAME
        quietest = hi - 1 - int(np.argmin(level[lo:hi][::-1]))  # the latest of equals: windows stay long
        end = quietest * FRAME + FRAME // 2
        spans.append((start, end))
        start = end
    spans.append((start, size))
    return spans
