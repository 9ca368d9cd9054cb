"""A shorter encoder window for live decodes: Whisper's cost follows the audio, not 30 s.

faster-whisper pads every window's features to 30 s (3,000 frames) before the encoder,
so a 2 s utterance costs what a 30 s file does (about 0.5 s on 2 cores for tiny.en).
CTranslate2's encoder takes shorter input, and Whisper's decoder reads whatever the
encoder gives it: padding to the audio's length instead makes a decode of a few seconds
3-5x cheaper. The text degrades when the window is very short ("God-Morling" for "Good
morning" at 5 s), so the live engine never asks for under 15 s
(worker.engine.live.jobs.LIVE_WINDOW_SECONDS): there the greedy text of the test clips
matched the 30 s text at about half its cost. Only partials ask for it: finals (and files
sent over HTTP) keep 30 s, since a final with 15 s lost words a 30 s one had.

faster-whisper has no parameter for this (its `chunk_length` changes the feature
extractor for every later call and is still padded to 3,000 frames), so its module-level
`pad_or_trim` is wrapped, once, by one that reads a per-thread length: a lane sets it only
around its own call, and every other call, on any thread, pads to 30 s as before. Where a
faster-whisper release no longer has that function, the wrapper is not installed and every
window is 30 s: slower live decodes, nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("worker")

_FRAMES_PER_SECOND = 100

_local = threading.local()
_installed: bool | None = None
_lock = threading.Lock()


@contextlib.contextmanager
def encoder_window(seconds: int | None) -> Iterator[None]:
    """Decode with a `seconds`-long encoder window on this thread, for the `with` block."""
    if seconds is None or not _install():
        yield
        return
    _local.frames = seconds * _FRAMES_PER_SECOND
    try:
        yield
    finally:
        _local.frames = None


def _install() -> bool:
    global _installed
    with _lock:
        if _installed is None:
            from faster_whisper import transcribe

            original: Any = getattr(transcribe, "pad_or_trim", None)
            _installed = callable(original)
            if not _installed:
                log.warning("faster-whisper has no pad_or_trim: live decodes use 30 s windows")
            else:

                def pad_or_trim(array: Any, length: int = 3000, *, axis: int = -1) -> Any:
                    return original(array, getattr(_local, "frames", None) or length, axis=axis)

                transcribe.pad_or_trim = pad_or_trim
    return _installed
