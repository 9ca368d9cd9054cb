"""Stand-ins for the live engine's tests: synthetic audio, an energy VAD scorer, a scripted decoder.

The scripted decoder is what makes the engine's logic testable without a model: it
"hears" a script of words with session times, and answers a job with the words its audio
covers, a word cut by the audio's end coming back half-heard (as Whisper guesses one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from common.protocol.live import LiveEvent, LiveParams
from common.protocol.types import Segment, Word
from worker.engine.live import DecodeJob, LiveSession, StreamingVad

SR = 16000
E = TypeVar("E", bound=LiveEvent)
NATO = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
]


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise loud enough for the energy scorer: stands for speech."""
    return (np.random.default_rng(seed).standard_normal(round(seconds * SR)) * 0.1).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SR), dtype=np.float32)


class EnergyScorer:
    """Silero's interface, deterministic: probability 1 for a frame with energy, 0 for silence."""

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        loud: np.ndarray = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) > 0.01
        return loud.astype(np.float32)


def energy_session(end_silence_ms: int = 500, word_timestamps: bool = True) -> LiveSession:
    params = LiveParams(language="en", end_silence_ms=end_silence_ms, word_timestamps=word_timestamps)
    return LiveSession(params, StreamingVad(end_silence_ms=end_silence_ms, scorer=EnergyScorer()), beam_size=5)


def script(start: float, end: float, step: float = 0.4, length: float = 0.3) -> list[tuple[str, float, float]]:
    """Words every `step` seconds from `start`, each `length` long, all ending by `end`."""
    words: list[tuple[str, float, float]] = []
    t = start
    while t + length <= end + 1e-9:
        words.append((NATO[len(words) % len(NATO)], round(t, 3), round(t + length, 3)))
        t += step
    return words


def segment(words: list[Word], *, no_speech_prob: float = 0.01, avg_logprob: float = -0.3) -> Segment:
    return Segment(
        id=0,
        start=words[0].start,
        end=words[-1].end,
        text="".join(w.word for w in words),
        words=words,
        avg_logprob=avg_logprob,
        compression_ratio=1.2,
        no_speech_prob=no_speech_prob,
    )


@dataclass
class ScriptedDecoder:
    """Answers a job with the script's words that its audio covers, times relative to the job."""

    words: list[tuple[str, float, float]]
    #: Tried first, in order: a rule that answers a job itself (returns segments) or passes (None).
    rules: list[Callable[[DecodeJob], list[Segment] | None]] = field(default_factory=list)
    jobs: list[DecodeJob] = field(default_factory=list)

    def __call__(self, job: DecodeJob) -> list[Segment]:
        self.jobs.append(job)
        for rule in self.rules:
            if (answer := rule(job)) is not None:
                return answer
        begin, end = job.offset, job.offset + job.duration
        new = begin + job.heard_seconds  # what the job's context holds is not written again
        heard = []
        for text, a, b in self.words:
            if a < new - 0.05 or a >= end:
                continue
            if b > end + 1e-6:  # cut by the audio's edge: half a word, as Whisper guesses one
                text, b = text[: max(1, len(text) // 2)], end
            heard.append(Word(round(a - begin, 3), round(b - begin, 3), " " + text, 0.9))
        return [segment(heard)] if heard else []


@dataclass
class Run:
    """What driving a session produced: each event with the session time it came at."""

    events: list[tuple[float, LiveEvent]] = field(default_factory=list)
    offered: list[tuple[float, DecodeJob]] = field(default_factory=list)
    max_buffered: int = 0
    pushed: float = 0.0  # seconds of audio pushed so far

    def of(self, kind: type[E]) -> list[E]:
        return [e for _, e in self.events if isinstance(e, kind)]

    def at(self, kind: type[E]) -> list[float]:
        return [t for t, e in self.events if isinstance(e, kind)]


def drive(
    session: LiveSession,
    audio: np.ndarray,
    decode: Callable[[DecodeJob], list[Segment]],
    *,
    chunk: float = 0.1,
    run: Run | None = None,
    hold: Callable[[DecodeJob], int] = lambda job: 0,
) -> Run:
    """Push `audio` in `chunk`s; after each, decode every job offered at once (synchronously), or
    `hold(job)` chunks later."""
    run = run if run is not None else Run()
    step = round(chunk * SR)
    pushed = run.pushed
    held: list[tuple[int, DecodeJob]] = []
    for i in range(0, audio.size, step):
        pushed += min(step, audio.size - i) / SR
        run.events += [(pushed, e) for e in session.push(audio[i : i + step])]
        held = [(n - 1, job) for n, job in held]
        for _, job in [h for h in held if h[0] <= 0]:
            run.events += [(pushed, e) for e in session.done(job, decode(job))]
        held = [h for h in held if h[0] > 0]
        while (job := session.next_job()) is not None:
            run.offered.append((pushed, job))
            if (n := hold(job)) > 0:
                held.append((n, job))
                break
            run.events += [(pushed, e) for e in session.done(job, decode(job))]
        run.max_buffered = max(run.max_buffered, session.buffered)
        run.pushed = pushed
    for _, job in held:  # what was still being decoded comes back after the audio
        run.events += [(pushed, e) for e in session.done(job, decode(job))]
    return run


def settle(session: LiveSession, decode: Callable[[DecodeJob], list[Segment]], run: Run) -> Run:
    """Decode whatever the session still wants (after finish(), say) until it wants nothing."""
    t = run.pushed
    while (job := session.next_job()) is not None:
        run.offered.append((t, job))
        run.events += [(t, e) for e in session.done(job, decode(job))]
    return run
