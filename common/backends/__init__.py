"""Model backends as both sides know them: the one list of their ML-free descriptions.

The supervisor reads these for config, the catalogue, downloads and spares, so nothing here
imports an ML library or numpy. A worker reaches a backend's code only through its
description's `implementation` module (`worker.backends`), imported on first use: adding a
backend means adding its description (a module here) and its implementation (a package in
`worker/backends/`), and one entry to `DESCRIPTIONS`, and no code elsewhere names it.
"""

from __future__ import annotations

from common.backends import faster_whisper, parakeet
from common.backends.description import BackendDescription, Capabilities, KnownModel, ModelFiles

__all__ = [
    "DESCRIPTIONS",
    "BackendDescription",
    "Capabilities",
    "KnownModel",
    "ModelFiles",
    "UnknownBackend",
    "describe",
]

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
