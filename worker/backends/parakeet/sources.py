"""Where a Parakeet model's files are, and what its catalogue entry says it speaks (worker only)."""

from __future__ import annotations

from pathlib import Path

from common.backends.description import BackendDescription
from worker.backends import sources
from worker.backends.base import LoadError


def resolve(source: str, cache_dir: str | None, description: BackendDescription) -> Path:
    """`source` as a local path (worker.backends.sources); Parakeet has no bundled model."""
    if source == "bundled":
        raise LoadError(
            f"{description.name} has no bundled model: set source to one of {', '.join(description.known_names())}, "
            "a hub repo id (org/name) or a local path"
        )
    return sources.resolve(source, cache_dir, description)


def languages(source: str, description: BackendDescription) -> list[str]:
    """The model's languages by its catalogue entry (name or repo); [] when it is not one (any is accepted)."""
    known = description.lookup(source) or next((k for k in description.catalog if k.repo == source), None)
    return list(known.language_codes) if known else []
