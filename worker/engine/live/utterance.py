"""The speech a live session is hearing now: one record, replaced (never reset) when it ends."""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.engine.live.agreement import LocalAgreement
from worker.engine.live.jobs import PendingFinal


@dataclass
class Utterance:
    """The speech being heard now; replaced, never reset, when it ends."""

    index: int
    start: int  # speech start, session samples
    audio_from: int  # its audio begins here (the pre-roll before `start`)
    lead: int  # zeros its jobs' audio starts with: the pre-roll the stream did not have
    agreement: LocalAgreement
    partial_mark: int  # the audio's end when its last partial was offered
    pause_at: int | None = None  # set while ending: where the pause began
    speculative: PendingFinal | None = None
    shown: tuple[str, str] = field(default=("", ""))  # the last Partial's (text, committed)
