"""Session time: samples inside the engine, seconds in its events, decoder times moved onto it.

A job's audio starts somewhere in the session (`DecodeJob.offset`), so the times a decoder
gives are moved onto the session's clock before anything is shown; a time never falls
before the session (a job may start with zeros the stream did not have). Events give
seconds rounded to the millisecond; inside the engine times are samples at 16 kHz.
"""

from __future__ import annotations

import msgspec

from common.protocol.types import Segment, Word
from worker.engine.live.jobs import SAMPLE_RATE


def seconds(at: int) -> float:
    """Sample `at` as session seconds, as the events give them."""
    return round(at / SAMPLE_RATE, 3)


def sample(at: float) -> int:
    """Session seconds `at` as a sample."""
    return round(at * SAMPLE_RATE)


def shifted(t: float, offset: float) -> float:
    """A time in a job's audio as session seconds (never before the session: a job may start with zeros)."""
    return max(0.0, round(t + offset, 3))


def shift_word(word: Word, offset: float) -> Word:
    return msgspec.structs.replace(word, start=shifted(word.start, offset), end=shifted(word.end, offset))


def shift_segment(segment: Segment, offset: float, index: int, keep_words: bool) -> Segment:
    """A segment of a final, its times moved from the job's audio to the session."""
    words = [shift_word(w, offset) for w in segment.words] if keep_words and segment.words is not None else None
    start, end = shifted(segment.start, offset), shifted(segment.end, offset)
    return msgspec.structs.replace(segment, id=index, start=start, end=end, words=words)
