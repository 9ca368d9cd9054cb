"""The seam where a finished request is told to whoever watches: one typed record each.

Every request a client makes over any interface passes through `TranscriptionService`
(`supervisor.service`). When one ends, however it ends, the service builds one
`RequestFinished` and hands it to each `RequestObserver` registered with
`service.observers.add(...)`. The metrics (`supervisor.metrics`) are one observer; a
per-request log line is another waiting to be written. An observer runs on the event loop,
synchronously, once per request: it must be quick and must not raise (an exception is
logged and the other observers still hear of the request).

What counts as a request: a file transcription (HTTP upload, Wyoming utterance decoded at
`audio-stop`), from `service.stream()` to the moment the interface closes it; a live stream
(the WebSocket, a Wyoming utterance decoded while spoken), from `service.live()` to its
close. A request refused before it gets there (an unknown model name, a bad parameter that
the service checks before it starts, a missing API key) makes no record: the interface
answered it alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

log = logging.getLogger("asr.observe")

#: Where a request came from: the OpenAI HTTP routes (uploads, SSE streaming included), the
#: Wyoming TCP server, the live WebSocket (`/v1/audio/transcriptions/stream`), or the OpenAI
#: Realtime transcription WebSocket (`/v1/realtime?intent=transcription`).
Interface = Literal["http", "wyoming", "stream", "realtime"]
FILE_INTERFACES: tuple[Interface, ...] = ("http", "wyoming")  # where file requests come from
LIVE_INTERFACES: tuple[Interface, ...] = ("stream", "realtime", "wyoming")  # where live streams come from

#: "file": the audio arrived whole and was decoded once; "live": it was decoded while it came.
Mode = Literal["file", "live"]


@dataclass(frozen=True, slots=True)
class RequestFinished:
    """One request, once it is over. Times are seconds, measured by the supervisor."""

    request_id: str  # a file request's id is the one its worker logs too (`grep` finds both sides)
    interface: Interface
    mode: Mode
    model: str  # the configured model it ran on (aliases resolved)
    pid: int | None  # the worker it ran on; None if it never got one
    #: "ok"; "cancelled" when the client went away first; else the failure's kind
    #: (`supervisor.failures.FailureKind`: bad_audio, too_large, unavailable, crashed ...).
    status: str
    code: str | None  # the failure's machine-readable code (what the client was told); None if ok
    audio_seconds: float | None  # audio it carried: the decoded duration, or a live stream's seconds sent
    wait_seconds: float | None  # arrival → a worker leased (queueing, a cold start, capacity); None if never
    decode_seconds: float | None  # a file request's lease → result; None for live streams and failures
    total_seconds: float  # arrival → result (file), or → close (live)


class RequestObserver(Protocol):
    def request_finished(self, record: RequestFinished) -> None: ...


class Observers:
    """The service's observers; `add` one at start-up."""

    def __init__(self) -> None:
        self._observers: list[RequestObserver] = []

    def add(self, observer: RequestObserver) -> None:
        self._observers.append(observer)

    def finished(self, record: RequestFinished) -> None:
        for observer in self._observers:
            try:
                observer.request_finished(record)
            except Exception:
                log.exception("request observer %r failed on request %s", observer, record.request_id)
