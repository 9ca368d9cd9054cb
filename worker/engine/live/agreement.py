"""LocalAgreement-2: a word is committed once two consecutive decoding passes agree on it.

Each partial re-decodes the utterance so far, and Whisper's guess for the last second or
so changes from pass to pass as more audio arrives. What two passes in a row put in the
same place, though, is nearly always what the final will say: that prefix is committed
and never taken back, the rest is shown as tentative. Modelled on ufal/whisper_streaming's
`HypothesisBuffer` (insert the new pass with absolute times, flush the prefix it shares with
the previous pass), with three differences: words are compared normalised (case and
punctuation, which Whisper changes as a sentence grows), a word that ends within
`hold_back_s` of the audio's edge is never committed (it may be cut mid-way), and the state
is plain lists owned by one object (no mutable tuples).
"""

from __future__ import annotations

from common.protocol.types import Word
from worker.engine.live.guards import normalise

MAX_JOIN_NGRAM = 5  # longest run of words looked for at the join of committed text and a new pass
SLACK_S = 0.1  # a new word may start this much before the last committed word's end and still be new
JOIN_WINDOW_S = 1.0  # a pass is checked for duplicates at the join only if it starts this close to it


class LocalAgreement:
    """Committed words (only ever appended to) and the latest pass's tentative rest.

    `history` seeds the join check with words committed before this buffer's audio (the
    end of the previous part of a long utterance), so a word cut in two at that join is
    not said twice; they are not part of `committed`.
    """

    def __init__(
        self, *, hold_back_s: float = 0.3, min_probability: float = 0.0, history: list[Word] | None = None
    ) -> None:
        self._hold_back_s = hold_back_s
        self._min_probability = min_probability
        self._history = list(history or [])[-MAX_JOIN_NGRAM:]
        self.committed: list[Word] = []
        self.tentative: list[Word] = []  # the latest pass after the committed words
        self._last_end = self._history[-1].end if self._history else 0.0

    @property
    def committed_text(self) -> str:
        return "".join(w.word for w in self.committed).strip()

    @property
    def text(self) -> str:
        """Committed plus tentative: `committed_text` is always a prefix of it."""
        return "".join(w.word for w in self.committed + self.tentative).strip()

    def insert(self, words: list[Word], edge: float) -> list[Word]:
        """Take a new pass (`words` at absolute times, decoded from audio ending at `edge`);
        commit the prefix it shares with the previous pass and return the words just committed."""
        new = self._new_words(words)
        commit: list[Word] = []
        while new and self.tentative and _same(new[0], self.tentative[0]):
            if new[0].end > edge - self._hold_back_s:
                break  # the last word may be cut by the buffer's edge: wait for more audio
            if new[0].probability < self._min_probability:
                break  # the model is unsure of it (even a word every pass agrees on may be wrong)
            commit.append(new.pop(0))
            self.tentative.pop(0)
        self.tentative = new
        if commit:
            self.committed.extend(commit)
            self._last_end = commit[-1].end
        return commit

    def _new_words(self, words: list[Word]) -> list[Word]:
        """The words of a pass that come after what is committed, duplicates at the join removed."""
        new = [w for w in words if w.start > self._last_end - SLACK_S]
        done = (self._history + self.committed)[-MAX_JOIN_NGRAM:]
        if not new or not done or abs(new[0].start - self._last_end) >= JOIN_WINDOW_S:
            return new
        for n in range(1, min(len(done), len(new)) + 1):
            if all(_same(a, b) for a, b in zip(done[-n:], new[:n], strict=True)):
                return new[n:]
        return new


def _same(a: Word, b: Word) -> bool:
    return normalise(a.word) == normalise(b.word)
