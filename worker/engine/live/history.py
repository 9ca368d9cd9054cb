"""What was said before the utterance being heard: the prompts' text, and the heard context.

Whisper reads a stretch of speech best with what came before it. Two kinds of "before"
are kept: the text said (cut at a word, the prompt a job is given), and the latest finals'
segments whose audio is still held (`heard`: a job decodes that audio too, with its text,
as a file's decoder reads a sentence after the one before). Heard speech whose audio is
dropped becomes said text.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from common.protocol.types import Heard
from worker.engine.live.jobs import SAMPLE_RATE
from worker.engine.live.times import sample


class History:
    def __init__(self, prompt: str | None, prompt_chars: int) -> None:
        """`prompt`: the client's own, said before anything; `prompt_chars`: the longest prompt."""
        self._prompt_chars = prompt_chars
        self._said = prompt or ""  # what the prompts are cut from: said before `heard`
        self.heard: deque[Heard] = deque()  # the latest finals' segments, session times, audio still held

    def hear(self, heard: Iterable[Heard]) -> None:
        """Speech a final (or a cut's committed words) gave, its audio still held."""
        self.heard.extend(heard)

    def forget_before(self, start: int) -> None:
        """Heard speech whose audio (before sample `start`) is gone is no context any more:
        its text joins the prompt's."""
        while self.heard and sample(self.heard[0].start) < start:
            self._add_said(self.heard.popleft().text)

    def context(self, earliest: int, speech_start: int) -> list[Heard]:
        """The latest heard segments that begin at sample `earliest` or later, each ending
        before sample `speech_start` (the utterance's own speech)."""
        context: list[Heard] = []
        for heard in reversed(self.heard):
            if sample(heard.start) < earliest:
                break
            end = min(heard.end, speech_start / SAMPLE_RATE)
            if end > heard.start:
                context.insert(0, Heard(heard.start, end, heard.text))
        return context

    def prompt(self, older: int) -> str | None:
        """The end of what was said before (and before the first `older` heard segments, the
        ones not in the job's context), cut at a word: Whisper's context for what follows."""
        text = " ".join([self._said, *(self.heard[i].text for i in range(older))]).strip()
        said = text[-self._prompt_chars :]
        if len(text) > self._prompt_chars and " " in said:
            said = said.split(" ", 1)[1]
        return said.strip() or None

    def _add_said(self, text: str) -> None:
        self._said = f"{self._said} {text}".strip()[-4 * self._prompt_chars :]
