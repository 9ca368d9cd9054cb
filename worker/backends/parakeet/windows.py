"""What both Parakeet engines share: audio cut into windows, words grouped into segments.

Parakeet's encoder attends over its whole input, so its memory grows with the square of
the audio's length: an hour given at once does not fit a CPU box, and NeMo's own answer
(local attention) changes the model's output. Audio is read instead the way Whisper's is
(worker.audio.pieces): windows of at most `WINDOW_SECONDS`, cut at the quietest moment,
long silences never decoded. Each decoded stretch yields timed words; segments are then
made from words, the same way for both engines, so that NeMo and onnx-asr give the same
segments for the same words: a segment ends at a sentence's end, at a pause, or when it
grows long (subtitles read badly past `MAX_SEGMENT_SECONDS`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import msgspec
import numpy as np

from common.protocol import Segment, TranscribeResult, Word
from worker.audio import pieces
from worker.audio.resample import SAMPLE_RATE
from worker.audio.speech import speech
from worker.backends.base import OnSegment

#: The longest audio given to the encoder at once: its attention over 2 minutes
#: (1,500 frames after 8x subsampling) takes tens of MB per layer.
WINDOW_SECONDS = 120
#: A pause at least this long between two words ends a segment.
PAUSE_SECONDS = 0.8
MAX_SEGMENT_SECONDS = 20.0
#: A stretch shorter than this (0.1 s) is padded with silence up to it: less than one
#: feature frame makes onnx-asr fail, and a tenth of a second costs nothing to decode.
MIN_SAMPLES = SAMPLE_RATE // 10
_SENTENCE_END = (".", "?", "!", "。", "？", "！")


@dataclass(frozen=True, slots=True)
class TimedWord:
    """A word as a Parakeet decoder gives it: text without its leading space, times in seconds."""

    text: str
    start: float
    end: float
    #: The mean log-probability of its tokens, where the engine reports them.
    logprob: float | None = None


#: Hands stretches of 16 kHz mono audio to be decoded together; each one's words (timed from
#: its own start) to come, in order.
Submit = Callable[[list[np.ndarray]], list[Future[list[TimedWord]]]]


def transcribe(
    audio: np.ndarray | Iterable[np.ndarray],
    submit: Submit,
    on_segment: OnSegment,
    language: str | None,
    with_words: bool,
    skip: float = 0.0,
    ahead: int = 1,
) -> TranscribeResult:
    """Decode `audio` stretch by stretch, sending each segment as soon as its stretch is done.

    A stream of blocks is read a window at a time (worker.audio.pieces.sections), `ahead`
    windows handed to `submit` together (decoded in one batch, beside other requests'), so
    an hour costs the memory of `ahead` times two minutes. Segments carry their words only
    `with_words` (a request's word timestamps), as Whisper's do. The first `skip` seconds of
    an array are not read (a live decode's context, which Parakeet has no use for); times
    stay on the whole array's clock.
    """
    if skip > 0 and isinstance(audio, np.ndarray):
        start = round(skip * SAMPLE_RATE)

        def later(segment: Segment) -> bool:
            return on_segment(_later(segment, skip))

        result = transcribe(audio[start:], submit, later, language, with_words, ahead=ahead)
        return _result([_later(s, skip) for s in result.segments], language, audio.size / SAMPLE_RATE)
    blocks = pieces.Blocks(audio)
    segments: list[Segment] = []
    sections = pieces.sections(blocks, speech, window_seconds=WINDOW_SECONDS)
    while chunk := list(itertools.islice(sections, max(1, ahead))):
        decoded = submit([_padded(section.samples) for section in chunk])
        for section, words_to_come in zip(chunk, decoded, strict=True):
            first, last = section.start / SAMPLE_RATE, section.end / SAMPLE_RATE
            words = [_shifted(w, first, last) for w in words_to_come.result()]
            for segment in group(words, first_id=len(segments), with_words=with_words):
                segments.append(segment)
                if not on_segment(segment):
                    return _result(segments, language, blocks.seconds)
    return _result(segments, language, blocks.seconds)


def _padded(piece: np.ndarray) -> np.ndarray:
    """`piece`, padded with silence to MIN_SAMPLES: onnx-asr fails on less than a feature frame."""
    return piece if piece.size >= MIN_SAMPLES else np.pad(piece, (0, MIN_SAMPLES - piece.size))


def group(words: Sequence[TimedWord], first_id: int = 0, with_words: bool = True) -> list[Segment]:
    """Consecutive words as segments, each ended by a sentence's end, a pause or its length."""
    segments: list[Segment] = []
    current: list[TimedWord] = []
    for i, word in enumerate(words):
        current.append(word)
        following = words[i + 1] if i + 1 < len(words) else None
        if (
            following is None
            or word.text.endswith(_SENTENCE_END)
            or following.start - word.end >= PAUSE_SECONDS
            or following.end - current[0].start > MAX_SEGMENT_SECONDS
        ):
            segments.append(_segment(first_id + len(segments), current, with_words))
            current = []
    return segments


def _segment(index: int, words: list[TimedWord], with_words: bool) -> Segment:
    logprobs = [w.logprob for w in words if w.logprob is not None]
    return Segment(
        id=index,
        start=round(words[0].start, 3),
        end=round(words[-1].end, 3),
        text="".join(" " + w.text for w in words),
        avg_logprob=round(sum(logprobs) / len(logprobs), 4) if logprobs else 0.0,
        words=None
        if not with_words
        else [
            Word(
                start=round(w.start, 3),
                end=round(w.end, 3),
                word=" " + w.text,
                # Parakeet's decoders give no word confidence unless asked for token scores.
                probability=round(math.exp(w.logprob), 4) if w.logprob is not None else 1.0,
            )
            for w in words
        ],
    )


def _shifted(word: TimedWord, offset: float, limit: float) -> TimedWord:
    """`word` on the whole audio's clock, never past its stretch's end (padding has no words)."""
    start = min(word.start + offset, limit)
    return TimedWord(word.text, start, min(max(word.end + offset, start), limit), word.logprob)


def _later(segment: Segment, seconds: float) -> Segment:
    """`segment` moved `seconds` later, words and all."""
    words = None if segment.words is None else [_later_word(w, seconds) for w in segment.words]
    start, end = round(segment.start + seconds, 3), round(segment.end + seconds, 3)
    return msgspec.structs.replace(segment, start=start, end=end, words=words)


def _later_word(word: Word, seconds: float) -> Word:
    return msgspec.structs.replace(word, start=round(word.start + seconds, 3), end=round(word.end + seconds, 3))


def _result(segments: list[Segment], language: str | None, seconds: float) -> TranscribeResult:
    return TranscribeResult(
        text="".join(s.text for s in segments).strip(),
        language=language,
        duration=round(seconds, 3),
        segments=segments,
    )
