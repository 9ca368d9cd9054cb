"""One log line per finished request: what an operator greps for first.

An observer on the service's seam (`supervisor.observe`), so every interface gets the
same line without writing it itself. The line starts with the request's id, which its
worker's own lines carry too (`request=ID`) and HTTP clients get back in `X-Request-Id`:
`journalctl -u asr-supervisor | grep ID` shows both sides of one request. In JSON
(`log_format = "json"`) the same figures are fields of their own.
"""

from __future__ import annotations

import logging

from supervisor.failures import FailureKind
from supervisor.observe import RequestFinished

log = logging.getLogger("asr.request")

#: Failures an operator should look at (the client's own mistakes are INFO, like successes).
_OUR_FAULT = frozenset({FailureKind.UNAVAILABLE, FailureKind.CRASHED, FailureKind.INTERNAL})


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


class RequestLog:
    """Writes each finished request at INFO; a failure that is not the client's at WARNING."""

    def request_finished(self, record: RequestFinished) -> None:
        failed_here = record.status in _OUR_FAULT
        log.log(
            logging.WARNING if failed_here else logging.INFO,
            "request=%s interface=%s mode=%s model=%s pid=%s status=%s%s audio_s=%s wait_s=%s decode_s=%s total_s=%s",
            record.request_id,
            record.interface,
            record.mode,
            record.model,
            record.pid if record.pid is not None else "-",
            record.status,
            f" code={record.code}" if record.code else "",
            _seconds(record.audio_seconds),
            _seconds(record.wait_seconds),
            _seconds(record.decode_seconds),
            _seconds(record.total_seconds),
            extra={
                "request_id": record.request_id,
                "interface": record.interface,
                "mode": record.mode,
                "model": record.model,
                "worker_pid": record.pid,
                "status": record.status,
                "code": record.code,
                "audio_seconds": record.audio_seconds,
                "wait_seconds": record.wait_seconds,
                "decode_seconds": record.decode_seconds,
                "total_seconds": record.total_seconds,
            },
        )
