"""The finals a live session owes: queued as utterances end, emitted in order once decoded.

An utterance's final goes out once its decode is back and every earlier utterance's has
gone out, so finals never overtake one another, however their decodes finish. A final
with no text is not emitted (with `empty_finals` it is: every commit is answered). Its
text becomes heard speech (`History`), which the utterances after it are read with; a
cut part's does not, since its committed words already stand in for it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from common.protocol.live import Final, LiveEvent, LiveParams
from common.protocol.types import Heard, Segment
from worker.engine.live.history import History
from worker.engine.live.jobs import DecodeJob, PendingFinal
from worker.engine.live.times import seconds, shift_segment


class OwedFinals:
    def __init__(self, params: LiveParams, history: History, seq: Iterator[int]) -> None:
        """`seq` numbers the session's events (partials take their numbers from it too)."""
        self._params = params
        self._history = history
        self._seq = seq
        self._pending: deque[PendingFinal] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[PendingFinal]:
        """The finals owed, oldest first."""
        return iter(self._pending)

    @property
    def undecoded(self) -> int:
        """Finals owed whose decode is not back yet."""
        return sum(1 for pending in self._pending if pending.segments is None)

    def add(self, pending: PendingFinal) -> list[LiveEvent]:
        """An utterance ended: its final is owed (and goes out at once if its decode is back)."""
        self._pending.append(pending)
        return self._drain()

    def decoded(self, job: DecodeJob, segments: list[Segment]) -> list[LiveEvent] | None:
        """The finals now due, if `job` is one of the finals owed; None if it is not."""
        for pending in self._pending:
            if pending.job is job:
                pending.segments = segments
                return self._drain()
        return None

    def _drain(self) -> list[LiveEvent]:
        """Finals whose decode is back, in utterance order; an utterance left with no text has none."""
        events: list[LiveEvent] = []
        while self._pending and self._pending[0].segments is not None:
            pending = self._pending.popleft()
            final = self._final(pending)
            if final is not None:
                events.append(final)
        return events

    def _final(self, pending: PendingFinal) -> Final | None:
        segments, text = final_segments(pending, self._params.word_timestamps)
        if not text and not self._params.empty_finals:
            return None
        if pending.adds_context:
            self._history.hear(Heard(s.start, s.end, s.text.strip()) for s in segments if s.text.strip())
        start, end = seconds(pending.start), seconds(pending.end)
        return Final(
            seq=next(self._seq), text=text, start=start, end=end, segments=segments, utterance=pending.job.utterance
        )


def final_segments(pending: PendingFinal, keep_words: bool) -> tuple[list[Segment], str]:
    """A final's segments in session time (numbered from 0, words kept with `keep_words`) and
    its text, which begins with the words its partials committed (`DecodeJob.prefix`)."""
    assert pending.segments is not None
    segments = [shift_segment(s, pending.job.offset, i, keep_words) for i, s in enumerate(pending.segments)]
    text = "".join(s.text for s in segments).strip()
    committed = pending.job.prefix
    if committed and not text.startswith(committed):
        # The model was made to write them, and a guard then dropped what it wrote
        # after them (a loop, say): the committed words are its reading.
        start, end = seconds(pending.start), seconds(pending.end)
        segments, text = [Segment(id=0, start=start, end=end, text=" " + committed)], committed
    return segments, text
