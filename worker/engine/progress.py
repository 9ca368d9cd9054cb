"""How far a long file's transcription has got, in the worker's log.

A three-hour upload takes minutes even batched; an administrator watching the log (or a
user wondering whether the server hangs) should see it move. Short files log nothing:
their one line at the end says it all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("worker")

#: Files at least this long (by their declared length) log their progress.
MIN_SECONDS = 180.0
#: ... at most once per this many seconds of wall-clock time.
EVERY_SECONDS = 30.0


class Progress:
    """Fed each segment's end time; logs audio seconds done of the total now and then."""

    def __init__(self, request_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._request_id = request_id
        self._clock = clock
        self._started = clock()
        self._last = self._started
        self.total = 0.0
        self.done = 0.0

    def segment(self, end: float) -> None:
        self.done = max(self.done, end)
        now = self._clock()
        if self.total < MIN_SECONDS or now - self._last < EVERY_SECONDS:
            return
        self._last = now
        log.info(
            "request=%s progress: %.0f of %.0f s of audio (%.0f %%) in %.0f s",
            self._request_id,
            min(self.done, self.total),
            self.total,
            100 * min(self.done / self.total, 1.0),
            now - self._started,
            extra={"request_id": self._request_id},
        )
