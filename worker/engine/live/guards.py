"""What Whisper says when nobody speaks: dropped before it reaches a partial or a final.

A live stream feeds the model far more near-silence and noise than a file does (every
pause, every breath at the end of an utterance), and Whisper's answer to those is a
confident-sounding phrase ("Thank you.", "you you you …"). Three rules catch them:

- Whisper's own no-speech rule, as openai-whisper applies it: a segment whose
  `no_speech_prob` is above 0.6 while its `avg_logprob` is below -1.0 was not speech;
- a segment whose text compresses better than 2.4 (gzip ratio) is a loop;
- a word or short phrase repeated more than 3 times in a row is one occurrence, the rest
  dropped (counted over the whole pass, so a loop split into segments is caught too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from common.protocol.types import Segment, Word

NO_SPEECH_PROB = 0.6
LOW_LOGPROB = -1.0
MAX_COMPRESSION_RATIO = 2.4
MAX_REPEATS = 3  # a phrase may occur this many times in a row; more is a loop
MAX_NGRAM = 4  # the longest phrase looked for in loops

_NOT_A_LETTER = re.compile(r"[^\w']+")


def normalise(word: str) -> str:
    """A word as compared: lower case, punctuation and spaces gone ("Dog." == " dog")."""
    return _NOT_A_LETTER.sub("", word.lower())


def is_hallucination(segment: Segment) -> bool:
    silent = segment.no_speech_prob > NO_SPEECH_PROB and segment.avg_logprob < LOW_LOGPROB
    return silent or segment.compression_ratio > MAX_COMPRESSION_RATIO


def clean(segments: list[Segment]) -> list[Segment]:
    """`segments` without hallucinated segments, loops broken; segments left empty are dropped."""
    kept = [s for s in segments if not is_hallucination(s)]
    tagged = [(i, w) for i, s in enumerate(kept) for w in _words_of(s)]
    survivors = break_repetitions(tagged)
    out: list[Segment] = []
    for i, segment in enumerate(kept):
        words = [w for j, w in survivors if j == i]
        if not words or not any(normalise(w.word) for w in words):
            continue
        if len(words) == len(_words_of(segment)):
            out.append(segment)  # untouched: keep the model's own text and spacing
            continue
        text = "".join(w.word for w in words)
        out.append(msgspec.structs.replace(segment, text=text, words=words if segment.words is not None else None))
    return out


def _words_of(segment: Segment) -> list[Word]:
    """The segment's words; a segment decoded without word timings gets its text's words at its own times."""
    if segment.words is not None:
        return segment.words
    return [Word(segment.start, segment.end, " " + w, 0.0) for w in segment.text.split()]


@dataclass(frozen=True)
class _Run:
    length: int  # words in the phrase
    repeats: int  # times it occurs in a row


def break_repetitions(words: list[tuple[int, Word]]) -> list[tuple[int, Word]]:
    """`words` with every phrase of up to MAX_NGRAM words that repeats more than MAX_REPEATS
    times in a row cut to its first occurrence. Each word comes tagged with its segment."""
    keys = [normalise(w.word) for _, w in words]
    out: list[tuple[int, Word]] = []
    i = 0
    while i < len(words):
        run = _loop_at(keys, i)
        if run is None:
            out.append(words[i])
            i += 1
        else:
            out.extend(words[i : i + run.length])
            i += run.length * run.repeats
    return out


def _loop_at(keys: list[str], i: int) -> _Run | None:
    """The shortest phrase starting at `i` that repeats more than MAX_REPEATS times, if any."""
    for n in range(1, MAX_NGRAM + 1):
        phrase = keys[i : i + n]
        if len(phrase) < n:
            return None
        repeats = 1
        while keys[i + repeats * n : i + (repeats + 1) * n] == phrase:
            repeats += 1
        if repeats > MAX_REPEATS:
            return _Run(n, repeats)
    return None
