"""The live sessions open on this worker: the supervisor's session messages in, their events out.

Lifecycle, and what the supervisor hears (SESSION_EVENTs in order per session, through the
worker's one outbox):

- open: refused with ERROR(bad_parameter) for a language the model does not know (or an id
  already open, which is dropped too); the engine is made then (the first session of a
  process loads Silero, once, on the loop).
- audio: `seq` must count up from 0 and a frame must be whole 16-bit samples of at most
  1 MiB; otherwise ERROR (bad_audio for the frame, internal for a lost frame) and the
  session is dropped: an ERROR ends a session, no SESSION_ENDED follows. Audio for an id
  that is not open (one just dropped, say) is ignored. What was taken is acknowledged
  (`worker.engine.sessions.acks`).
- commit: the utterance ends now; its final is the session's next decode. With `drop` (a
  client's clear), the utterance and its audio are dropped instead, no final.
- close: the resampler's tail and `finish()`; the last final(s) go out as their decodes
  come back, then SESSION_ENDED. With `abort`, SESSION_ENDED at once, and a decode still on
  a lane is stopped at its next segment and its result dropped. Closing an id that is not
  open is answered with SESSION_ENDED (the close may have crossed an ERROR).
- SHUTDOWN (`drop_all`): sessions end with the process, no finals and no messages.
- a failure in the engine or the decoder: ERROR(internal) for that session only.

A session's `Phase` says which of these it is in: open (taking audio), closing (its last
finals are being decoded), over (out of the table; a decode of its still out is dropped).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from common.protocol import (
    Error,
    ErrorCode,
    FromWorker,
    LiveEvent,
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
    SpeechStopped,
)
from worker.audio.decode import AudioError
from worker.audio.stream import PcmStream
from worker.backends import Backend
from worker.engine.lanes import Lanes
from worker.engine.live import DecodeJob, LiveSession, StreamingVad
from worker.engine.sessions.acks import Acks
from worker.engine.sessions.latency import LatencyObserver
from worker.engine.sessions.scheduler import LaneScheduler, Seat, Start
from worker.engine.tally import Tally

log = logging.getLogger("worker")


class Phase(enum.Enum):
    """Where a session is in its life."""

    OPEN = "open"  # taking audio
    CLOSING = "closing"  # finish() was called: SESSION_ENDED once its last final is out
    OVER = "over"  # ended, aborted or failed: out of the table


@dataclass(eq=False)
class _Session:
    """One open session."""

    id: str
    engine: LiveSession
    stream: PcmStream
    seat: Seat  # its place with the scheduler
    latency: LatencyObserver
    phase: Phase = Phase.OPEN
    next_seq: int = 0
    acks: Acks = field(default_factory=Acks)


class SessionTable:
    def __init__(
        self,
        backend: Backend,
        info: ReadyInfo,
        lanes: Lanes,
        post: Callable[[FromWorker], None],
        start: Start,
        *,
        beam_size: int,
        tally: Tally | None = None,
    ) -> None:
        """`lanes` are the worker's inference lanes, shared with file requests. `post` queues
        a message for the supervisor; `start` runs a coroutine as one of the worker's tasks
        (its failure is fatal). Both are called on the event loop only. `tally` gets the
        decodes' time and the latencies a speaker waits, for the heartbeat."""
        self._tally = tally or Tally()
        self._backend = backend
        self._info = info
        self._post = post
        self._beam_size = beam_size
        self._sessions: dict[str, _Session] = {}
        self._scheduler = LaneScheduler(backend, lanes, start, self._tally, deliver=self._deliver, fail=self._failed)

    @property
    def count(self) -> int:
        """Sessions open now (the heartbeat's `sessions`)."""
        return len(self._sessions)

    @property
    def last_inference_at(self) -> float | None:
        """When a live decode last ended (time.time()), for the heartbeat."""
        return self._scheduler.last_inference_at

    def is_open(self, session_id: str) -> bool:
        return session_id in self._sessions

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
                if (session := self._sessions.get(session_id)) is not None:
                    self._audio(session, message.seq, payload)
                else:
                    log.debug("audio for session %s, which is not open: ignored", session_id)
            case SessionCommit(id=session_id, drop=drop):
                if (session := self._sessions.get(session_id)) is not None and session.phase is Phase.OPEN:
                    engine = session.engine
                    self._guarded(session, engine.clear if drop else engine.commit, owes_final=not drop)
            case SessionClose(id=session_id, abort=abort):
                if (session := self._sessions.get(session_id)) is None:
                    self._post(SessionEnded(id=session_id))
                elif abort:
                    self._end(session)
                elif session.phase is Phase.OPEN:
                    self._close(session)
        self._scheduler.kick()

    def fail(self, session_id: str, code: ErrorCode, message: str) -> None:
        """End session `session_id` with an ERROR (which tells the supervisor it is over)."""
        session = self._sessions.get(session_id)
        if session is not None:
            self._drop(session)
        self._post(Error(id=session_id, code=code, message=message))

    def drop_all(self) -> None:
        """SHUTDOWN: every session ends with the process; no finals, no messages."""
        for session in list(self._sessions.values()):
            self._drop(session)

    def _open(self, message: SessionOpen) -> None:
        session_id, params = message.id, message.params
        if session_id in self._sessions:  # a supervisor bug: both sides drop it, as for any ERROR
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
        seat = self._scheduler.seat(session_id, engine)
        self._sessions[session_id] = _Session(session_id, engine, stream, seat, LatencyObserver(self._tally))
        log.info("session %s opened: %d Hz, language=%s", session_id, params.sample_rate, params.language)

    def _audio(self, session: _Session, seq: int, data: Payload) -> None:
        if session.phase is not Phase.OPEN:
            return  # a frame that crossed the close: what was heard is already final
        if seq != session.next_seq:
            self.fail(
                session.id,
                ErrorCode.INTERNAL,
                f"audio frame {seq} came when {session.next_seq} was due: frames were lost",
            )
            return
        session.next_seq += 1
        seconds = len(data) / (2 * session.stream.rate)
        session.latency.arrived(seconds)
        try:
            samples = session.stream.convert(data)
        except AudioError as exc:
            self.fail(session.id, ErrorCode.BAD_AUDIO, str(exc))
            return
        if samples.size:
            self._guarded(session, lambda: session.engine.push(samples))
        session.acks.take(seq, seconds)
        self._ack(session)

    def _ack(self, session: _Session, *, now: bool = False) -> None:
        """Tell the supervisor what was taken, when an ack is due (`acks`): never once the
        session is closing, whose end tells the supervisor all it needs."""
        if session.phase is not Phase.OPEN:
            return
        if (seq := session.acks.due(session.engine.owed_finals, now=now)) is not None:
            self._post(SessionAck(id=session.id, seq=seq))

    def _close(self, session: _Session) -> None:
        session.phase = Phase.CLOSING

        def finish() -> list[LiveEvent]:
            tail = session.stream.flush()
            events = session.engine.push(tail) if tail.size else []
            return events + session.engine.finish()

        self._guarded(session, finish, owes_final=True)
        self._end_if_finished(session)

    def _guarded(self, session: _Session, step: Callable[[], list[LiveEvent]], owes_final: bool = False) -> None:
        """Run an engine step and send its events; a failure ends this session only.

        `owes_final`: the step may have ended an utterance (as a SpeechStopped says too).
        """
        try:
            events = step()
        except Exception as exc:
            log.exception("session %s failed", session.id)
            self._failed(session.id, "the live session failed", exc)
            return
        for event in events:
            session.latency.sent(event)
            self._post(SessionEvent(id=session.id, event=event))
        owes_final = owes_final or session.engine.state == "ending" or any(isinstance(e, SpeechStopped) for e in events)
        self._scheduler.changed(session.seat, owes_final=owes_final)

    def _deliver(self, session_id: str, job: DecodeJob, segments: list[Segment]) -> None:
        """A decode is back for a session still open (the scheduler drops those of sessions over)."""
        session = self._sessions[session_id]
        self._guarded(session, lambda: session.engine.done(job, segments))
        self._end_if_finished(session)
        self._ack(session, now=True)  # the supervisor may be waiting for room

    def _failed(self, session_id: str, what: str, exc: Exception) -> None:
        """`what` failed for a session: it ends with ERROR(internal), the others go on."""
        self.fail(session_id, ErrorCode.INTERNAL, f"{what}: {_describe(exc)}")

    def _end_if_finished(self, session: _Session) -> None:
        if session.phase is Phase.CLOSING and session.engine.finished:
            self._end(session)

    def _end(self, session: _Session) -> None:
        self._drop(session)
        self._post(SessionEnded(id=session.id))
        log.info("session %s ended", session.id)

    def _drop(self, session: _Session) -> None:
        session.phase = Phase.OVER
        self._scheduler.unseat(session.seat)
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
