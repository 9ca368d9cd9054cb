"""The waits a speaker sees on a live session, for the heartbeat's tally.

Two of them: speech start → the utterance's first words (a partial, or its final), and
the last voiced sample → its final. Both are measured from when the audio in question
reached the worker: the engine speaks in session time (`SpeechStarted.at`, `Final.end`),
and `Arrivals` (`worker.engine.tally`) turns that into the moment it arrived.
"""

from __future__ import annotations

import time

from common.protocol import Final, LiveEvent, Partial, SpeechStarted
from worker.engine.tally import Arrivals, Tally


class LatencyObserver:
    """One session's latencies: told when its audio arrives and which events go out."""

    def __init__(self, tally: Tally) -> None:
        self._tally = tally
        self._arrivals = Arrivals()  # when its audio came
        self._speech_from: float | None = None  # session time the utterance began, until its first words

    def arrived(self, seconds: float) -> None:
        """A frame of `seconds` of audio arrived now."""
        self._arrivals.add(seconds, time.monotonic())

    def sent(self, event: LiveEvent) -> None:
        """`event` goes out now: a partial or a final ends a wait the speaker had."""
        if isinstance(event, SpeechStarted):
            self._speech_from = event.at
            return
        if not isinstance(event, (Partial, Final)):
            return
        now = time.monotonic()
        # An utterance's first words: a partial, or its final (not an earlier utterance's final).
        speech_from = self._speech_from
        if speech_from is not None and (isinstance(event, Partial) or event.start >= speech_from - 0.01):
            if (arrived := self._arrivals.arrived(speech_from)) is not None:
                self._tally.first_partial(now - arrived)
            self._speech_from = None
        if isinstance(event, Final) and (arrived := self._arrivals.arrived(event.end)) is not None:
            self._tally.final_after_speech(now - arrived)
