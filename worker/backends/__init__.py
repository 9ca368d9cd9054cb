"""Model backends: the worker's way in to their implementations.

The list of backends and their ML-free descriptions are in `common.backends` (the supervisor
reads them too). A worker reaches a backend's code only through its description's
`implementation` module, imported on first use, so nothing here imports an ML library or
numpy either.
"""

from __future__ import annotations

import importlib
import logging
from typing import cast

from common.backends import UnknownBackend, describe
from common.protocol import ModelOptions
from worker.backends.base import Backend, BackendModule, LoadError, OnSegment

__all__ = [
    "Backend",
    "BackendModule",
    "LoadError",
    "OnSegment",
    "create_backend",
    "warm_up",
]

log = logging.getLogger("worker")


def warm_up(name: str, inference: bool = False) -> None:
    """Pay a backend's one-time costs ahead of any model (what a warm spare is for).

    Imports always; with `inference`, also a throwaway inference (pooled spares only: a
    worker started for a waiting request would only add the throwaway model's load). A
    backend that cannot be imported here is only logged: the LOAD that follows reports it
    to the supervisor, with the install hint, as a load failure.
    """
    try:
        module = _implementation(name)
        module.warm_up(inference)
    except LoadError as exc:
        log.warning("no warm-up: %s", exc)
    except ImportError as exc:  # the implementation imports its library only here
        log.warning("no warm-up: backend %r is not installed here (%s); %s", name, exc, describe(name).install_hint)


def create_backend(options: ModelOptions) -> Backend:
    return _implementation(options.backend).create(options)


def _implementation(name: str) -> BackendModule:
    try:
        description = describe(name)
    except UnknownBackend as exc:
        raise LoadError(str(exc)) from None
    try:
        module = importlib.import_module(description.implementation)
    except ImportError as exc:
        raise LoadError(f"backend {name!r} is not installed here ({exc}); {description.install_hint}") from exc
    return cast(BackendModule, module)
