"""Where a Parakeet model's files are, and what its catalogue entry says it speaks (worker only)."""

from __future__ import annotations

from pathlib import Path

from worker.backends.base import LoadError
from worker.backends.description import BackendDescription


def resolve(source: str, cache_dir: str | None, description: BackendDescription) -> Path:
    """`source` as a local path: a model file or directory as given, or a hub model fetched into the cache."""
    if source == "bundled":
        raise LoadError(
            f"{description.name} has no bundled model: set source to one of {', '.join(description.known_names())}, "
            "a hub repo id (org/name) or a local path"
        )
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


def languages(source: str, description: BackendDescription) -> list[str]:
    """The model's languages by its catalogue entry (name or repo); [] when it is not one (any is accepted)."""
    known = description.lookup(source) or next((k for k in description.catalog if k.repo == source), None)
    return list(known.language_codes) if known else []
