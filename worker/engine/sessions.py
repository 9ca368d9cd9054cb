"""The worker's live sessions: their audio in, their events out, their decodes on the lanes.

One `LiveSession` (the engine, `worker.engine.live`) per session id, each with its own
StreamingVad and its own `PcmStream` (s16le at the client's rate → 16 kHz float32, the
resampler's state kept across frames). Everything here runs on the event loop, except the
decodes, which run on the worker's inference lanes, shared with file requests.

Scheduling. A session never queues decodes of its own: whenever a lane is free for live
work, the scheduler asks the sessions which one decodes next, so the job is cut from the
newest audio at that moment (a session that fell behind gets one partial over everything
it has, never a backlog of stale ones; its finals are never skipped). The rules:

- at most one job per session on a lane, except that a final may overtake the session's
  partial that is out: when the speaker pauses, the final starts on another lane at once
  (the engine offers nothing else while a job is out);
- finals first: sessions that may owe a final (an utterance ended, committed or closed, or
  a pause long enough for the speculative final) are asked before the others;
- partials round-robin: a session that gets a job goes to the back of the line;
- fair with file requests: the scheduler holds one place in the lanes' FIFO queue for each
  session that may want a decode (never more places than such sessions), so a file request
  waits for those already queued and no longer; a place that is granted when no session
  wants anything is given back at once.

Lifecycle, and what the supervisor hears (SESSION_EVENTs in order per session, through the
worker's one outbox):

- open: refused with ERROR(bad_parameter) for a language the model does not know (or an id
  already open, which is dropped too); the engine is made then (the first session of a
  process loads Silero: about 0.1 s on the loop, once).
- audio: `seq` must count up from 0 and a frame must be whole 16-bit samples of at most
  1 MiB; otherwise ERROR (bad_audio for the frame, internal for a lost frame) and the
  session is dropped: an ERROR ends a session, no SESSION_ENDED follows. Audio for an id
  that is not open (one just dropped, say) is ignored.
- commit: the utterance ends now; its final is the session's next decode. With `drop` (a
  client's clear), the utterance and its audio are dropped instead, no final.
- close: the resampler's tail and `finish()`; the last final(s) go out as their decodes
  come back, then SESSION_ENDED. With `abort`, SESSION_ENDED at once, and a decode still on
  a lane is stopped at its next segment and its result dropped. Closing an id that is not
  open is answered with SESSION_ENDED (the close may have crossed an ERROR).
- SHUTDOWN (`drop_all`): sessions end with the process, no finals and no messages.
- a failure in the engine or the decoder: ERROR(internal) for that session only.

Pace. A client may send audio far faster than real time (a recording replayed, or a
hostile flood). The VAD takes it as it comes (each frame costs what it carries, on the
loop, one message at a time), but the decoder cannot keep up, and every utterance the VAD
closes owes a final that is never skipped. So each frame taken is acknowledged
(SESSION_ACK, every `ACK_STEP_S` of audio), and the supervisor sends a session no more
than a few seconds of audio past its last ack. While a session owes `MAX_OWED_FINALS`
finals not yet decoded, its acks are held back: the supervisor stops sending, and the
session is paced to what the decoder does (the client is slowed down or, over the
WebSocket, refused once far ahead: `supervisor.live`). Once a final is back, what was
taken is acknowledged at once. The audio and finals held per session are bounded, and the
loop keeps answering everyone (heartbeats included).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from common.protocol import (
    Error,
    ErrorCode,
    Final,
    FromWorker,
    LiveEvent,
    Partial,
    Payload,
    ReadyInfo,
    Segment,
    SessionAck,
    SessionAudio,
    SessionClose,
    SessionCommit,
    SessionEnded,
    SessionEvent,
    SessionOpen,
    SpeechStarted,
    SpeechStopped,
)
from worker.audio.decode import AudioError
from worker.audio.stream import PcmStream
from worker.backends import Backend
from worker.engine.lanes import Lanes
from worker.engine.live import DecodeJob, LiveSession, StreamingVad
from worker.engine.tally import Arrivals, Tally

log = logging.getLogger("worker")

#: How long a granted lane waits for the event loop to say which job it runs. The loop
#: answers in microseconds; this only matters if the loop is gone (the process is ending).
_CHOOSE_TIMEOUT_S = 30.0
#: Audio taken between two acks. The supervisor's window (`supervisor.workers.session`)
#: must be well above it, or a session would wait for an ack that is not due.
ACK_STEP_S = 0.5
#: A session that owes this many finals not yet decoded gets no ack until one is back.
MAX_OWED_FINALS = 2


@dataclass(eq=False)
class _Live:
    """One open session, as the scheduler sees it."""

    id: str
    engine: LiveSession
    stream: PcmStream
    next_seq: int = 0
    jobs_out: int = 0  # on lanes: one, or a partial and the final that overtook it
    dirty: bool = True  # it may want a decode: something changed since it last said it wants none
    final_hint: bool = False  # it may owe a final: ask it before the others
    closing: bool = False  # finish() was called; SESSION_ENDED once its last final is out
    dropped: bool = False  # over (ended, aborted, failed): a job of its still on a lane is discarded
    taken_seq: int = -1  # the last frame the engine took
    acked_seq: int = -1  # the last frame acknowledged to the supervisor
    unacked_s: float = 0.0  # seconds of audio taken since that ack
    arrivals: Arrivals = field(default_factory=Arrivals)  # when its audio came, for the latency figures
    speech_from: float | None = None  # session time the utterance began, until its first partial


@dataclass(frozen=True, eq=False)
class _Decoded:
    """What a lane hands back: the job's segments, or what went wrong."""

    live: _Live
    job: DecodeJob
    segments: list[Segment] | None
    error: Exception | None
    seconds: float


class Sessions:
    def __init__(
        self,
        backend: Backend,
        info: ReadyInfo,
        lanes: Lanes,
        post: Callable[[FromWorker], None],
        start: Callable[[Coroutine[Any, Any, None], str], None],
        *,
        beam_size: int,
        tally: Tally | None = None,
    ) -> None:
        """`post` queues a message for the supervisor; `start` runs a coroutine as one of the
        worker's tasks (its failure is fatal). Both are called on the event loop only.
        `tally` gets the decodes' time and the latencies a speaker waits, for the heartbeat."""
        self._tally = tally or Tally()
        self._backend = backend
        self._info = info
        self._lanes = lanes
        self._post = post
        self._start = start
        self._beam_size = beam_size
        self._live: dict[str, _Live] = {}  # in round-robin order: whoever got a job moves to the end
        self._waiting = 0  # places this scheduler holds in the lanes' queue, not yet granted
        self.last_inference_at: float | None = None

    @property
    def count(self) -> int:
        """Sessions open now (the heartbeat's `sessions`)."""
        return len(self._live)

    def is_open(self, session_id: str) -> bool:
        return session_id in self._live

    # -- messages ---------------------------------------------------------------------

    def handle(
        self, message: SessionOpen | SessionAudio | SessionCommit | SessionClose, payload: Payload | None
    ) -> None:
        """One session message from the supervisor (the codec has checked its fields and payload)."""
        match message:
            case SessionOpen():
                self._open(message)
            case SessionAudio(id=session_id):
                assert payload is not None  # the codec guarantees SESSION_AUDIO its frame
                if (live := self._live.get(session_id)) is not None:
                    self._audio(live, message.seq, payload)
                else:
                    log.debug("audio for session %s, which is not open: ignored", session_id)
            case SessionCommit(id=session_id, drop=drop):
                if (live := self._live.get(session_id)) is not None and not live.closing:
                    self._guarded(live, live.engine.clear if drop else live.engine.commit, owes_final=not drop)
            case SessionClose(id=session_id, abort=abort):
                if (live := self._live.get(session_id)) is None:
                    self._post(SessionEnded(id=session_id))
                elif abort:
                    self._end(live)
                elif not live.closing:
                    self._close(live)
        self._kick()

    def fail(self, session_id: str, code: ErrorCode, message: str) -> None:
        """End session `session_id` with an ERROR (which tells the supervisor it is over)."""
        live = self._live.get(session_id)
        if live is not None:
            self._drop(live)
        self._post(Error(id=session_id, code=code, message=message))

    def drop_all(self) -> None:
        """SHUTDOWN: every session ends with the process; no finals, no messages."""
        for live in list(self._live.values()):
            self._drop(live)

    def _open(self, message: SessionOpen) -> None:
        session_id, params = message.id, message.params
        if session_id in self._live:  # a supervisor bug: both sides drop it, as for any ERROR
            self.fail(session_id, ErrorCode.BAD_PARAMETER, "a session with this id is already open")
            return
        languages = self._info.languages
        if params.language and languages and params.language not in languages:
            self._post(
                Error(
                    id=session_id,
                    code=ErrorCode.BAD_PARAMETER,
                    message=f"language {params.language!r} is not supported by this model; "
                    f"supported: {', '.join(languages)}",
                )
            )
            return
        try:
            stream = PcmStream(params.sample_rate)
            vad = StreamingVad(
                end_silence_ms=params.end_silence_ms,
                threshold=params.vad_threshold,
                neg_threshold=max(0.01, params.vad_threshold - 0.15),
            )
            engine = LiveSession(params, vad, beam_size=self._beam_size, commits=self._backend.keeps_prefix)
        except Exception as exc:
            log.exception("session %s could not be opened", session_id)
            self._post(
                Error(id=session_id, code=ErrorCode.INTERNAL, message=f"could not open the session: {_describe(exc)}")
            )
            return
        self._live[session_id] = _Live(session_id, engine, stream)
        log.info("session %s opened: %d Hz, language=%s", session_id, params.sample_rate, params.language)

    def _audio(self, live: _Live, seq: int, data: Payload) -> None:
        if live.closing:
            return  # a frame that crossed the close: what was heard is already final
        if seq != live.next_seq:
            self.fail(
                live.id, ErrorCode.INTERNAL, f"audio frame {seq} came when {live.next_seq} was due: frames were lost"
            )
            return
        live.next_seq += 1
        live.arrivals.add(len(data) / (2 * live.stream.rate), time.monotonic())
        try:
            samples = live.stream.convert(data)
        except AudioError as exc:
            self.fail(live.id, ErrorCode.BAD_AUDIO, str(exc))
            return
        if samples.size:
            self._guarded(live, lambda: live.engine.push(samples))
        live.taken_seq = seq
        live.unacked_s += len(data) / (2 * live.stream.rate)
        self._ack(live)

    def _ack(self, live: _Live, *, now: bool = False) -> None:
        """Tell the supervisor what was taken (every ACK_STEP_S, or `now`), unless the session
        is too far ahead of the decoder: then the ack waits for a final to come back."""
        if live.dropped or live.closing or live.taken_seq == live.acked_seq:
            return
        if live.engine.owed_finals >= MAX_OWED_FINALS or not (now or live.unacked_s >= ACK_STEP_S):
            return
        self._post(SessionAck(id=live.id, seq=live.taken_seq))
        live.acked_seq, live.unacked_s = live.taken_seq, 0.0

    def _close(self, live: _Live) -> None:
        live.closing = True

        def finish() -> list[LiveEvent]:
            tail = live.stream.flush()
            events = live.engine.push(tail) if tail.size else []
            return events + live.engine.finish()

        self._guarded(live, finish, owes_final=True)
        self._end_if_finished(live)

    def _guarded(self, live: _Live, step: Callable[[], list[LiveEvent]], owes_final: bool = False) -> None:
        """Run an engine step and send its events; a failure ends this session only.

        `owes_final`: the step may have ended an utterance (as a SpeechStopped says too).
        """
        try:
            events = step()
        except Exception as exc:
            log.exception("session %s failed", live.id)
            self.fail(live.id, ErrorCode.INTERNAL, f"the live session failed: {_describe(exc)}")
            return
        self._emit(live, events)
        live.dirty = True
        if owes_final or live.engine.state == "ending" or any(isinstance(e, SpeechStopped) for e in events):
            live.final_hint = True

    def _emit(self, live: _Live, events: list[LiveEvent]) -> None:
        for event in events:
            self._time(live, event)
            self._post(SessionEvent(id=live.id, event=event))

    def _time(self, live: _Live, event: LiveEvent) -> None:
        """The latencies a speaker waits, measured from when the audio in question arrived."""
        if isinstance(event, SpeechStarted):
            live.speech_from = event.at
            return
        if not isinstance(event, (Partial, Final)):
            return
        now = time.monotonic()
        # An utterance's first words: a partial, or its final (not an earlier utterance's final).
        if live.speech_from is not None and (isinstance(event, Partial) or event.start >= live.speech_from - 0.01):
            if (arrived := live.arrivals.arrived(live.speech_from)) is not None:
                self._tally.first_partial(now - arrived)
            live.speech_from = None
        if isinstance(event, Final) and (arrived := live.arrivals.arrived(event.end)) is not None:
            self._tally.final_after_speech(now - arrived)

    def _end_if_finished(self, live: _Live) -> None:
        if live.closing and not live.dropped and live.engine.finished:
            self._end(live)

    def _end(self, live: _Live) -> None:
        self._drop(live)
        self._post(SessionEnded(id=live.id))
        log.info("session %s ended", live.id)

    def _drop(self, live: _Live) -> None:
        live.dropped = True
        if self._live.get(live.id) is live:
            del self._live[live.id]

    # -- scheduling -------------------------------------------------------------------

    def _kick(self) -> None:
        """Hold one place in the lanes' queue for each session that may want a decode."""
        wanting = sum(1 for live in self._live.values() if _may_ask(live))
        while self._waiting < wanting:
            self._waiting += 1
            self._start(self._take_lane(), "live-decode")

    async def _take_lane(self) -> None:
        loop = asyncio.get_running_loop()
        decoded = await self._lanes.run(self._on_lane, loop)
        if decoded is not None:
            self._decoded(decoded)
        self._kick()

    def _on_lane(self, loop: asyncio.AbstractEventLoop, lane: int) -> _Decoded | None:
        """Runs on a granted lane's thread: ask the loop which job to run, then decode it here."""
        chosen: concurrent.futures.Future[tuple[_Live, DecodeJob] | None] = concurrent.futures.Future()
        loop.call_soon_threadsafe(self._choose, chosen)
        try:
            picked = chosen.result(timeout=_CHOOSE_TIMEOUT_S)
        except TimeoutError:
            if chosen.cancel():  # the loop never chose: nothing was taken
                return None
            picked = chosen.result()  # it is choosing right now
        if picked is None:
            return None
        live, job = picked
        started = time.perf_counter()
        try:
            result = self._backend.transcribe(job.audio, job.params(), lambda _segment: not live.dropped, lane)
        except Exception as exc:
            log.exception("session %s: decoding a %s job failed", live.id, job.kind)
            return _Decoded(live, job, None, exc, time.perf_counter() - started)
        finally:
            self.last_inference_at = time.time()  # a float store: safe from this thread
        return _Decoded(live, job, result.segments, None, time.perf_counter() - started)

    def _choose(self, chosen: concurrent.futures.Future[tuple[_Live, DecodeJob] | None]) -> None:
        """On the loop, as a lane is granted: the next job, finals first, then round-robin."""
        self._waiting -= 1  # the place was granted, whether or not the lane still waits for a job
        if chosen.set_running_or_notify_cancel():
            try:
                chosen.set_result(self._next_job())
            except Exception as exc:  # a bug here: the lane's thread raises it, which ends the worker
                log.exception("choosing the next live job failed")
                chosen.set_exception(exc)
        self._kick()

    def _next_job(self) -> tuple[_Live, DecodeJob] | None:
        idle = [live for live in self._live.values() if _may_ask(live)]
        for live in sorted(idle, key=lambda live: not live.final_hint):  # stable: round-robin within each
            try:
                job = live.engine.next_job()
            except Exception as exc:
                log.exception("session %s failed", live.id)
                self.fail(live.id, ErrorCode.INTERNAL, f"the live session failed: {_describe(exc)}")
                continue
            if job is None or job.kind == "partial":
                live.final_hint = False  # an engine offers its finals first: it owes none now
            if job is None:
                live.dirty = False
                continue
            live.jobs_out += 1
            del self._live[live.id]  # to the back of the line
            self._live[live.id] = live
            return live, job
        return None

    def _decoded(self, decoded: _Decoded) -> None:
        live, job = decoded.live, decoded.job
        live.jobs_out -= 1
        self._tally.live_inference(decoded.seconds)
        log.debug("session %s: %s job of %.2fs decoded in %.3fs", live.id, job.kind, job.duration, decoded.seconds)
        if live.dropped:
            return
        if decoded.error is not None:
            self.fail(live.id, ErrorCode.INTERNAL, f"decoding failed: {_describe(decoded.error)}")
            return
        assert decoded.segments is not None
        segments = decoded.segments
        self._guarded(live, lambda: live.engine.done(job, segments))
        self._end_if_finished(live)
        self._ack(live, now=True)  # the supervisor may be waiting for room


def _may_ask(live: _Live) -> bool:
    """Whether to ask this session for a job: it may want one, and it has none out (or only
    a partial, which the final it may owe can overtake)."""
    return live.dirty and (live.jobs_out == 0 or (live.jobs_out == 1 and live.final_hint))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
