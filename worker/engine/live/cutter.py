"""A decode job cut from a live session: the utterance's audio, what was heard before it, the prompt.

A job's audio is the utterance's (from its pre-roll) up to where the job ends, preceded by
the heard speech before it that the job's window leaves room for (`History.context`):
the decoder reads the utterance after it, as a file's decoder reads a sentence after the
one before, and returns only what follows. What is older than that context goes in as the
prompt. A partial keeps to the shortest live window (where the context costs no more
encoder time); a final has Whisper's whole window, and begins with the words its partials
committed.
"""

from __future__ import annotations

import itertools
from typing import Literal

from common.protocol.live import LiveParams
from common.protocol.types import Heard
from worker.engine.live.buffer import AudioBuffer
from worker.engine.live.history import History
from worker.engine.live.jobs import LIVE_WINDOW_SECONDS, SAMPLE_RATE, WHISPER_WINDOW_SECONDS, DecodeJob
from worker.engine.live.times import sample, shifted
from worker.engine.live.utterance import Utterance


class JobCutter:
    def __init__(self, params: LiveParams, buffer: AudioBuffer, history: History, context_s: float) -> None:
        """Cuts jobs from the session's `buffer` and `history` (both the session's own, read
        as they are when a job is cut); `context_s`: how far back heard speech is used."""
        self._params = params
        self._buffer = buffer
        self._history = history
        self._context_s = context_s
        self._ids = itertools.count()  # a job's id, unique within the session

    def cut(self, kind: Literal["partial", "final"], u: Utterance, audio_end: int, beam_size: int) -> DecodeJob:
        """A `kind` job for utterance `u`, its audio ending at sample `audio_end`."""
        context = self._context(u, audio_end, kind)
        begin = min([u.audio_from, *(sample(h.start) for h in context)])
        lead = 0 if context else u.lead
        offset = (begin - lead) / SAMPLE_RATE
        heard_until = max([u.audio_from, *(sample(h.end) for h in context)]) if context else begin
        return DecodeJob(
            kind=kind,
            audio=self._buffer.copy(begin, audio_end, lead=lead),
            prompt=self._history.prompt(len(self._history.heard) - len(context)),
            utterance=u.index,
            beam_size=beam_size,
            language=self._params.language,
            offset=offset,
            id=next(self._ids),
            word_timestamps=kind == "partial" or self._params.word_timestamps,
            heard=tuple(Heard(shifted(h.start, -offset), shifted(h.end, -offset), h.text) for h in context),
            heard_seconds=(heard_until - begin) / SAMPLE_RATE,
            prefix=(u.agreement.committed_text or None) if kind == "final" else None,
        )

    def _context(self, u: Utterance, audio_end: int, kind: Literal["partial", "final"]) -> list[Heard]:
        """The heard segments a job is decoded with: the latest ones, as far back as `context_s`
        before the utterance and as the job's window leaves room for (a partial keeps to the
        shortest live window, where the context costs no more encoder time), each ending
        before the utterance's speech starts."""
        window = LIVE_WINDOW_SECONDS if kind == "partial" else WHISPER_WINDOW_SECONDS
        earliest = max(
            self._buffer.start,
            audio_end - (window - 1) * SAMPLE_RATE,
            u.audio_from - round(self._context_s * SAMPLE_RATE),
        )
        return self._history.context(earliest, u.start)
