"""`python -m worker`: one process, one model, served over ZeroMQ to its supervisor."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from common import logs
from worker import lifeline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    p.add_argument("--endpoint", required=True, help="ZeroMQ endpoint the supervisor bound")
    p.add_argument("--parent-pid", type=int, default=0, help="exit as soon as this process is gone")
    p.add_argument("--backend", default="faster-whisper", help="whose libraries to import while a spare")
    p.add_argument(
        "--prewarm",
        action="store_true",
        help="also pay the backend's one-time inference set-up before saying SPARE (pooled spares)",
    )
    p.add_argument("--heartbeat-interval", type=float, default=1.0)
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start as a spare (libraries imported, no model); the supervisor's LOAD names the model."""
    # Guard first, before the slow ML imports: a supervisor killed during our
    # start-up must not leave us behind.
    args = parse_args(argv)
    lifeline.request_death_signal()
    lifeline.exit_if_orphaned(args.parent_pid)
    lifeline.watch_parent(args.parent_pid)
    logs.configure(args.log_level, args.log_format, role="worker")
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one line per request is noise

    from worker.server import WorkerServer

    server = WorkerServer(args.backend, args.endpoint, args.heartbeat_interval, args.prewarm)
    try:
        code = asyncio.run(server.run())
    except BaseException:  # run() reports its own failures; this is a bug in it, or Ctrl-C
        logging.getLogger("worker").exception("worker crashed")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the OS frees the model's memory faster and more surely
    # than library destructors do, and a load thread abandoned by SHUTDOWN is not joined.
    os._exit(code)


if __name__ == "__main__":
    main()
