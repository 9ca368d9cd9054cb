"""Model backends: the one list of them, and the worker's way in to their implementations.

The supervisor imports this package for the descriptions, so nothing here imports an ML
library or numpy. A worker reaches a backend's code only through its description's
`implementation` module, imported on first use: adding a backend means adding its package
(description + implementation) and one entry to `DESCRIPTIONS`, and no code elsewhere
names it.
"""

from __future__ import annotations

import importlib
import logging
from typing import cast

from worker.backends import faster_whisper, parakeet
from worker.backends.base import Backend, BackendModule, LoadError, OnSegment
from worker.backends.description import BackendDescription, Capabilities, KnownModel, ModelFiles
from worker.protocol import ModelOptions

__all__ = [
    "DESCRIPTIONS",
    "Backend",
    "BackendDescription",
    "BackendModule",
    "Capabilities",
    "KnownModel",
    "LoadError",
    "ModelFiles",
    "OnSegment",
    "UnknownBackend",
    "create_backend",
    "describe",
    "warm_up",
]

log = logging.getLogger("worker")

#: Every backend, by its config name; the first is listed first everywhere.
DESCRIPTIONS: dict[str, BackendDescription] = {
    d.name: d for d in (faster_whisper.DESCRIPTION, parakeet.NEMO, parakeet.ONNX)
}


class UnknownBackend(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown backend {name!r}; known: {', '.join(DESCRIPTIONS)}")


def describe(name: str) -> BackendDescription:
    """The description of backend `name`; UnknownBackend (naming the known ones) if there is none."""
    try:
        return DESCRIPTIONS[name]
    except KeyError:
        raise UnknownBackend(name) from None


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
