"""A model's owner task: it reads the inbox and handles each command, one at a time.

Every handler is synchronous and changes the state only through `_move` (checked against
`states.TABLE`); slow work is started as a task (`worker_tasks`) whose outcome comes back
through the inbox. The state, and the effects the handlers start, are `effects.Effects`;
the public side that posts commands is `owner.ModelOwner`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from supervisor.models import worker_tasks
from supervisor.models.commands import (
    Acquire,
    Close,
    Command,
    Exited,
    Load,
    Release,
    Respec,
    Retire,
    Started,
    Status,
    Stopped,
    Unload,
    answer,
)
from supervisor.models.effects import SHUTTING_DOWN, Effects
from supervisor.models.lease import ModelUnavailable
from supervisor.models.policy import backoff_seconds
from supervisor.models.states import After, Event, State

log = logging.getLogger("asr.lifecycle")


class Lifecycle(Effects):
    """The owner task's loop and what each command does."""

    async def _run(self) -> None:
        while self._state is not State.ENDED:
            command = await self._next_command()
            if command is None:
                self._begin_stop("ttl", Event.TTL)
            else:
                try:
                    self._handle(command)
                except Exception as exc:  # a bug of ours: it must not end the owner, or every caller hangs
                    log.exception("model=%s the owner failed handling %s", self.spec.name, type(command).__name__)
                    if isinstance(reply := getattr(command, "reply", None), asyncio.Future):
                        answer(reply, error=ModelUnavailable(f"internal error in model {self.spec.name!r}: {exc}"))
            if self._retirer is not None and not self._closers:
                self._retire_if_idle()
        self._end()

    async def _next_command(self) -> Command | None:
        """The next command, or None when the idle TTL ran out first."""
        if not self._inbox.empty():
            return self._inbox.get_nowait()
        timeout = self._ttl_remaining()
        if timeout is None:
            return await self._inbox.get()
        getter = asyncio.ensure_future(self._inbox.get())
        timer = self._clock.timer(timeout)
        pending: set[asyncio.Future[Any]] = {getter, timer}
        try:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        if getter.done():
            return getter.result()
        getter.cancel()  # an item it was woken for stays in the queue
        return self._inbox.get_nowait() if not self._inbox.empty() else None

    def _handle(self, command: Command) -> None:
        match command:
            case Acquire():
                self._on_acquire(command)
            case Release():
                self._on_release(command)
            case Load():
                self._on_load(command)
            case Unload():
                self._on_unload(command)
            case Status():
                answer(command.reply, self.snapshot())
            case Close():
                self._on_close(command)
            case Respec():
                self._on_respec(command)
            case Retire():
                self._on_retire(command)
            case Exited():
                self._on_exited(command)
            case Started():
                self._on_started(command)
            case Stopped():
                self._on_stopped(command)

    def _on_acquire(self, command: Acquire) -> None:
        if command.reply.done():
            return  # the caller went away while queued
        if self._closers:
            answer(command.reply, error=ModelUnavailable(SHUTTING_DOWN))
        elif self._state in (State.READY, State.RETIRING):
            self._grant(command.reply)
        elif self._backing_off():
            answer(command.reply, error=self._backoff_error())
        else:
            self._waiting.append(command)
            self._start_if_stopped(Event.REQUEST)

    def _on_release(self, command: Release) -> None:
        if command.generation != self._generation:
            return  # a request on a worker that has since died; already accounted for
        self._in_flight -= 1
        self._idle_since = self._clock.now()
        self._account.released(self._worker)
        if self._in_flight == 0 and self._state is State.DRAINING:
            self._begin_stop(self._stop_reason, Event.IDLE)
        elif self._in_flight == 0:
            self._gate.notify()

    def _on_load(self, command: Load) -> None:
        if command.ttl is not None:
            self._ttl = command.ttl
        if self._closers:
            answer(command.reply, error=ModelUnavailable(SHUTTING_DOWN))
        elif self._state in (State.READY, State.RETIRING):
            self._idle_since = self._clock.now()
            answer(command.reply, None)
        elif self._backing_off():
            answer(command.reply, error=self._backoff_error())
        else:
            self._loads.append(command.reply)
            self._start_if_stopped(Event.LOAD)

    def _on_unload(self, command: Unload) -> None:
        if self._state is State.FAILED:
            self._failures = 0
            self._move(State.UNLOADED, Event.UNLOAD, "unload clears the load error")
        if self._state is State.UNLOADED:
            answer(command.reply, "not loaded")
            return
        self._unloads.append(command.reply)
        if self._after is After.RESTART:
            self._after = After.REST  # an unload wins over a reload's replacement
        if self._state is State.STARTING:
            self._abort_start(command.reason, Event.UNLOAD)
        elif self._state in (State.READY, State.RETIRING, State.DRAINING) and self._in_flight:
            self._stop_reason = command.reason  # stops when the last in-flight request ends
            self._ask_leases_back()
            if self._state is not State.DRAINING:
                self._move(State.DRAINING, Event.UNLOAD, command.reason)
        elif self._state in (State.READY, State.RETIRING):
            self._begin_stop(command.reason, Event.UNLOAD)

    def _on_close(self, command: Close) -> None:
        self._closers.append(command.reply)
        self._fail_waiters(ModelUnavailable(SHUTTING_DOWN))
        if self._state in (State.UNLOADED, State.FAILED):
            self._move(State.ENDED, Event.SHUTDOWN, "nothing to stop")
        elif self._state is State.STARTING:
            self._abort_start("shutdown", Event.SHUTDOWN)
        elif self._state in (State.READY, State.DRAINING, State.RETIRING):
            self._begin_stop("shutdown", Event.SHUTDOWN)  # at once: the HTTP server has drained its requests
        elif self._state is State.STOPPING:
            self._move(State.CLOSING, Event.SHUTDOWN, "after the stop under way")

    def _on_respec(self, command: Respec) -> None:
        if self._closers:
            answer(command.reply, "shutting down")
            return
        if self._retirer is not None:  # removed, then brought back before it ended
            answer(self._retirer, "kept")
            self._retirer = None
            self._after = After.REST
            if self._state is State.RETIRING:
                self._move(State.READY, Event.KEPT, "brought back by a reload")
        old, new = self.spec, command.spec
        if new.ttl != old.ttl:
            self._ttl = new.ttl  # else a TTL set by `load(ttl)` stands
        if new.options == old.options:  # the supervisor's keys only: nothing for the worker
            self.spec = new
            self._account.estimate_mb = command.memory_estimate_mb
            answer(command.reply, "applied")
            return
        self._failures = 0  # new options, a fresh start: no back-off from the old ones' failures
        if self._state in (State.READY, State.DRAINING):
            # The running worker has the old options: it finishes what it took on, then goes.
            self._next_spec = (new, command.memory_estimate_mb)
            if self._state is State.READY:  # else an unload is under way, and wins
                self._after = After.RESTART
                self._stop_reason = "reload"
            if self._in_flight:
                self._ask_leases_back()
                if self._state is State.READY:
                    self._move(State.DRAINING, Event.RELOAD, "new options, once idle")
                answer(command.reply, "replaced once idle")
            else:
                self._begin_stop(self._stop_reason, Event.RELOAD)
                answer(command.reply, "replacing")
            return
        self._next_spec = None
        self._swap_spec(new, command.memory_estimate_mb)
        if self._state is State.STARTING:  # loading the old options: start again with the new
            self._after = After.RESTART
            self._abort_start("reload", Event.RELOAD, keep_loads=True)
            answer(command.reply, "replacing")
            return
        if self._state is State.FAILED:
            self._move(State.UNLOADED, Event.RELOAD, "new settings, no back-off")
        answer(command.reply, "applied")  # unloaded, or stopping: the next worker has the new options

    def _on_retire(self, command: Retire) -> None:
        self._retirer = command.reply
        if not self._closers:
            self._after = After.END
        for reply in self._loads:
            answer(reply, error=ModelUnavailable(f"model {self.spec.name!r} was removed from the configuration"))
        self._loads = []
        if self._state is State.READY:
            self._move(State.RETIRING, Event.REMOVED, "serves what it took on, then ends")
        if self._state in (State.RETIRING, State.DRAINING) and self._in_flight:
            self._ask_leases_back()  # live sessions finish what they heard; file requests just finish

    def _on_exited(self, command: Exited) -> None:
        serving = (State.READY, State.DRAINING, State.RETIRING)
        if command.worker is not self._worker or self._state not in serving:
            return  # a worker being stopped on purpose: its stop task reports
        reason = f"worker exited unexpectedly (code {command.worker.exit_code})"
        if command.worker.death_reason:  # the supervisor's own reason, e.g. a worker that froze
            reason = f"{reason}: {command.worker.death_reason}"
        log.warning("model=%s pid=%d %s; the next request starts a new one", self.spec.name, command.worker.pid, reason)
        self._account.last_error = reason
        self._forget_worker("hung" if command.worker.hung else "crash")
        self._move(State.UNLOADED, Event.EXITED, reason)
        self._gate.release(self._tenant)
        self._answer_unloads("crashed")
        self._resume()

    def _on_started(self, event: Started) -> None:
        self._start_task = None
        if self._state in (State.STOPPING, State.CLOSING):  # an unload or shutdown arrived mid-start
            if event.worker is not None:
                self._adopt(event.worker)
                self._account.adopted(event.worker)
                self._stop_task = asyncio.create_task(
                    worker_tasks.stop(event.worker, self._inbox), name=f"stop-{self.spec.name}"
                )
            else:
                self._on_stopped(Stopped(worker=None, how="aborted while loading"), Event.ABORTED)
            return
        if event.worker is not None:
            self._failures = 0
            self._account.started(event.worker, self._clock.now() - self._start_began)
            self._adopt(event.worker)
            retiring = self._after is After.END
            self._move(State.RETIRING if retiring else State.READY, Event.READY, f"pid {event.worker.pid}")
            for reply in self._loads:
                answer(reply, None)
            self._loads = []
            waiting, self._waiting = self._waiting, deque()
            for acquire in waiting:
                if not acquire.reply.done():
                    self._grant(acquire.reply)
            if not self._in_flight:
                self._gate.notify()  # loaded and idle: a waiting reservation may evict it
            return
        if event.capacity_full:
            error = ModelUnavailable(
                str(event.error), retry_after=getattr(event.error, "retry_after", None), code="capacity_full"
            )
            self._move(State.UNLOADED, Event.CAPACITY_FULL, "capacity full")
        else:
            self._failures += 1
            self._retry_at = self._clock.now() + backoff_seconds(self._failures)
            self._account.last_error = str(event.error)
            self._move(State.FAILED, Event.LOAD_ERROR, str(event.error))
            error = ModelUnavailable(
                f"model {self.spec.name!r} failed to load: {event.error}", retry_after=backoff_seconds(self._failures)
            )
        self._fail_waiters(error)

    def _on_stopped(self, event: Stopped, cause: Event = Event.STOPPED) -> None:
        self._stop_task = None
        worker = self._worker
        self._forget_worker(self._stop_reason)
        pid = f"pid {worker.pid}" if worker else "the half-started worker"
        closing = self._state is State.CLOSING
        self._move(
            State.ENDED if closing else State.UNLOADED, cause, f"{self._stop_reason}: {pid} ended by {event.how}"
        )
        self._gate.release(self._tenant)
        self._answer_unloads(event.how)
        if not closing:
            self._resume()

    def _retire_if_idle(self) -> None:
        """A removed model stops as soon as nothing is in flight or waiting for it, and ends
        once it is settled and has read everything already posted (a reload that brings the
        model back may be queued behind the report that settled it)."""
        if any(not a.reply.done() for a in self._waiting):
            return
        if self._state is State.RETIRING and not self._in_flight:
            self._begin_stop("removed", Event.IDLE)
        elif self._state is State.STARTING and not self._loads:
            self._abort_start("removed", Event.IDLE)
        elif self._state in (State.UNLOADED, State.FAILED) and not self._loads and self._inbox.empty():
            self._move(State.ENDED, Event.IDLE, "removed")

    def _end(self) -> None:
        """The owner task's last act: answer its closers or retirer, and whatever is still posted.

        Nothing posted after this is read (`_new_reply` refuses once the task is done, in this
        same step of the loop), so nobody is left waiting on an owner that is gone.
        """
        closing = bool(self._closers)
        for closer in self._closers:
            answer(closer, None)
        if self._retirer is not None:
            answer(self._retirer, "shut down" if closing else "retired")
        gone = ModelUnavailable(
            SHUTTING_DOWN if closing else f"model {self.spec.name!r} was removed from the configuration"
        )
        while not self._inbox.empty():
            match self._inbox.get_nowait():
                case Close(reply=reply):
                    answer(reply, None)
                case Acquire(reply=reply) | Load(reply=reply) | Status(reply=reply):
                    answer(reply, error=gone)
                case Unload(reply=reply):
                    answer(reply, "not loaded")
                case Retire(reply=reply) | Respec(reply=reply):
                    answer(reply, "shut down" if closing else "retired")
                case _:
                    pass  # reports and releases: there is nobody left to tell
