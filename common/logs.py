"""How the supervisor and its workers write log lines: text for people, JSON for a pipeline.

Both processes write to the same stderr (the journal, under systemd), so they share one
format switch (`server.log_format`), passed to each worker on its command line. In JSON
every line is one object; what a line says about a request (`request_id`, `model`, `pid`,
timings) is in its own fields as well as in the message, so a log pipeline can join the
supervisor's request line with the worker's lines about the same request without parsing
text. ML-free: the supervisor imports this.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]

#: The fields every JSON line carries, under these names.
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
_RENAMED = {"levelname": "level", "name": "logger", "process": "pid", "asctime": "time"}
#: uvicorn adds a copy of some messages with terminal colour codes: not for a log pipeline.
_DROPPED = (*RESERVED_ATTRS, "color_message")

_format: LogFormat = "text"


def current_format() -> LogFormat:
    """The format this process was configured with: the supervisor hands it to its workers."""
    return _format


def configure(level: str, fmt: LogFormat, *, role: Literal["supervisor", "worker"]) -> None:
    """Set up the root logger of this process (replacing any handler set before)."""
    global _format
    _format = fmt
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(_JSON_FIELDS, rename_fields=_RENAMED, static_fields={"role": role}, reserved_attrs=_DROPPED)
        )
    elif role == "worker":
        handler.setFormatter(logging.Formatter(f"%(asctime)s worker[pid={os.getpid()}] %(levelname)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
