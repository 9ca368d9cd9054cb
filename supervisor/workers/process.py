"""The supervisor's handle on one worker process: spawn it, load it, watch it, stop it.

A `WorkerProcess` is one OS process and its `WorkerChannel`, split the way vLLM's engine
client is: the channel (`supervisor.workers.channel`) carries the messages and routes the
replies to the requests and live sessions waiting for them; this handle owns the process:
the spawn, the start-up's phases (`supervisor.workers.phase`: SPAWNING, SPARE, LOAD_SENT,
LOADING, READY, then STOPPING, EXITED), the heartbeat watchdog, the signals and the stop
phases, and the exit, which it turns into typed exceptions for everyone still waiting. It
knows nothing about TTLs or requests queued for a model: that is the model owner's job.

It is watched from its first moment: a worker heartbeats in every phase, and one silent for
`heartbeat_timeout` is killed (`supervisor.workers.watchdog`). LOAD is answered at once with
a heartbeat, so a spare that froze after it was pooled is found out within
`Timeouts.answer` seconds, not after `ready_timeout`; that failure is a `WorkerLost`, the
process's, which the registry does not count against the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import zmq.asyncio

from common import logs
from common.protocol import (
    Dying,
    Heartbeat,
    LiveParams,
    Load,
    ProtocolError,
    Ready,
    ReadyInfo,
    Segment,
    Shutdown,
    Spare,
    TranscribeParams,
    TranscribeResult,
)
from supervisor.config import ModelSpec
from supervisor.workers.channel import Control, WorkerChannel
from supervisor.workers.errors import (
    WorkerCrashed,
    WorkerError,
    WorkerLoadError,
    WorkerLost,
    WorkerRequestError,
)
from supervisor.workers.phase import Phase, Phases
from supervisor.workers.session import WorkerSession
from supervisor.workers.watchdog import HeartbeatWatchdog

__all__ = [
    "Phase",
    "Timeouts",
    "WorkerCrashed",
    "WorkerError",
    "WorkerLoadError",
    "WorkerLost",
    "WorkerProcess",
    "WorkerRequestError",
    "worker_command",
]

log = logging.getLogger("asr.worker")


@dataclass(frozen=True, slots=True)
class Timeouts:
    ready: float
    stop: float
    heartbeat_interval: float
    heartbeat: float

    @property
    def answer(self) -> float:
        """How long a live worker may take to answer what its event loop answers at once (LOAD).

        Five heartbeat intervals, at least 2 s (a busy machine), at most `heartbeat` (past
        that, it is hung by definition): 5 s with the defaults.
        """
        return min(self.heartbeat, max(2.0, 5 * self.heartbeat_interval))


class WorkerProcess:
    """One worker process: first a spare (libraries imported), then, after `load()`, one model's."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        channel: WorkerChannel,
        timeouts: Timeouts,
        on_exit: Callable[[WorkerProcess], None],
    ) -> None:
        self.spec: ModelSpec | None = None  # set by load()
        self.pid = proc.pid
        self.info: ReadyInfo | None = None  # its READY's
        self.exit_code: int | None = None
        self.on_exit = on_exit  # whoever owns the process now: the spare pool, then a model's slot
        self.hung = False  # killed by the supervisor for falling silent
        self._proc = proc
        self._channel = channel
        self._timeouts = timeouts
        self._phases = Phases(lambda: f"model={self.name} pid={self.pid}")
        # In LOAD_SENT, LOAD's answer: a heartbeat sent (worker's wall clock) no earlier than this.
        self._load_sent_at = 0.0
        self._last_heartbeat: Heartbeat | None = None
        self._death_reason: str | None = None
        self._watchdog = HeartbeatWatchdog(timeouts.heartbeat, self._silent, name=f"worker-{self.pid}-beat")
        channel.start(lambda: self.name, self._on_control, self._on_unreadable, self._channel_broken)
        self._exit_watch = asyncio.create_task(self._watch_exit(), name=f"worker-{self.pid}-exit")

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else "spare"

    @property
    def phase(self) -> Phase:
        """Where it is now (advisory: the owner of the worker decides what to do with it)."""
        return self._phases.phase

    @property
    def last_heartbeat(self) -> Heartbeat | None:
        """The worker's latest report on itself (load, memory, last inference); None before READY."""
        return self._last_heartbeat

    @property
    def death_reason(self) -> str | None:
        """Why it ended, when someone said: its DYING, or the supervisor that killed it (silence)."""
        return self._death_reason

    @property
    def silent_for(self) -> float:
        """Seconds since the worker's last heartbeat (or its start)."""
        return self._watchdog.silent_for

    @property
    def seems_frozen(self) -> bool:
        """Silent for longer than a live worker ever is: not worth sending LOAD to."""
        return self.silent_for > self._timeouts.answer

    @property
    def is_alive(self) -> bool:
        return self._phases.phase is not Phase.EXITED

    # -- starting ---------------------------------------------------------------

    @classmethod
    async def spawn(
        cls,
        backend: str,
        ctx: zmq.asyncio.Context,
        runtime_dir: Path,
        timeouts: Timeouts,
        on_exit: Callable[[WorkerProcess], None],
        prewarm: bool = False,
    ) -> WorkerProcess:
        """Start a spare: a process with `backend`'s libraries imported and no model yet
        (with `prewarm`, its one-time inference set-up paid too).

        Returns once it says SPARE; on any failure nothing is left running.
        """
        channel = WorkerChannel.bind(ctx, runtime_dir)
        try:
            proc = await asyncio.create_subprocess_exec(
                *worker_command(backend, channel.endpoint, timeouts.heartbeat_interval, prewarm),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # own process group: signals to us don't hit it by accident
            )
        except BaseException:
            channel.close("the worker process could not be started")
            raise
        worker = cls(proc, channel, timeouts, on_exit)
        try:
            await worker._until(Phase.SPARE, "start")
        except BaseException:
            await worker.stop()
            raise
        return worker

    async def load(
        self, spec: ModelSpec, on_exit: Callable[[WorkerProcess], None], room_mb: float | None = None
    ) -> None:
        """Turn this spare into `spec`'s worker: LOAD, then wait for READY (or its reason not to).

        `room_mb`: what memory_budget_mb leaves this worker, for its choice of model copies.

        Raises `WorkerLost` if the process does not answer LOAD within `Timeouts.answer`
        (it is killed) or dies without a reason; `WorkerLoadError` if it says why it failed.
        """
        self.spec = spec
        self.on_exit = on_exit
        started = time.monotonic()
        self._load_sent_at = time.time()
        self._phases.move(Phase.LOAD_SENT)
        try:
            await self._channel.send(Load(spec.options, room_mb=room_mb))
        except WorkerCrashed as exc:
            raise WorkerLost(str(exc)) from None
        try:
            await asyncio.wait_for(self._phases.reach(Phase.LOADING), self._timeouts.answer)
        except TimeoutError:
            self._death_reason = f"worker did not answer LOAD within {self._timeouts.answer:.0f}s and was killed"
            log.warning("model=%s pid=%d %s", spec.name, self.pid, self._death_reason)
            self.kill()
            raise WorkerLost(f"worker for model {spec.name!r} (pid {self.pid}): {self._death_reason}") from None
        await self._until(Phase.READY, "load its model")
        info = self.info
        assert info is not None  # set with the move to READY
        log.info(
            "worker ready model=%s pid=%d device=%s compute_type=%s load_s=%.2f lanes=%d copies=%d (%s)",
            spec.name,
            self.pid,
            info.device,
            info.compute_type,
            time.monotonic() - started,
            info.concurrency,
            info.copies,
            info.lanes_reason,
        )

    async def _until(self, phase: Phase, what: str) -> None:
        """Wait for a start-up phase, at most `ready_timeout`: the one bound a slow load has."""
        try:
            await asyncio.wait_for(self._phases.reach(phase), self._timeouts.ready)
        except TimeoutError:
            raise WorkerLoadError(
                f"worker for {self.name!r} did not {what} within {self._timeouts.ready:.0f}s "
                "(raise server.ready_timeout for very large models)"
            ) from None

    # -- requests (the channel's) ----------------------------------------------

    async def transcribe(self, audio: bytes | Path, params: TranscribeParams) -> TranscribeResult:
        async with contextlib.aclosing(self.stream(audio, params)) as items:
            async for item in items:
                if isinstance(item, TranscribeResult):
                    return item
        raise WorkerCrashed(self._crash_message())  # unreachable: stream() ends with a result or raises

    def stream(
        self, audio: bytes | Path, params: TranscribeParams, request_id: str | None = None
    ) -> AsyncGenerator[Segment | TranscribeResult, None]:
        """Segments as the worker decodes them (when `params.stream`), then the result; see
        `WorkerChannel.stream`. Raises WorkerCrashed, on the first step, if the worker is gone."""
        return self._channel.stream(audio, params, request_id)

    async def open_session(self, params: LiveParams) -> WorkerSession:
        """Open a live session on this worker; see `WorkerSession` for how to use it.

        The worker does not acknowledge the open: a refusal (a language the model does not
        know, say) arrives as a `WorkerRequestError` from the session's iterator. Raises
        WorkerCrashed at once if the worker is gone.
        """
        return await self._channel.open_session(params)

    @property
    def sessions(self) -> int:
        """Live sessions open on this worker (as far as the supervisor knows)."""
        return self._channel.sessions

    # -- stopping ---------------------------------------------------------------

    async def stop(self) -> str:
        """Polite SHUTDOWN, then SIGTERM, then SIGKILL, each with a deadline; always reaps.

        A spare has nothing to finish, so its phases wait `Timeouts.answer` only: a frozen one
        does not hold up a shutdown. SIGTERM comes with SIGCONT, so a stopped (SIGSTOP)
        process wakes to obey it. Returns how the process ended, for the log and the admin API.
        """
        if self._phases.phase is Phase.EXITED:
            return "already exited"
        patience = self._timeouts.stop if self.spec is not None else min(self._timeouts.stop, self._timeouts.answer)
        self._phases.move(Phase.STOPPING)
        with contextlib.suppress(WorkerCrashed):
            await self._channel.send(Shutdown())
        if await self._wait_exit(patience):
            return "shutdown"
        self._signal(signal.SIGTERM)
        self._signal(signal.SIGCONT)
        if await self._wait_exit(patience):
            return "sigterm"
        self._signal(signal.SIGKILL)
        await self._wait_exit(None)  # SIGKILL cannot be ignored; the exit watcher reaps it
        return "sigkill"

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def rss_bytes(self) -> int | None:
        """Resident memory of the worker process now (what unloading it gives back)."""
        with contextlib.suppress(psutil.Error):
            return int(psutil.Process(self.pid).memory_info().rss)
        return None

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)  # the whole group: nothing the worker started survives

    async def _wait_exit(self, timeout: float | None) -> bool:
        """Whether the process ended (and everyone waiting on it was told) within `timeout`."""
        done, _ = await asyncio.wait({self._exit_watch}, timeout=timeout)
        return bool(done)

    # -- what the worker says about itself, and its end -------------------------

    def _on_control(self, message: Control) -> None:
        match message:
            case Heartbeat(time=sent):
                self._watchdog.beat()
                if self._phases.reached is Phase.READY:  # before, it is a sign of life only
                    self._last_heartbeat = message
                if self._phases.phase is Phase.LOAD_SENT and sent >= self._load_sent_at:
                    self._phases.move(Phase.LOADING)
            case Spare():
                self._phases.move(Phase.SPARE)
            case Ready(info=info):
                if self._phases.move(Phase.READY):
                    self.info = info
            case Dying(reason=reason):
                self._death_reason = reason
                self._phases.fail(WorkerLoadError(reason))

    def _on_unreadable(self, kind: str, error: ProtocolError) -> None:
        if kind == "heartbeat":
            self._watchdog.beat()  # its stats are unreadable, but it is a sign of life all the same
        else:
            self._phases.fail(WorkerLoadError(f"malformed {kind.upper()} from the worker: {error}"))

    def _channel_broken(self, error: BaseException | None) -> None:
        """A read loop that died would leave every caller waiting: end the worker instead."""
        log.error("model=%s pid=%d reading from the worker failed: killing it", self.name, self.pid, exc_info=error)
        self._death_reason = f"the supervisor could not read from the worker: {error!r}"
        self.kill()

    def _silent(self) -> None:
        timeout = self._watchdog.timeout
        log.error("model=%s pid=%d no heartbeat for %.0fs: killing it", self.name, self.pid, timeout)
        self._death_reason = f"worker sent no heartbeat for {timeout:.0f}s and was killed"
        self.hung = True
        self.kill()

    async def _watch_exit(self) -> None:
        self.exit_code = await self._proc.wait()
        error_message = self._crash_message()
        # A DYING has already failed the start-up with the worker's own reason. A signal
        # (ours for silence, the kernel's OOM killer, anyone's kill -9) is the process's
        # failure; an exit of its own, the worker's (its DYING may be unread yet).
        signalled = self.exit_code is not None and self.exit_code < 0
        self._phases.fail(WorkerLost(error_message) if signalled else WorkerLoadError(error_message))
        self._phases.move(Phase.EXITED)
        self._watchdog.cancel()
        self._channel.close(error_message)
        self.on_exit(self)

    def _crash_message(self) -> str:
        code = self.exit_code
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        reason = f": {self._death_reason}" if self._death_reason else ""
        return f"worker for model {self.name!r} (pid {self.pid}) {how}{reason}"


def worker_command(backend: str, endpoint: str, heartbeat_interval: float, prewarm: bool = False) -> list[str]:
    return [
        sys.executable,
        "-m",
        "worker",
        "--endpoint",
        endpoint,
        "--parent-pid",
        str(os.getpid()),
        "--backend",
        backend,
        "--heartbeat-interval",
        str(heartbeat_interval),
        "--log-level",
        logging.getLevelName(logging.getLogger("asr").getEffectiveLevel()),
        "--log-format",
        logs.current_format(),
        *(["--prewarm"] if prewarm else []),
    ]
