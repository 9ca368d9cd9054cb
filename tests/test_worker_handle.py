"""The worker handle's two state machines, without a process: a worker's start-up phases
(`supervisor.workers.phase`) and a live session's state (`supervisor.workers.session`).

The process behind them is tested end to end in test_worker_protocol.py and
test_worker_sessions.py; here each row of their tables is driven by hand.
"""

from __future__ import annotations

import asyncio

import pytest

from common.protocol import ErrorCode, Payload, SessionAudio, SessionClose, ToWorker
from supervisor.workers.errors import WorkerCrashed, WorkerLoadError, WorkerRequestError
from supervisor.workers.phase import MOVES, Phase, Phases
from supervisor.workers.session import SessionState, WorkerSession

# -- phases -------------------------------------------------------------------------------


def test_every_phase_but_exited_may_stop_or_die_and_exited_is_final() -> None:
    for phase, moves in MOVES.items():
        if phase is Phase.EXITED:
            assert not moves
        else:
            assert Phase.EXITED in moves
            assert (Phase.STOPPING in moves) == (phase is not Phase.STOPPING)


async def test_a_move_the_table_does_not_allow_changes_nothing() -> None:
    phases = Phases(lambda: "model=test pid=0")
    assert not phases.move(Phase.READY)  # a READY nobody asked for
    assert phases.phase is Phase.SPAWNING
    assert phases.move(Phase.SPARE) and not phases.move(Phase.SPARE)
    assert phases.move(Phase.STOPPING) and not phases.move(Phase.LOAD_SENT)
    assert phases.phase is Phase.STOPPING and phases.reached is Phase.SPARE


async def test_a_waiter_returns_once_its_phase_is_reached_and_ready_answers_load() -> None:
    phases = Phases(lambda: "model=test pid=0")
    phases.move(Phase.SPARE)
    await phases.reach(Phase.SPARE)  # already there: at once
    phases.move(Phase.LOAD_SENT)
    answered = asyncio.create_task(phases.reach(Phase.LOADING))
    ready = asyncio.create_task(phases.reach(Phase.READY))
    await asyncio.sleep(0)
    assert not answered.done()
    assert phases.move(Phase.READY)  # a READY before the answering heartbeat answers LOAD too
    await asyncio.wait_for(asyncio.gather(answered, ready), 1)
    phases.move(Phase.STOPPING)
    assert phases.reached is Phase.READY  # stopping does not undo that it served


async def test_a_failed_start_up_fails_every_waiter_now_and_later_with_the_first_reason() -> None:
    phases = Phases(lambda: "model=test pid=0")
    phases.move(Phase.SPARE)
    phases.fail(WorkerLoadError("dying: bad source"))
    phases.fail(WorkerLoadError("exited with code 1"))  # the exit after the DYING: not told
    phases.move(Phase.LOAD_SENT)  # the spare died in its pool; the load sent to it fails at once
    with pytest.raises(WorkerLoadError, match="bad source"):
        await phases.reach(Phase.LOADING)
    waiting = asyncio.create_task(Phases(lambda: "x").reach(Phase.SPARE))
    await asyncio.sleep(0)
    waiting.cancel()  # a waiter that gives up leaves nothing behind
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_nothing_fails_a_start_up_after_ready() -> None:
    phases = Phases(lambda: "model=test pid=0")
    for phase in (Phase.SPARE, Phase.LOAD_SENT, Phase.LOADING, Phase.READY):
        assert phases.move(phase)
    phases.fail(WorkerLoadError("a fatal error while serving"))
    await phases.reach(Phase.READY)


# -- a live session's state -----------------------------------------------------------------


class Wire:
    """The session's `send`: what went out, and WorkerCrashed once the worker is gone."""

    def __init__(self) -> None:
        self.sent: list[ToWorker] = []
        self.gone = False

    async def __call__(self, message: ToWorker, payload: Payload | None) -> None:
        if self.gone:
            raise WorkerCrashed("gone")
        self.sent.append(message)


def session_on(wire: Wire) -> WorkerSession:
    return WorkerSession("s", wire, lambda _: None, sample_rate=8000)


async def test_a_graceful_close_drops_audio_then_an_abort_cuts_it_short_and_the_end_releases_it() -> None:
    wire = Wire()
    session = session_on(wire)
    await session.send_audio(b"\0\0")
    await session.close()
    assert session.state is SessionState.CLOSING and not session.is_over
    await session.send_audio(b"\0\0")  # dropped
    await session.commit()  # dropped
    await session.close()  # harmless
    await session.close(abort=True)
    assert session.state is SessionState.ABORTING
    await session.aclose()  # the abort went out already
    assert [type(m) for m in wire.sent] == [SessionAudio, SessionClose, SessionClose]
    session.end()
    assert session.state is SessionState.RELEASED and session.is_over
    assert [event async for event in session] == []
    assert [event async for event in session] == []  # the end stays the end


async def test_a_reply_that_could_not_be_read_ends_it_here_and_leaving_aborts_it_there() -> None:
    wire = Wire()
    session = session_on(wire)
    session.end(WorkerRequestError(ErrorCode.INTERNAL, "malformed reply"), released=False)
    assert session.state is SessionState.ENDED and session.is_over
    await session.send_audio(b"\0\0")  # dropped
    await session.close()  # nothing more to ask of it but the abort
    with pytest.raises(WorkerRequestError):
        await anext(aiter(session))
    with pytest.raises(StopAsyncIteration):
        await anext(aiter(session))
    await session.aclose()
    assert session.state is SessionState.RELEASED
    assert wire.sent == [SessionClose(id="s", abort=True)]
    session.end()  # its SESSION_ENDED, crossing the abort
    assert session.state is SessionState.RELEASED


async def test_the_workers_death_is_raised_to_a_sender_still_open_and_dropped_after_a_close() -> None:
    wire = Wire()
    open_one, closed_one = session_on(wire), session_on(wire)
    await closed_one.close()
    wire.gone = True
    for session in (open_one, closed_one):
        session.end(WorkerCrashed("gone"), gone=True)
    assert open_one.state is SessionState.GONE and closed_one.state is SessionState.RELEASED
    with pytest.raises(WorkerCrashed):
        await open_one.send_audio(b"\0\0")
    with pytest.raises(WorkerCrashed):
        await open_one.commit()
    await closed_one.send_audio(b"\0\0")  # closing: dropped
    for session in (open_one, closed_one):
        with pytest.raises(WorkerCrashed):
            await anext(aiter(session))
        await session.aclose()  # no abort to a dead worker, and no error
    assert wire.sent == [SessionClose(id="s", abort=False)]


async def test_events_after_the_end_are_not_delivered() -> None:
    session = session_on(Wire())
    session.end()
    session.deliver(object())  # type: ignore[arg-type]
    assert [event async for event in session] == []
