"""The interface every backend implements, kept ML-free: `worker.backends` imports it, and
a worker imports a backend's ML library only when it warms up or loads that backend.

numpy appears only in annotations (under TYPE_CHECKING): importing this module must not
pull numpy in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from common.protocol import ModelOptions, ReadyInfo, Segment, TranscribeParams, TranscribeResult
from worker.engine.batcher import Batcher

if TYPE_CHECKING:
    import numpy as np

#: Called with each segment as it is decoded; returning False stops the transcription
#: (its client went away), and the result holds the segments so far.
OnSegment = Callable[[Segment], bool]


class LoadError(RuntimeError):
    """The model cannot be loaded here; the message tells the administrator what to fix."""


class Backend(Protocol):
    """What the worker needs from a model, whatever the library behind it."""

    #: Whether `TranscribeParams.prefix` is honoured (the text begins with those words). Live
    #: sessions commit words only on a backend that does: a live final begins with them.
    keeps_prefix: bool

    #: The model's compute lanes (worker.engine.batcher): what requests and live sessions
    #: decode goes through it, batched; the heartbeat reads its time in the model from it.
    batcher: Batcher[Any, Any]

    @property
    def max_audio_seconds(self) -> float:
        """The longest audio one request may hold: its model's `max_audio_seconds` option.

        The worker refuses longer audio itself, before and while decoding it, so a backend
        never sees more; a backend's memory should not grow with it (worker.audio.pieces.sections).
        """
        ...

    def load(self, room_mb: float | None = None) -> ReadyInfo:
        """Load the model for lane 0; raise LoadError with an actionable message on failure.

        `room_mb` is what memory_budget_mb leaves this worker (None: no budget): extra model
        copies for the other lanes are taken only within it (common.lane_plan), and
        READY reports how many (`copies`) with what they will cost (`footprint_mb`).
        """
        ...

    def load_lane(self, lane: int) -> None:
        """Make lane `lane`'s model ready: load its copy, or nothing when the lanes share one.

        Runs on that lane's own thread just after READY; the lane takes requests once it returns.
        """
        ...

    def transcribe(
        self, audio: np.ndarray | Iterable[np.ndarray], params: TranscribeParams, on_segment: OnSegment, lane: int = 0
    ) -> TranscribeResult:
        """Transcribe 16 kHz mono float32 audio, on inference lane `lane` (its own thread).

        `audio` is a whole array (a live utterance) or a stream of blocks (an upload, decoded
        as it is read: worker.audio.decode.open_stream); a backend reads a stream once, window
        by window, and never holds it whole. A stream may raise AudioError or AudioTooLong
        midway: the backend lets them through.
        """
        ...


class BackendModule(Protocol):
    """A backend's implementation module (its description's `implementation`), seen by the worker.

    Module-level functions rather than a class, so that importing the module is the one
    moment the ML library is paid for, and nothing else has to be named.
    """

    def warm_up(self, inference: bool) -> None:
        """Import the ML library; with `inference`, also pay its one-time set-up (pooled spares)."""
        ...

    def create(self, options: ModelOptions) -> Backend:
        """A backend for one model, not loaded yet (the worker calls `load()` on its thread)."""
        ...
