"""The closed set of states a model's worker can be in, and the moves between them.

    state      event                          next       effect
    ---------  -----------------------------  ---------  -------------------------------------
    unloaded   request / load                 starting   spawn worker, wait for READY
    starting   READY                          ready      grant queued requests
    starting   load error / exit / timeout    failed     fail queued requests (503), back off
    ready      idle past TTL, in-flight = 0   stopping   SHUTDOWN → SIGTERM → SIGKILL, reap
    ready      unload (admin)                 stopping   after in-flight requests finish
    ready      worker exited (crash)          unloaded   in-flight requests get 503
    ready      server shutdown                stopping
    stopping   process reaped                 unloaded   requests that came meanwhile start a
                                                         fresh worker
    failed     request / load after backoff   starting
    failed     request / load during backoff  failed     the request gets the load error (503)
    failed     unload                         unloaded   forget the error

Only `lifecycle.ModelSlot`'s owner task moves a model between states, through
`ModelSlot._set_state`, which checks every move against `ALLOWED`.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    UNLOADED = "unloaded"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


ALLOWED: dict[State, frozenset[State]] = {
    State.UNLOADED: frozenset({State.STARTING}),
    State.STARTING: frozenset({State.READY, State.FAILED}),
    State.READY: frozenset({State.STOPPING, State.UNLOADED}),
    State.STOPPING: frozenset({State.UNLOADED}),
    State.FAILED: frozenset({State.STARTING, State.UNLOADED}),
}


class IllegalTransition(RuntimeError):
    pass


def check_transition(old: State, new: State) -> None:
    if new not in ALLOWED[old]:
        raise IllegalTransition(f"{old} → {new} is not a legal move")


def backoff_seconds(failures: int, cap: float = 60.0) -> float:
    """Delay before retrying a model that failed to load `failures` times in a row."""
    if failures <= 0:
        return 0.0
    return min(cap, 2.0 ** (failures - 1))
