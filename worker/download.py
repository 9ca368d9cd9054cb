"""Fetch a model from the hub into the cache, or find it there without touching the network.

`python -m worker.download --source NAME_OR_REPO [--backend NAME] [--cache-dir DIR]` prints
one JSON line per event (`progress` with bytes done/total, then `done` with the path, or
`error`), so the supervisor and `asrctl` can show progress without importing huggingface_hub.
Which names mean which repo, and which files of a repo to fetch, come from the backend's
description: a library's private name table would tie every backend to faster-whisper's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from common.backends import BackendDescription, UnknownBackend, describe
from common.protocol import ModelOptions


class DownloadError(RuntimeError):
    pass


def repo_for(source: str, backend: BackendDescription) -> str:
    """A catalogue name (`large-v3`) to its repo; a repo id (`org/name`) as it is."""
    if "/" in source:
        return source
    known = backend.lookup(source)
    if known is None:
        raise DownloadError(
            f"unknown {backend.name} model {source!r}: use a hub repo id (org/name) "
            f"or one of {', '.join(backend.known_names())}"
        )
    return known.repo


def cached(source: str, cache_dir: str | None, backend: BackendDescription) -> Path | None:
    """The model's local snapshot if every file is already there; no network either way."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(
            snapshot_download(
                repo_for(source, backend),
                cache_dir=cache_dir,
                allow_patterns=list(backend.files.download),
                local_files_only=True,
            )
        )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None
    except Exception as exc:  # IncompleteSnapshotError and friends: treat as "not cached"
        if type(exc).__name__.endswith(("NotFoundError", "SnapshotError")):
            return None
        raise
    return path if backend.files.complete(path) else None


def fetch(source: str, cache_dir: str | None, backend: BackendDescription, report: Any = None) -> Path:
    """The model's directory: from the cache when complete, else downloaded (with progress)."""
    if (path := cached(source, cache_dir, backend)) is not None:
        return path
    from huggingface_hub import snapshot_download

    try:
        path = Path(
            snapshot_download(
                repo_for(source, backend),
                cache_dir=cache_dir,
                allow_patterns=list(backend.files.download),
                tqdm_class=_progress_class(report) if report else None,
            )
        )
    except DownloadError:
        raise
    except Exception as exc:
        raise DownloadError(f"could not download {source!r}: {type(exc).__name__}: {exc}") from exc
    if missing := backend.files.missing(path):
        raise DownloadError(
            f"could not download {source!r}: the repo has no {', '.join(missing)} (not a {backend.name} model)"
        )
    return path


def _progress_class(report: Any) -> type:
    """A tqdm class that reports the byte bars snapshot_download drives (not its file count)."""
    from tqdm.auto import tqdm

    class Progress(tqdm):  # type: ignore[misc]  # tqdm ships no type hints: its base class is Any
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True  # no terminal bar: we report ourselves
            super().__init__(*args, **kwargs)
            self._bytes = kwargs.get("unit") == "B" and str(kwargs.get("desc", "")).startswith("Downloading")
            self._done = 0

        def update(self, n: float | None = 1) -> bool | None:
            if self._bytes and n:
                self._done += int(n)
                report(self._done, int(self.total or 0))
            return None

    return Progress


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m worker.download", description=__doc__)
    p.add_argument("--source", required=True)
    p.add_argument("--backend", default=ModelOptions().backend, help="whose catalogue and files (default: %(default)s)")
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)

    last = [0.0]

    def emit(event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.2 or (total and done >= total):  # a few lines a second is plenty
            last[0] = now
            emit({"event": "progress", "downloaded": done, "total": total})

    try:
        backend = describe(args.backend)
        was_cached = cached(args.source, args.cache_dir, backend) is not None
        path = fetch(args.source, args.cache_dir, backend, report)
    except (DownloadError, UnknownBackend) as exc:
        emit({"event": "error", "message": str(exc)})
        return 1
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    emit({"event": "done", "path": str(path), "size": size, "cached": was_cached})
    return 0


if __name__ == "__main__":
    sys.exit(main())
