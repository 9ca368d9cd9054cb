"""Every state a model can be in, the events that move it, and the one table of legal moves.

The owner (`owner.ModelOwner`) is the only code that changes a model's state, and every
change names the event that caused it: `Machine.move` refuses a (state, event, next)
that `TABLE` does not list, so a move nobody thought through fails loudly in tests
instead of leaving a worker behind. docs/design.md shows this table (`markdown_table`
renders it; a test checks the page against it).

What happens once a worker is gone is data beside the state, not a state of its own:
`After` says whether the model rests unloaded, starts its next worker at once (a reload
replaced it), or ends (a reload removed it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    UNLOADED = "unloaded"
    STARTING = "starting"
    READY = "ready"
    #: The worker finishes its in-flight requests and takes no new ones, then stops.
    DRAINING = "draining"
    #: Removed by a reload: the worker still serves whoever found the model, then stops.
    RETIRING = "retiring"
    STOPPING = "stopping"
    FAILED = "failed"
    #: Server shutdown: whatever runs is stopped now; the owner ends when it is reaped.
    CLOSING = "closing"
    #: The owner task has ended (shut down, or removed): nothing is read any more.
    ENDED = "ended"

    @property
    def shown(self) -> str:
        """The state as /health, /v1/models, asrctl and the metrics show it: the five a
        client can act on (a draining or retiring worker still answers what it has)."""
        return _SHOWN.get(self, self).value


_SHOWN = {
    State.DRAINING: State.READY,
    State.RETIRING: State.READY,
    State.CLOSING: State.STOPPING,
    State.ENDED: State.UNLOADED,
}

#: The states clients see, in the order the metrics list them.
SHOWN_STATES = (State.UNLOADED, State.STARTING, State.READY, State.STOPPING, State.FAILED)


class Event(StrEnum):
    REQUEST = "request"
    LOAD = "load"
    UNLOAD = "unload"
    TTL = "idle past TTL"
    IDLE = "nothing in flight or waiting"
    RELOAD = "reload: new options"
    KEPT = "reload: brought back"
    REMOVED = "reload: removed"
    READY = "start task: READY"
    LOAD_ERROR = "start task: load error"
    CAPACITY_FULL = "start task: capacity full"
    ABORTED = "start task: aborted, no worker"
    STOPPED = "stop task: reaped"
    EXITED = "worker exited (crash)"
    SHUTDOWN = "server shutdown"


class After(StrEnum):
    """What a model does once its worker is gone."""

    REST = "rest"  # unloaded, until a request or load asks for a worker
    RESTART = "restart"  # a reload replaced the worker: the next one starts at once
    END = "end"  # a reload removed the model: the owner ends


@dataclass(frozen=True)
class Move:
    state: State
    event: Event
    next: State
    effect: str


S, E = State, Event
TABLE: tuple[Move, ...] = (
    Move(S.UNLOADED, E.REQUEST, S.STARTING, "start task: reserve capacity, spawn or take the spare, LOAD, READY"),
    Move(S.UNLOADED, E.LOAD, S.STARTING, "the same, with no request waiting"),
    Move(S.UNLOADED, E.RELOAD, S.STARTING, "after a replaced worker ended: its successor starts, request or not"),
    Move(S.UNLOADED, E.IDLE, S.ENDED, "removed, and nothing waits: the owner ends"),
    Move(S.UNLOADED, E.SHUTDOWN, S.ENDED, "nothing to stop"),
    Move(S.STARTING, E.READY, S.READY, "grant queued requests, answer loads"),
    Move(S.STARTING, E.READY, S.RETIRING, "removed while loading: serve the requests that waited for it"),
    Move(S.STARTING, E.LOAD_ERROR, S.FAILED, "fail queued requests (503), back off"),
    Move(S.STARTING, E.CAPACITY_FULL, S.UNLOADED, "fail queued requests (503, Retry-After); no back-off"),
    Move(S.STARTING, E.UNLOAD, S.STOPPING, "cancel the start task: the half-started worker is stopped and reaped"),
    Move(S.STARTING, E.RELOAD, S.STOPPING, "cancel the start; the next start has the new options"),
    Move(S.STARTING, E.IDLE, S.STOPPING, "removed, and nothing waits for the load: cancel it"),
    Move(S.STARTING, E.SHUTDOWN, S.CLOSING, "cancel the start task"),
    Move(S.READY, E.TTL, S.STOPPING, "stop task: SHUTDOWN → SIGTERM → SIGKILL (armed only when nothing is in flight)"),
    Move(S.READY, E.UNLOAD, S.STOPPING, "nothing in flight: stop now"),
    Move(S.READY, E.UNLOAD, S.DRAINING, "admin unload or eviction with requests in flight: ask leases back"),
    Move(S.READY, E.RELOAD, S.STOPPING, "new options, nothing in flight: replace the worker now"),
    Move(S.READY, E.RELOAD, S.DRAINING, "new options: new requests queue for the next worker"),
    Move(S.READY, E.REMOVED, S.RETIRING, "ask leases back; requests that found the model are still served"),
    Move(S.READY, E.EXITED, S.UNLOADED, "in-flight requests get 503; a waiting request starts a new worker"),
    Move(S.READY, E.SHUTDOWN, S.CLOSING, "stop at once: the HTTP server has drained its requests"),
    Move(S.DRAINING, E.IDLE, S.STOPPING, "the last in-flight request ended"),
    Move(S.DRAINING, E.EXITED, S.UNLOADED, "as from ready"),
    Move(S.DRAINING, E.SHUTDOWN, S.CLOSING, "stop at once"),
    Move(S.RETIRING, E.IDLE, S.STOPPING, "nothing in flight or waiting; the owner ends once it is reaped"),
    Move(S.RETIRING, E.KEPT, S.READY, "a reload brought it back: the same worker serves on"),
    Move(S.RETIRING, E.UNLOAD, S.STOPPING, "nothing in flight: stop now, then end"),
    Move(S.RETIRING, E.UNLOAD, S.DRAINING, "requests in flight: they finish, then it stops and ends"),
    Move(S.RETIRING, E.EXITED, S.UNLOADED, "then the owner ends"),
    Move(S.RETIRING, E.SHUTDOWN, S.CLOSING, "stop at once"),
    Move(S.STOPPING, E.STOPPED, S.UNLOADED, "requests that came meanwhile start a fresh worker"),
    Move(S.STOPPING, E.ABORTED, S.UNLOADED, "the cancelled start left no worker"),
    Move(S.STOPPING, E.SHUTDOWN, S.CLOSING, "the stop under way goes on; the owner ends after it"),
    Move(S.FAILED, E.REQUEST, S.STARTING, "after the back-off (during it, the request gets the load error)"),
    Move(S.FAILED, E.LOAD, S.STARTING, "after the back-off"),
    Move(S.FAILED, E.UNLOAD, S.UNLOADED, "forget the error"),
    Move(S.FAILED, E.RELOAD, S.UNLOADED, "forget the error and the back-off"),
    Move(S.FAILED, E.IDLE, S.ENDED, "removed: the owner ends"),
    Move(S.FAILED, E.SHUTDOWN, S.ENDED, "nothing to stop"),
    Move(S.CLOSING, E.STOPPED, S.ENDED, "answer the closer and whatever is still posted"),
    Move(S.CLOSING, E.ABORTED, S.ENDED, "the same"),
)
del S, E

_LEGAL = {(m.state, m.event, m.next) for m in TABLE}
ALLOWED: dict[State, frozenset[State]] = {
    state: frozenset(m.next for m in TABLE if m.state is state) for state in State
}


class IllegalTransition(RuntimeError):
    pass


def check_transition(old: State, new: State, event: Event | None = None) -> None:
    """Raise unless the table lets `event` (any event, if None) move `old` to `new`."""
    if event is None and new in ALLOWED[old]:
        return
    if event is not None and (old, event, new) in _LEGAL:
        return
    on = f" on {event.value!r}" if event is not None else ""
    raise IllegalTransition(f"{old} → {new}{on} is not a legal move")


def markdown_table() -> str:
    """The table as docs/design.md shows it."""
    rows = ["| state | event | next | effect |", "|---|---|---|---|"]
    rows += [f"| {m.state} | {m.event} | {m.next} | {m.effect} |" for m in TABLE]
    return "\n".join(rows)
