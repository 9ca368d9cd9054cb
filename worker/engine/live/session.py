"""One live stream: audio and decoder outputs in, SpeechStarted / Partial / Final events out.

The session never calls the model. `next_job()` says what it wants decoded; the caller
runs it (on whatever thread or lane it likes) and hands the segments back with `done()`.
So the whole engine runs, and is tested, with recorded decoder outputs and no process,
and the worker's scheduler decides whose job runs when. At most one partial per session is
out at a time, which is what makes the partial cadence follow the decoder: the next
partial is offered once the last one is back and at least `partial_step_s` of new audio
has come, so a slow decoder gets fewer, longer partials rather than a queue. A final may
overtake a partial that is out (one final at a time): when the speaker pauses, the final
starts on another lane at once instead of after the partial, whose result is then stale
(`python -m bench --live` measures the end of speech → final).

States (the VAD's events drive them; `commit()` and `finish()` are the caller's):

| state \\ event | VAD start / resume        | VAD pause      | VAD end                  | commit()                 | finish()            |
|----------------|---------------------------|----------------|--------------------------|--------------------------|---------------------|
| silence        | open an utterance: speech | -              | -                        | -                        | finished            |
| speech         | -                         | ending         | -                        | close it, open the rest  | close it: finished  |
| ending         | resume: speech (the       | -              | close it: silence        | close it: silence        | close it: finished  |
|                | speculative final dropped)|                |                          |                          |                     |
| finished       | push() refuses            |                |                          | nothing                  | nothing             |

- silence: no utterance; only a short pre-roll of audio is kept, so a first word is not clipped.
- speech: partials are offered (greedy, prompted with what was said before the utterance),
  and each pass goes through LocalAgreement-2; an utterance about to outgrow the decoder's
  30 s window is cut at its last committed word and the rest goes on as the next utterance.
- ending: the VAD heard a pause; `speculate_ms` into it a final (full beam) is offered
  speculatively, so that it is done, or nearly, when the pause becomes the end.
- finished: `finish()` was called; pending finals are still offered, and `finished` turns
  True once the last one is emitted.

Closing an utterance queues its final (the speculative one if it covers the same pause);
finals are offered before partials, and emitted in order, each once its decode is back and
its silence complete. SpeechStarted/SpeechStopped follow the VAD alone, always in pairs.

Beside it, one job each: `utterance` (the speech being heard), `cutter` (a job's audio,
context and prompt), `finals` (the finals owed, emitted in order), `history` (what was
said before), `times` (samples, seconds, decoder times moved onto the session's), `tuning`
(the knobs).
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import numpy as np
import numpy.typing as npt

from common.protocol.live import LiveEvent, LiveParams, Partial, SpeechStarted, SpeechStopped
from common.protocol.types import Heard, Segment, Word
from worker.engine.live import guards
from worker.engine.live.agreement import LocalAgreement
from worker.engine.live.buffer import AudioBuffer
from worker.engine.live.cutter import JobCutter
from worker.engine.live.finals import OwedFinals
from worker.engine.live.history import History
from worker.engine.live.jobs import SAMPLE_RATE, DecodeJob, PendingFinal
from worker.engine.live.times import sample, seconds, shift_word
from worker.engine.live.tuning import Tuning
from worker.engine.live.utterance import Utterance
from worker.engine.live.vad import StreamingVad, VadEvent

State = Literal["silence", "speech", "ending", "finished"]


_DEFAULT_TUNING = Tuning()


class LiveSession:
    def __init__(
        self,
        params: LiveParams,
        vad: StreamingVad | None = None,
        *,
        beam_size: int = 5,
        tuning: Tuning = _DEFAULT_TUNING,
        commits: bool = True,
    ) -> None:
        """`commits`: whether the decoder keeps a final's committed words (honours
        `TranscribeParams.prefix`); one that cannot gets no words committed, its partials'
        text all tentative, so that a final never contradicts a committed word."""
        vad = vad if vad is not None else StreamingVad(end_silence_ms=params.end_silence_ms)
        if vad.received:
            raise ValueError("a LiveSession needs a fresh StreamingVad: the session counts time from its first sample")
        if vad.end_silence_ms != params.end_silence_ms:
            raise ValueError(
                f"the VAD ends speech after {vad.end_silence_ms} ms, the params say {params.end_silence_ms}"
            )
        self.params = params
        self._vad = vad
        self._beam_size = beam_size
        self._tuning = tuning
        self._commit_probability = tuning.commit_probability if commits else math.inf
        self._buffer = AudioBuffer()
        self._utterance: Utterance | None = None
        self._out: DecodeJob | None = None  # the partial or final out, when only one is
        self._final_out: DecodeJob | None = None  # a final that overtook the partial out
        self._utterance_ids = itertools.count()
        self._last_index = -1  # the last utterance opened
        self._seq = itertools.count()
        self._history = History(params.prompt, tuning.prompt_chars)
        self._finals = OwedFinals(params, self._history, self._seq)
        self._jobs = JobCutter(params, self._buffer, self._history, tuning.context_s)
        self._finishing = False

    # -- the caller's verbs ------------------------------------------------------------

    @property
    def state(self) -> State:
        if self._finishing:
            return "finished"
        if self._utterance is None:
            return "silence"
        return "speech" if self._utterance.pause_at is None else "ending"

    @property
    def finished(self) -> bool:
        """`finish()` was called and every final it owed is out."""
        return self._finishing and not self._finals

    @property
    def owed_finals(self) -> int:
        """Utterances over whose final is not decoded yet: how far the decoder is behind this
        stream (the caller stops taking audio from a client that keeps this growing)."""
        return self._finals.undecoded

    @property
    def buffered(self) -> int:
        """Samples of audio held (the current utterance, or the pre-roll): bounded, whatever the session's length."""
        return len(self._buffer)

    def push(self, samples: npt.ArrayLike) -> list[LiveEvent]:
        """Take more 16 kHz mono float32 audio: SpeechStarted/SpeechStopped, and a Final if one was waiting
        only for its silence to complete."""
        if self._finishing:
            raise RuntimeError("push() after finish()")
        chunk = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._buffer.append(chunk)
        events: list[LiveEvent] = []
        for event in self._vad.push(chunk):
            events += self._on_vad(event)
        events += self._limit_length()
        self._buffer.drop_before(self._keep_from())
        self._history.forget_before(self._buffer.start)
        return events

    def next_job(self) -> DecodeJob | None:
        """The decode this session wants next; None when nothing is worth decoding now.
        Finals come before partials; a final may go out while a partial is out, nothing else."""
        if self._out is None:
            self._out = self._choose_job()
            return self._out
        if self._out.kind == "partial" and self._final_out is None:
            self._final_out = self._choose_final()
            return self._final_out
        return None

    def done(self, job: DecodeJob, segments: list[Segment]) -> list[LiveEvent]:
        """The segments `job` decoded to (times relative to its audio): a Partial, a Final, or
        nothing when events overtook the job."""
        if job is self._final_out:
            self._final_out = None
        elif job is self._out:
            self._out, self._final_out = self._final_out, None  # an overtaking final is now the one out
        else:
            raise ValueError(f"job {job.id} is not this session's job in flight")
        segments = guards.clean(segments)
        if (finals := self._finals.decoded(job, segments)) is not None:
            return finals
        u = self._utterance
        if u is None or job.utterance != u.index:
            return []  # the utterance ended or was cut under it
        if job.kind == "final":
            if u.speculative is not None and u.speculative.job is job:
                u.speculative.segments = segments  # kept until the pause ends the utterance
            return []
        return self._show_partial(u, job, segments)

    def commit(self) -> list[LiveEvent]:
        """End the current utterance now: its final becomes the next job. Speech that goes on
        is the next utterance's. With `empty_finals`, a commit with no utterance open still
        owes a Final (of the pre-roll: usually empty), so every commit is answered."""
        u = self._utterance
        if self._finishing or (u is None and not self.params.empty_finals):
            return []
        if u is None:  # nothing heard: the final decodes the pre-roll, and no speech goes on
            end = self._buffer.end
            self._open(end, preroll=True)
            return self._close(end, end)
        if u.pause_at is not None:
            return self._close(u.pause_at, self._pause_audio_end(u.pause_at))
        end = self._buffer.end
        events = self._close(end, end)
        if self.params.turns == "vad" or self._vad.phase in ("speech", "pause"):
            self._open(end, preroll=False)
        return events

    def clear(self) -> list[LiveEvent]:
        """Drop the current utterance and its audio (no final): the client cleared its buffer.
        Speech that goes on is a new utterance's; finals already owed still come."""
        u = self._utterance
        if self._finishing or u is None:
            return []
        self._utterance = None
        end = self._buffer.end
        if self._vad.phase == "speech":
            self._open(end, preroll=False)
        self._buffer.drop_before(self._keep_from())
        return []

    def finish(self) -> list[LiveEvent]:
        """End of stream: SpeechStopped if speech was going on, and the final for what was heard
        (now, or from `done()`); `finished` is True once it is out."""
        if self._finishing:
            return []
        events: list[LiveEvent] = []
        u = self._utterance
        if self._vad.phase in ("speech", "pause"):
            at = self._vad.pause_at if self._vad.pause_at is not None else self._buffer.end
            events.append(SpeechStopped(at=seconds(at), utterance=u.index if u is not None else self._last_index))
        if u is not None and u.pause_at is not None:
            events += self._close(u.pause_at, self._pause_audio_end(u.pause_at))
        elif u is not None:
            events += self._close(self._buffer.end, self._buffer.end)
        self._finishing = True
        self._buffer.drop_before(self._buffer.end)  # every final has its own copy
        return events

    # -- the VAD's events ----------------------------------------------------------------

    def _on_vad(self, event: VadEvent) -> list[LiveEvent]:
        u = self._utterance
        manual = self.params.turns == "manual"  # only commits end utterances: pauses are just audio
        if event.kind == "start":
            if u is None:
                u = self._open(event.sample, preroll=True)
            return [SpeechStarted(at=seconds(event.sample), utterance=u.index)]
        if event.kind == "pause":
            if u is not None and not manual:
                u.pause_at = event.sample
            return []
        if event.kind == "resume":
            if u is None:  # committed during the pause: the speech that resumes is a new utterance
                self._open(event.sample, preroll=True)
            else:
                u.pause_at, u.speculative = None, None  # a speculative final out is now stale
            return []
        index = u.index if u is not None else self._last_index
        events: list[LiveEvent] = [SpeechStopped(at=seconds(event.sample), utterance=index)]
        if u is not None and not manual:
            end = event.sample if u.pause_at is None else u.pause_at  # later than the VAD's after a cut
            events += self._close(end, self._pause_audio_end(end))
        return events

    # -- utterances ----------------------------------------------------------------------

    def _open(self, at: int, *, preroll: bool, history: list[Word] | None = None) -> Utterance:
        """A new utterance from `at`. With `preroll` (speech began there) its audio starts the pre-roll
        before; where the stream itself began later (speech from its first sample) zeros stand in,
        so Whisper always hears an onset from silence: on the bundled model, "The quick round-fark"
        without them, "The quick brown fox" with.  Without (a cut): its audio starts at `at`."""
        want = at - self._ms(self._tuning.preroll_ms) if preroll else at
        audio_from = max(self._buffer.start, want)
        agreement = LocalAgreement(
            hold_back_s=self._tuning.hold_back_s, min_probability=self._commit_probability, history=history
        )
        index = self._last_index = next(self._utterance_ids)
        lead = audio_from - want
        self._utterance = Utterance(index, at, audio_from, lead, agreement, partial_mark=at)
        return self._utterance

    def _close(self, end: int, audio_end: int, *, adds_context: bool = True) -> list[LiveEvent]:
        """End the current utterance at `end` (speech end); its final decodes audio up to `audio_end`."""
        u = self._utterance
        assert u is not None
        self._utterance = None
        pending = u.speculative if u.speculative is not None and u.speculative.end == end else None
        if pending is None:
            job = self._jobs.cut("final", u, audio_end, self._beam_size)
            pending = PendingFinal(job, u.start, end, adds_context=adds_context)
        return self._finals.add(pending)

    def _limit_length(self) -> list[LiveEvent]:
        """Cut an utterance about to outgrow Whisper's window: a Final for its committed part,
        the rest goes on as the next utterance (so memory stays bounded too)."""
        u = self._utterance
        length = 0 if u is None else self._buffer.end - u.audio_from
        if u is None or length < self._tuning.cut_after_s * SAMPLE_RATE:
            return []
        cut = self._cut_point(u)
        if cut is None:
            if length < self._tuning.max_utterance_s * SAMPLE_RATE:
                return []
            cut = u.audio_from + int(self._tuning.max_utterance_s * SAMPLE_RATE)  # nothing committed: cut anyway
        u.speculative = None
        events = self._close(cut, cut, adds_context=False)
        committed = u.agreement.committed
        if committed:  # the cut part's final comes later: what was committed stands in for it
            self._history.hear([Heard(committed[0].start, committed[-1].end, u.agreement.committed_text)])
        rest = self._open(cut, preroll=False, history=u.agreement.committed)
        rest.pause_at = None if u.pause_at is None else max(u.pause_at, cut)
        return events

    def _cut_point(self, u: Utterance) -> int | None:
        """The end of the utterance's last committed word, if that leaves a part worth a final."""
        if not u.agreement.committed:
            return None
        cut = round(u.agreement.committed[-1].end * SAMPLE_RATE)
        return cut if cut - u.audio_from >= SAMPLE_RATE else None

    def _keep_from(self) -> int:
        """The earliest sample still needed: the utterance's audio (else the pre-roll), and the
        speech up to `context_s` before it: heard, or whose final is still being decoded (the
        next utterance often starts before the last one's final is back)."""
        if self._utterance is not None:
            keep = self._utterance.audio_from
        else:
            keep = self._vad.pending_from - self._ms(self._tuning.preroll_ms)
        horizon = keep - round(self._tuning.context_s * SAMPLE_RATE)
        preroll = self._ms(self._tuning.preroll_ms)  # where a final's audio begins
        starts = [sample(h.start) for h in self._history.heard] + [p.start - preroll for p in self._finals]
        return min([keep, *(start for start in starts if start >= horizon)])

    def _pause_audio_end(self, pause_at: int) -> int:
        """A final's audio ends a little into its pause (Whisper ends a sentence better with some silence)."""
        return min(pause_at + self._ms(self._tuning.speculate_ms), self._buffer.end)

    # -- jobs ------------------------------------------------------------------------------

    def _choose_job(self) -> DecodeJob | None:
        if (final := self._choose_final()) is not None or self._finishing:
            return final
        u = self._utterance
        if u is None or u.pause_at is not None:
            return None
        if self.params.turns == "manual" and self._vad.phase not in ("speech", "pause"):
            return None  # the silence after speech, before the client's commit: nothing new to show
        if self._buffer.end - u.partial_mark >= self._tuning.partial_step_s * SAMPLE_RATE:
            u.partial_mark = self._buffer.end
            return self._jobs.cut("partial", u, self._buffer.end, 1)
        return None

    def _choose_final(self) -> DecodeJob | None:
        """A final to decode now: an utterance's that is owed, else a speculative one in a pause."""
        for pending in self._finals:
            if pending.segments is None and pending.job is not self._out and pending.job is not self._final_out:
                return pending.job
        u = self._utterance
        if self._finishing or u is None or u.pause_at is None:
            return None
        return self._speculate(u, u.pause_at)

    def _speculate(self, u: Utterance, pause_at: int) -> DecodeJob | None:
        """The final, started `speculate_ms` into a pause that may yet become the utterance's end."""
        audio_end = pause_at + self._ms(self._tuning.speculate_ms)
        if u.speculative is not None or self._vad.processed < audio_end:
            return None
        job = self._jobs.cut("final", u, audio_end, self._beam_size)
        u.speculative = PendingFinal(job, u.start, pause_at)
        return job

    # -- events ------------------------------------------------------------------------------

    def _show_partial(self, u: Utterance, job: DecodeJob, segments: list[Segment]) -> list[LiveEvent]:
        if u.speculative is not None:
            return []  # its final is out, begun with the words committed then: no more now
        words = [shift_word(w, job.offset) for s in segments for w in s.words or []]
        u.agreement.insert(words, edge=job.offset + job.duration)
        shown = (u.agreement.text, u.agreement.committed_text)
        if not shown[0] or shown == u.shown:
            return []
        u.shown = shown
        return [Partial(seq=next(self._seq), text=shown[0], committed=shown[1], utterance=u.index)]

    @staticmethod
    def _ms(ms: int) -> int:
        return ms * SAMPLE_RATE // 1000
