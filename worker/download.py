"""Fetch a model from the hub into the cache, or find it there without touching the network.

`python -m worker.download --source NAME_OR_REPO [--cache-dir DIR]` prints one JSON line
per event (`progress` with bytes done/total, then `done` with the path, or `error`), so
the supervisor and `asrctl` can show progress without importing huggingface_hub.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

#: The files faster-whisper needs from a CTranslate2 Whisper repo (as faster_whisper.utils).
ALLOW_PATTERNS = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"]


class DownloadError(RuntimeError):
    pass


def repo_for(source: str) -> str:
    """A model size (`large-v3`) to its repo; a repo id (`org/name`) as it is."""
    if "/" in source:
        return source
    from faster_whisper.utils import _MODELS  # the names faster-whisper itself accepts

    repo = _MODELS.get(source)
    if repo is None:
        raise DownloadError(f"unknown model {source!r}: use a hub repo id (org/name) or one of {', '.join(_MODELS)}")
    return repo


def cached(source: str, cache_dir: str | None) -> Path | None:
    """The model's local snapshot if every file is already there; no network either way."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_for(source), cache_dir=cache_dir, allow_patterns=ALLOW_PATTERNS,
                                      local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None
    except Exception as exc:  # IncompleteSnapshotError and friends: treat as "not cached"
        if type(exc).__name__.endswith(("NotFoundError", "SnapshotError")):
            return None
        raise


def fetch(source: str, cache_dir: str | None, report: Any = None) -> Path:
    """The model's directory: from the cache when complete, else downloaded (with progress)."""
    if (path := cached(source, cache_dir)) is not None:
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_for(source), cache_dir=cache_dir, allow_patterns=ALLOW_PATTERNS,
                                      tqdm_class=_progress_class(report) if report else None))
    except DownloadError:
        raise
    except Exception as exc:
        raise DownloadError(f"could not download {source!r}: {type(exc).__name__}: {exc}") from exc


def _progress_class(report: Any) -> type:
    """A tqdm class that reports the byte bars snapshot_download drives (not its file count)."""
    from tqdm.auto import tqdm

    class Progress(tqdm):  # type: ignore[misc]
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
        was_cached = cached(args.source, args.cache_dir) is not None
        path = fetch(args.source, args.cache_dir, report)
    except DownloadError as exc:
        emit({"event": "error", "message": str(exc)})
        return 1
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    emit({"event": "done", "path": str(path), "size": size, "cached": was_cached})
    return 0


if __name__ == "__main__":
    sys.exit(main())
