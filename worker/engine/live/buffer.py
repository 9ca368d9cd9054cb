"""The recent audio of a live stream, in one growable array addressed by stream sample.

A push appends in place (amortised: the array doubles when full, and what was dropped at
the front is reclaimed by moving the kept samples back to the start only then), so a push
costs what it carries, never what the session has heard. The session drops what it no
longer needs (audio before the current utterance, silence beyond a short pre-roll), which
keeps the array at most about twice the longest utterance.
"""

from __future__ import annotations

import numpy as np


class AudioBuffer:
    def __init__(self, capacity: int = 16000 * 8) -> None:
        self._data = np.zeros(capacity, dtype=np.float32)
        self._head = 0  # index in _data of sample `start`
        self._size = 0
        self.start = 0  # stream sample of the first kept sample

    @property
    def end(self) -> int:
        """The stream sample after the last one kept (= samples pushed so far)."""
        return self.start + self._size

    def __len__(self) -> int:
        return self._size

    def append(self, samples: np.ndarray) -> None:
        n = samples.size
        if self._head + self._size + n > self._data.size:
            self._make_room(n)
        at = self._head + self._size
        self._data[at : at + n] = samples
        self._size += n

    def _make_room(self, n: int) -> None:
        needed = self._size + n
        if needed * 2 > self._data.size:  # grow only when the kept samples would fill over half
            data = np.zeros(max(needed * 2, self._data.size * 2), dtype=np.float32)
        else:
            data = self._data
        data[: self._size] = self._data[self._head : self._head + self._size]  # overlapping copy is safe
        self._data, self._head = data, 0

    def drop_before(self, sample: int) -> None:
        """Forget samples before stream sample `sample` (a no-op for samples already gone)."""
        drop = min(max(0, sample - self.start), self._size)
        self._head += drop
        self._size -= drop
        self.start += drop

    def copy(self, begin: int, end: int, *, lead: int = 0) -> np.ndarray:
        """Samples [begin, end) of the stream, clipped to what is kept, as an array of their own
        (a decode job reads it on another thread while pushes go on), after `lead` zeros."""
        begin = max(begin, self.start)
        end = max(begin, min(end, self.end))
        out = np.zeros(lead + end - begin, dtype=np.float32)
        out[lead:] = self._data[self._head + begin - self.start : self._head + end - self.start]
        return out
