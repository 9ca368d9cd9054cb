"""What a worker can fail with, as the supervisor's callers see it.

One module for every side of the handle (the process, its channel, its live sessions),
so each raises the same types; `supervisor.workers.process` re-exports them, the one
place callers import them from.
"""

from __future__ import annotations

from common.protocol import ErrorCode


class WorkerError(Exception):
    """Base for everything a worker can fail with."""


class WorkerCrashed(WorkerError):
    """The process ended (crash, OOM kill, kill -9) while the caller waited on it."""


class WorkerLoadError(WorkerError):
    """The worker could not load its model; the message says why."""


class WorkerLost(WorkerLoadError):
    """The process went silent or died during start-up without saying why (frozen, killed).

    The worker reports a model it cannot load itself (DYING, a plain `WorkerLoadError`), so
    this is the process's failure first: a spare that fails this way is replaced by a fresh
    process before anyone blames the model.
    """


class WorkerRequestError(WorkerError):
    """The worker refused one request; `code` says whether the input was at fault."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
