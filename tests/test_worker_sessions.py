"""Live sessions on a real worker: frames in over ZeroMQ, speech events, partials and finals out.

The first tests drive a `python -m worker` process from a ROUTER socket bound here, as the
supervisor would, so they see every message it sends; then the scheduler's rules, in
process with a decoder the test releases job by job; the last ones go through the
supervisor's own `WorkerProcess.open_session`. Audio goes in faster than real time (the
engine counts time in samples, not seconds), and nothing is ordered by sleeping: where a
test needs a partial before the end of the speech, it waits for that partial before it
sends the rest.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import threading
import time
import wave
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq.asyncio
from conftest import ASSETS, key_words_found, resample_pcm16
from test_worker_protocol import BUNDLED, TIMEOUTS, WorkerPeer, poll, spec

from common.protocol import (
    Error,
    ErrorCode,
    Final,
    Heartbeat,
    LiveEvent,
    LiveParams,
    Load,
    Message,
    Partial,
    Ready,
    ReadyInfo,
    Result,
    Segment,
    SegmentDecoded,
    SessionAck,
    SessionAudio,
    SessionClose,
    SessionCommit,
    SessionEnded,
    SessionEvent,
    SessionOpen,
    Spare,
    SpeechStarted,
    SpeechStopped,
    Transcribe,
    TranscribeParams,
    TranscribeResult,
    Word,
)
from supervisor.workers.process import WorkerCrashed, WorkerProcess, WorkerRequestError
from supervisor.workers.session import WINDOW_S, WorkerSession
from worker.audio.stream import MAX_FRAME_BYTES
from worker.backends import OnSegment
from worker.engine.lanes import Lanes
from worker.engine.sessions import MAX_OWED_FINALS, SessionTable

FOX_KEYS = ["quick", "brown", "fox", "jumps", "over", "lazy", "dog"]
WEATHER_KEYS = ["morning", "weather", "sunny", "warm", "breeze", "garden", "dinner"]
FRAME_S = 0.1  # 100 ms frames, as a browser or Wyoming client sends them
DECODE_S = 60.0  # how long any one event may take on a busy 2-core machine


def pcm_of(name: str) -> tuple[bytes, int]:
    with wave.open(str(ASSETS / name), "rb") as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        return wav.readframes(wav.getnframes()), wav.getframerate()


def frames_of(pcm: bytes, rate: int) -> list[bytes]:
    size = int(rate * FRAME_S) * 2
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def silence(seconds: float, rate: int = 16000) -> bytes:
    return b"\0\0" * int(seconds * rate)


def is_fox(text: str) -> bool:
    """The fox sentence, as the bundled model hears it ("The quick brown fox jump over the lazy dog.")."""
    return "fox" in text.lower() and len(key_words_found(text, FOX_KEYS)) >= 5


def text_of(finals: list[Final]) -> str:
    return " ".join(final.text for final in finals)


class LivePeer(WorkerPeer):
    """A WorkerPeer that keeps each session's messages apart, and numbers its frames.
    It sends frames without waiting for acks (a well-behaved supervisor's window is the
    supervisor's own business, tested below): acks are set aside."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.acks: dict[str, int] = {}
        self.inbox: dict[str, list[Message]] = defaultdict(list)
        self.other: list[Message] = []  # results and errors of file requests
        self.seq: dict[str, int] = defaultdict(int)
        self.opened: set[str] = set()  # sessions a test opened, for its clean-up

    def open(self, session_id: str, **params: object) -> None:
        self.seq[session_id] = 0
        self.opened.add(session_id)
        self.send(SessionOpen(id=session_id, params=msgspec.convert(params, LiveParams)))

    def audio(self, session_id: str, *frames: bytes) -> None:
        for frame in frames:
            self.send(SessionAudio(id=session_id, seq=self.seq[session_id]), frame)
            self.seq[session_id] += 1

    def receive(self, timeout: float) -> Message:
        """The next message that is not a SESSION_ACK (the last ack per session is kept)."""
        deadline = time.monotonic() + timeout
        while isinstance(message := super().receive(max(0.0, deadline - time.monotonic())), SessionAck):
            self.acks[message.id] = message.seq
        return message

    def next_for(self, session_id: str, timeout: float = DECODE_S) -> Message:
        """The next message about session `session_id` (others are kept for later)."""
        deadline = time.monotonic() + timeout
        while not self.inbox[session_id]:
            message = self.receive(max(0.0, deadline - time.monotonic()))
            if isinstance(message, SessionEvent | SessionEnded | Error):
                self.inbox[message.id].append(message)
            elif not isinstance(message, Heartbeat):
                self.other.append(message)
        return self.inbox[session_id].pop(0)

    def event_until(self, session_id: str, kind: type[LiveEvent]) -> tuple[list[LiveEvent], LiveEvent]:
        """Events of the session up to the first of `kind`: (those before, that one)."""
        before: list[LiveEvent] = []
        while True:
            message = self.next_for(session_id)
            assert isinstance(message, SessionEvent), f"expected events of {session_id}, got {message!r}"
            if isinstance(message.event, kind):
                return before, message.event
            before.append(message.event)

    def until_ended(self, session_id: str) -> list[LiveEvent]:
        """The session's events until SESSION_ENDED (an ERROR fails the test)."""
        events: list[LiveEvent] = []
        while not isinstance(message := self.next_for(session_id), SessionEnded):
            assert isinstance(message, SessionEvent), f"session {session_id}: {message!r}"
            events.append(message.event)
        self.opened.discard(session_id)
        return events

    def abort_the_rest(self) -> None:
        """Abort what a test left open (it failed half-way), so the next test starts clean."""
        for session_id in sorted(self.opened):
            self.send(SessionClose(id=session_id, abort=True))
            while not isinstance(self.next_for(session_id), SessionEnded):
                pass
        self.opened.clear()
        self.inbox.clear()
        self.other.clear()

    def result(self, request_id: str) -> Result:
        deadline = time.monotonic() + DECODE_S
        while True:
            for message in self.other:
                if isinstance(message, Result | Error) and message.id == request_id:
                    self.other.remove(message)
                    assert isinstance(message, Result), message
                    return message
            message = self.receive(max(0.0, deadline - time.monotonic()))
            if isinstance(message, SessionEvent | SessionEnded) or (
                isinstance(message, Error) and message.id != request_id
            ):
                self.inbox[message.id].append(message)
            elif not isinstance(message, Heartbeat | SegmentDecoded):
                self.other.append(message)

    def heartbeat(self, predicate: Callable[[Heartbeat], bool]) -> Heartbeat:
        """The first heartbeat for which `predicate` holds (session messages are kept)."""
        deadline = time.monotonic() + DECODE_S
        while True:
            message = self.receive(max(0.0, deadline - time.monotonic()))
            if isinstance(message, Heartbeat):
                if predicate(message):
                    return message
            elif isinstance(message, SessionEvent | SessionEnded | Error):
                self.inbox[message.id].append(message)
            else:
                self.other.append(message)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePeer]:
    """One worker with the bundled model loaded, shared by the tests that only open sessions."""
    peer = LivePeer(tmp_path_factory.mktemp("live-worker"))
    try:
        peer.expect(Spare)
        peer.send(Load(BUNDLED))
        peer.expect(Ready)
        yield peer
    finally:
        peer.close()


@pytest.fixture
def live(worker: LivePeer) -> Iterator[LivePeer]:
    """The shared worker, with whatever a test leaves open aborted after it."""
    yield worker
    worker.abort_the_rest()


# -- a worker driven over its socket ------------------------------------------------------


def test_a_session_gets_partials_then_a_final_once_the_speech_ends(live: LivePeer) -> None:
    pcm, rate = pcm_of("fox.wav")
    frames = frames_of(pcm, rate)
    live.open("fox", language="en")
    live.audio("fox", *frames[:18])  # 1.8 s: mid-sentence
    before, partial = live.event_until("fox", Partial)
    assert isinstance(before[0], SpeechStarted) and before[0].at < 0.5
    live.audio("fox", *frames[18:], *frames_of(silence(1.5), rate))
    events, final = live.event_until("fox", Final)  # no close: the silence ends the utterance
    assert isinstance(final, Final)
    assert is_fox(final.text), final.text
    assert final.start < 0.5 and 2.5 < final.end < 3.6 and final.segments
    assert final.segments[0].words is None  # word timings only when asked for
    assert any(isinstance(e, SpeechStopped) for e in events)
    partials = [partial, *(e for e in events if isinstance(e, Partial))]
    for earlier, later in itertools.pairwise(partials):  # committed text only ever grows
        assert later.committed.startswith(earlier.committed)
        assert later.seq > earlier.seq
    assert all(p.text.startswith(p.committed) for p in partials)
    assert final.seq > partials[-1].seq
    live.send(SessionClose(id="fox"))
    assert live.until_ended("fox") == []  # everything was said already


def test_commit_forces_a_final_in_the_middle_of_the_speech(live: LivePeer) -> None:
    pcm, rate = pcm_of("fox.wav")
    frames = frames_of(pcm, rate)
    live.open("commit", word_timestamps=True)
    live.audio("commit", *frames[:20])  # "the quick brown fox", still speaking
    live.send(SessionCommit(id="commit"))
    _, first = live.event_until("commit", Final)
    assert isinstance(first, Final) and key_words_found(first.text, ["quick", "brown"]), first
    assert "dog" not in first.text.lower()  # not said yet
    assert first.segments[0].words, "asked for word timings"
    assert first.end <= 2.0  # committed at the last sample sent (or the pause it was in)
    live.audio("commit", *frames[20:])
    live.send(SessionClose(id="commit"))
    rest = [e for e in live.until_ended("commit") if isinstance(e, Final)]
    assert rest and all(final.start >= first.end for final in rest)
    assert "dog" in text_of(rest).lower()


def test_close_sends_the_final_for_what_was_heard_then_ends(live: LivePeer) -> None:
    pcm, rate = pcm_of("fox.wav")
    live.open("close")
    live.audio("close", *frames_of(pcm[: int(2.9 * rate) * 2], rate))  # cut before the speech ends
    live.send(SessionClose(id="close"))
    events = live.until_ended("close")
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1 and events[-1] == finals[0]
    assert is_fox(finals[0].text), finals[0].text
    assert isinstance(events[-2], SpeechStopped)  # the stream ended mid-speech: stopped, then the final


def test_two_sessions_at_once_each_get_their_own_words(live: LivePeer) -> None:
    fox, rate = pcm_of("fox.wav")
    weather, _ = pcm_of("weather.wav")
    fox_frames, weather_frames = frames_of(fox + silence(1.0), rate), frames_of(weather + silence(1.0), rate)
    live.open("a")
    live.open("b")
    for i in range(max(len(fox_frames), len(weather_frames))):
        live.audio("a", *fox_frames[i : i + 1])
        live.audio("b", *weather_frames[i : i + 1])
    live.send(SessionClose(id="a"))
    live.send(SessionClose(id="b"))
    fox_text = text_of([e for e in live.until_ended("a") if isinstance(e, Final)])
    weather_text = text_of([e for e in live.until_ended("b") if isinstance(e, Final)])
    assert is_fox(fox_text) and "weather" not in fox_text.lower(), fox_text
    assert len(key_words_found(weather_text, WEATHER_KEYS)) >= 6 and "fox" not in weather_text.lower(), weather_text


@pytest.mark.parametrize("rate", [22050, 44100])
def test_other_sample_rates_are_resampled_as_a_stream(live: LivePeer, rate: int) -> None:
    if rate == 22050:
        pcm, file_rate = pcm_of("fox-22k.wav")
        assert file_rate == 22050
    else:
        pcm = resample_pcm16(pcm_of("fox.wav")[0], 16000, rate)
    session_id = f"rate-{rate}"
    live.open(session_id, sample_rate=rate)
    live.audio(session_id, *frames_of(pcm + silence(1.0, rate), rate))
    live.send(SessionClose(id=session_id))
    text = text_of([e for e in live.until_ended(session_id) if isinstance(e, Final)])
    assert is_fox(text), f"{rate} Hz: {text!r}"


@pytest.mark.parametrize(
    "frame", [b"\0" * 3201, b"\0" * (MAX_FRAME_BYTES + 2)], ids=["odd length", "over the size limit"]
)
def test_a_bad_frame_ends_its_session_with_bad_audio_and_the_worker_serves_on(live: LivePeer, frame: bytes) -> None:
    pcm, rate = pcm_of("fox.wav")
    frames = frames_of(pcm + silence(1.0), rate)
    live.open("bad")
    live.open("good")
    live.audio("good", *frames[:10])
    live.audio("bad", *frames[:3], frame)
    error = live.next_for("bad")
    while isinstance(error, SessionEvent):  # speech may have started before the bad frame
        error = live.next_for("bad")
    assert isinstance(error, Error) and error.code == ErrorCode.BAD_AUDIO, error
    live.audio("bad", *frames[3:5])  # the session is gone: its frames are ignored
    live.send(SessionClose(id="bad"))  # closing it is answered all the same
    assert isinstance(live.next_for("bad"), SessionEnded)
    live.audio("good", *frames[10:])
    live.send(SessionClose(id="good"))
    text = text_of([e for e in live.until_ended("good") if isinstance(e, Final)])
    assert is_fox(text), text


def test_a_language_the_model_does_not_know_is_refused_at_open(live: LivePeer) -> None:
    live.open("klingon", language="tlh")
    error = live.next_for("klingon")
    assert isinstance(error, Error) and error.code == ErrorCode.BAD_PARAMETER and "tlh" in error.message


def test_a_file_transcription_is_served_while_a_session_runs(live: LivePeer) -> None:
    pcm, rate = pcm_of("fox.wav")
    frames = frames_of(pcm + silence(1.0), rate)
    live.open("beside")
    live.audio("beside", *frames[:15])
    live.send(Transcribe(id="file", params=TranscribeParams()), (ASSETS / "weather.wav").read_bytes())
    live.event_until("beside", Partial)  # the session is served while the file is queued or decoded
    live.audio("beside", *frames[15:])
    beat = live.heartbeat(lambda hb: hb.sessions >= 1)
    assert beat.sessions == 1
    result = live.result("file")
    assert len(key_words_found(result.result.text, WEATHER_KEYS)) >= 6
    live.send(SessionClose(id="beside"))
    text = text_of([e for e in live.until_ended("beside") if isinstance(e, Final)])
    assert is_fox(text), text
    assert live.heartbeat(lambda hb: hb.sessions == 0).in_flight == 0


def test_an_aborted_session_ends_at_once_without_its_final(live: LivePeer) -> None:
    pcm, rate = pcm_of("fox.wav")
    live.open("abort")
    live.audio("abort", *frames_of(pcm, rate))
    live.send(SessionClose(id="abort", abort=True))
    events = live.until_ended("abort")
    assert not any(isinstance(e, Final) for e in events)
    live.heartbeat(lambda hb: hb.sessions == 0 and hb.lanes_busy == 0)


# -- the scheduler, in process: one lane, and a decoder the test releases job by job -------


class GatedDecoder:
    """A backend whose every decode waits until the test lets it finish; it says "the quick brown fox"."""

    keeps_prefix = True

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.started: asyncio.Queue[tuple[TranscribeParams, float, threading.Event]] = asyncio.Queue()
        self.gates: list[threading.Event] = []

    def transcribe(
        self, audio: np.ndarray, params: TranscribeParams, on_segment: OnSegment, lane: int = 0
    ) -> TranscribeResult:
        gate = threading.Event()
        self.gates.append(gate)
        seconds = audio.size / 16000
        self.loop.call_soon_threadsafe(self.started.put_nowait, (params, seconds, gate))
        assert gate.wait(DECODE_S), "the test never released this decode"
        words = [
            Word(start=0.1 + 0.3 * i, end=0.35 + 0.3 * i, word=f" {w}", probability=0.9)
            for i, w in enumerate(["the", "quick", "brown", "fox"])
        ]
        segment = Segment(id=0, start=0.0, end=1.3, text=" the quick brown fox", avg_logprob=-0.2, words=words)
        return TranscribeResult(text=segment.text, language="en", duration=seconds, segments=[segment])

    async def next_decode(self) -> tuple[TranscribeParams, float, threading.Event]:
        return await asyncio.wait_for(self.started.get(), DECODE_S)


async def test_the_scheduler_runs_finals_first_then_the_newest_partial_one_job_per_session() -> None:
    fox, _ = pcm_of("fox.wav")
    decoder = GatedDecoder()
    posted: list[Message] = []
    news = asyncio.Event()

    def post(message: Message) -> None:
        posted.append(message)
        news.set()

    tasks: set[asyncio.Task[None]] = set()
    info = ReadyInfo(pid=1, backend="gated", device="cpu", compute_type="int8", load_seconds=0, concurrency=1)
    sessions = SessionTable(
        decoder,
        info,
        Lanes(1),
        post,
        lambda coro, name: tasks.add(asyncio.create_task(coro, name=name)),
        beam_size=5,
    )
    seq: dict[str, int] = defaultdict(int)

    def push(session_id: str, pcm: bytes) -> None:
        for frame in frames_of(pcm, 16000):
            sessions.handle(SessionAudio(id=session_id, seq=seq[session_id]), frame)
            seq[session_id] += 1

    try:
        for session_id in "abc":
            sessions.handle(SessionOpen(id=session_id, params=LiveParams()), None)
            push(session_id, fox[: 16000 * 2])  # a second of speech each: all three want a partial
        params, first, gate = await decoder.next_decode()
        assert params.beam_size == 1  # a's partial, alone on the lane
        push("c", fox[16000 * 2 :] + silence(1.5))  # c's utterance ends: it owes a final
        push("b", fox[16000 * 2 : 16000 * 2 * 2])  # b goes on speaking, and waits
        gate.set()
        params, seconds, gate = await decoder.next_decode()
        assert params.beam_size == 5, "c's final goes before b's partial, though b is first in line"
        gate.set()
        params, seconds, gate = await decoder.next_decode()
        # b's partial is cut from what b has now (2 s), not from when it first wanted one (1 s).
        assert params.beam_size == 1 and seconds - first == pytest.approx(1.0, abs=0.05)
        gate.set()
        while not any(isinstance(m, SessionEvent) and m.id == "c" and isinstance(m.event, Final) for m in posted):
            news.clear()
            await asyncio.wait_for(news.wait(), DECODE_S)
        assert sessions.count == 3
        for session_id in "abc":
            sessions.handle(SessionClose(id=session_id, abort=True), None)
        assert sessions.count == 0 and [m for m in posted if isinstance(m, SessionEnded)] == [
            SessionEnded(id=session_id) for session_id in "abc"
        ]
    finally:
        for gate in decoder.gates:
            gate.set()
        for task in tasks:
            task.cancel()


async def test_a_session_ahead_of_its_decoder_is_acknowledged_only_as_its_finals_come_back() -> None:
    """Pace: four utterances at once, nothing decoded yet. The worker takes every frame, but
    stops acknowledging once two finals are owed; each final back lets the acks move on."""
    fox, _ = pcm_of("fox.wav")
    decoder = GatedDecoder()
    posted: list[Message] = []
    tasks: set[asyncio.Task[None]] = set()
    info = ReadyInfo(pid=1, backend="gated", device="cpu", compute_type="int8", load_seconds=0, concurrency=1)
    sessions = SessionTable(
        decoder,
        info,
        Lanes(1),
        posted.append,
        lambda coro, name: tasks.add(asyncio.create_task(coro, name=name)),
        beam_size=5,
    )
    utterance = frames_of(fox + silence(1.5), 16000)  # 49 frames; the speech ends about frame 40
    frames = utterance * 4

    def acked() -> int:
        return max((m.seq for m in posted if isinstance(m, SessionAck)), default=-1)

    try:
        sessions.handle(SessionOpen(id="fast", params=LiveParams()), None)
        for seq, frame in enumerate(frames):
            sessions.handle(SessionAudio(id="fast", seq=seq), frame)
        assert MAX_OWED_FINALS == 2
        # Acked every half second while it owed less than two finals: past the first
        # utterance's end, short of the frames after the second's.
        assert len(utterance) < acked() < 2 * len(utterance), acked()
        held = acked()
        _, _, gate = await decoder.next_decode()  # the partial that took the lane at once
        gate.set()
        while acked() < len(frames) - 1:
            params, _, gate = await decoder.next_decode()
            assert params.beam_size == 5, "finals owed go first"
            assert acked() == held, "an ack came while two finals were still owed"
            gate.set()
            await poll_until(lambda: acked() > held or not decoder.started.empty())
        finals = [m for m in posted if isinstance(m, SessionEvent) and isinstance(m.event, Final)]
        assert len(finals) == 3, "the ack came once fewer than two finals were owed, not later"
    finally:
        for gate in decoder.gates:
            gate.set()
        for task in tasks:
            task.cancel()


async def poll_until(condition: Callable[[], bool]) -> None:
    """Let the loop run until `condition` holds (a decode's result is handed back through it)."""
    deadline = time.monotonic() + DECODE_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def parked(task: asyncio.Task[None]) -> bool:
    """Whether `task` has started and now waits at an await, not done: the loop first runs
    every callback that is ready (nothing here waits on a clock or a socket), so a task that
    would finish has finished, and one that has not started yet does not count as waiting."""
    for _ in range(10):
        await asyncio.sleep(0)
    return not task.done() and inspect.getcoroutinestate(task.get_coro()) == inspect.CORO_SUSPENDED


async def test_the_supervisor_sends_at_most_a_window_past_the_last_ack() -> None:
    """The supervisor's half of the pace (pure bookkeeping, so its `send` is a list): a sender
    ahead by WINDOW_S waits for an ack; a close or the worker's death wakes it."""
    sent: list[int] = []

    async def send(message: object, payload: object) -> None:
        if isinstance(message, SessionAudio):
            sent.append(message.seq)

    session = WorkerSession("s", send, lambda _: None, sample_rate=8000)
    frame = b"\0\0" * 800  # 0.1 s
    window = round(WINDOW_S / 0.1)
    for _ in range(window):
        await session.send_audio(frame)
    waiting = asyncio.create_task(session.send_audio(frame))
    assert await parked(waiting) and len(sent) == window
    session.acknowledged(4)  # five frames taken: room for five more, the one waiting first
    await asyncio.wait_for(waiting, 5)
    for _ in range(4):
        await asyncio.wait_for(session.send_audio(frame), 5)
    blocked = asyncio.create_task(session.send_audio(frame))
    assert await parked(blocked) and sent == list(range(window + 5))
    await session.close()  # the frame waiting is dropped: the session is closing
    await asyncio.wait_for(blocked, 5)
    assert len(sent) == window + 5


# -- the supervisor's side: WorkerProcess.open_session -------------------------------------


@pytest.fixture
async def process(tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    ctx = zmq.asyncio.Context()
    exited: list[WorkerProcess] = []
    worker = await WorkerProcess.spawn("faster-whisper", ctx, tmp_path, TIMEOUTS, exited.append)
    try:
        await worker.load(spec(BUNDLED), exited.append)
        yield worker
    finally:
        if worker.is_alive:
            worker.kill()
        await poll(lambda: None if worker.is_alive else True, 10, "the worker to exit")
        ctx.term()


async def test_open_session_end_to_end(process: WorkerProcess) -> None:
    fox, rate = pcm_of("fox.wav")
    frames = frames_of(fox + silence(1.5), rate)
    async with await process.open_session(LiveParams(language="en")) as session:
        events: list[LiveEvent] = []
        for frame in frames[:18]:
            await session.send_audio(frame)
        async for event in session:  # a partial comes while the speech goes on
            events.append(event)
            if isinstance(event, Partial):
                break
        for frame in frames[18:]:
            await session.send_audio(frame)
        await session.close()
        events += [event async for event in session]
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1 and is_fox(finals[0].text), events
    assert isinstance(events[0], SpeechStarted) and any(isinstance(e, Partial) for e in events)
    assert session.is_over and process.sessions == 0


async def test_a_session_error_is_raised_from_its_iterator(process: WorkerProcess) -> None:
    session = await process.open_session(LiveParams())
    async with session:
        await session.send_audio(b"\0" * 3)
        with pytest.raises(WorkerRequestError) as raised:
            async for _ in session:
                pass
        assert raised.value.code == ErrorCode.BAD_AUDIO
        await session.send_audio(b"\0\0")  # over: dropped, not an error
    refused = await process.open_session(LiveParams(language="tlh"))
    with pytest.raises(WorkerRequestError) as raised:
        await anext(aiter(refused))
    assert raised.value.code == ErrorCode.BAD_PARAMETER
    await refused.aclose()


async def test_leaving_a_session_without_closing_it_frees_it_on_the_worker(process: WorkerProcess) -> None:
    fox, rate = pcm_of("fox.wav")
    async with await process.open_session(LiveParams()) as session:
        for frame in frames_of(fox, rate):
            await session.send_audio(frame)
        async for event in session:
            if isinstance(event, SpeechStarted):
                break
    # The abort reached the worker: a heartbeat sent after it counts no session.
    left = time.time()
    await poll(
        lambda: (hb := process.last_heartbeat) is not None and hb.time > left and hb.sessions == 0 or None,
        DECODE_S,
        "a heartbeat without the session",
    )


async def test_a_worker_crash_is_raised_from_the_iterator_and_from_send_audio(process: WorkerProcess) -> None:
    fox, rate = pcm_of("fox.wav")
    session = await process.open_session(LiveParams())
    async with session:
        await session.send_audio(frames_of(fox, rate)[0])
        process.kill()
        with pytest.raises(WorkerCrashed):
            async for _ in session:
                pass
        with pytest.raises(WorkerCrashed):
            await session.send_audio(b"\0\0")
    with pytest.raises(WorkerCrashed):
        await process.open_session(LiveParams())
