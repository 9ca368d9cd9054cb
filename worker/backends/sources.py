"""Where a model's files are, for every backend: a path as given, or a hub model fetched (worker only).

A backend's own names (faster-whisper's "bundled") are its business; everything else a
`source` can be is read the same way, from the backend's description: a model file or
directory checked against its required files, a missing path refused, and anything else
a catalogue name or hub repo id, taken from the cache or downloaded into it.
"""

from __future__ import annotations

from pathlib import Path

from common.backends.description import BackendDescription
from worker.backends.base import LoadError


def resolve(source: str, cache_dir: str | None, description: BackendDescription) -> Path:
    """`source` as a local path: a model file or directory as given, or a hub model fetched into the cache."""
    path = Path(source).expanduser()
    if description.files.is_model_file(path):
        return path
    if path.is_dir():
        if missing := description.files.missing(path):
            raise LoadError(f"{path} has no {', '.join(missing)}: not a {description.name} model directory")
        return path
    if source.startswith(("/", ".", "~")):
        raise LoadError(f"model path {source} does not exist")
    from worker.download import DownloadError, fetch

    try:
        return fetch(source, cache_dir, description)
    except DownloadError as exc:
        raise LoadError(str(exc)) from exc
