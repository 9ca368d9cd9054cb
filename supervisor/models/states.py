"""The closed set of states a model's worker can be in, and the moves between them.

    state      event                          next       effect
    ---------  -----------------------------  ---------  -------------------------------------
    unloaded   request / load                 starting   start task: reserve capacity, spawn or
                                                         take the spare, LOAD, wait for READY
    starting   start task: READY              ready      grant queued requests, answer loads
    starting   start task: load error         failed     fail queued requests (503), back off
    starting   start task: capacity full      unloaded   fail queued requests (503, Retry-After);
                                                         not a load failure: no back-off
    starting   unload / server shutdown       stopping   cancel the start task: the half-started
                                                         worker is stopped and reaped
    ready      idle past TTL, in-flight = 0   stopping   stop task: SHUTDOWN → SIGTERM → SIGKILL
    ready      unload (admin), eviction       stopping   once in-flight requests have finished
    ready      worker exited (crash)          unloaded   in-flight requests get 503
    ready      server shutdown                stopping   at once
    ready      reload: new worker options     stopping   once in-flight requests have finished
                                                         (new ones queue); then a worker with the
                                                         new options starts, request or not
    ready      reload: model removed          stopping   once nothing is in flight; then the
                                                         owner ends
    starting   reload: new worker options     stopping   cancel the start; start again with them
    stopping   stop/start task: reaped        unloaded   requests that came meanwhile start a
                                                         fresh worker
    failed     request / load after backoff   starting
    failed     request / load during backoff  failed     the request gets the load error (503)
    failed     unload                         unloaded   forget the error
    failed     reload: new worker options     unloaded   forget the error and the back-off

Only `owner.ModelOwner`'s task moves a model between states, through
`ModelOwner._set_state`, which checks every move against `ALLOWED`. Starting and
stopping are tasks of their own that report back through the owner's inbox, so the
owner keeps answering (an unload mid-start, a shutdown mid-load) while they run.
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
    State.STARTING: frozenset({State.READY, State.FAILED, State.UNLOADED, State.STOPPING}),
    State.READY: frozenset({State.STOPPING, State.UNLOADED}),
    State.STOPPING: frozenset({State.UNLOADED}),
    State.FAILED: frozenset({State.STARTING, State.UNLOADED}),
}


class IllegalTransition(RuntimeError):
    pass


def check_transition(old: State, new: State) -> None:
    if new not in ALLOWED[old]:
        raise IllegalTransition(f"{old} → {new} is not a legal move")
