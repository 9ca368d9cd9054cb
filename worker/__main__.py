"""`python -m worker`: one process, one model, served over ZeroMQ to its supervisor."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from worker import lifeline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    p.add_argument("--endpoint", required=True, help="ZeroMQ endpoint the supervisor bound")
    p.add_argument("--parent-pid", type=int, default=0, help="exit as soon as this process is gone")
    p.add_argument("--name", default="model")
    p.add_argument("--backend", default="faster-whisper")
    p.add_argument("--source", required=True, help="'bundled', a model directory, or a hub name")
    p.add_argument("--device", default="auto")
    p.add_argument("--compute-type", default="auto")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--cpu-threads", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=1, help="requests decoded in parallel")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--heartbeat-interval", type=float, default=1.0)
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # Guard first, before the slow ML imports: a supervisor killed during our
    # start-up must not leave us behind.
    args = parse_args(argv)
    lifeline.request_death_signal()
    lifeline.exit_if_orphaned(args.parent_pid)
    lifeline.watch_parent(args.parent_pid)
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s worker[{args.name} pid={os.getpid()}] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one line per request is noise

    from worker.backends import Backend, create_backend
    from worker.server import WorkerServer

    def make_backend() -> Backend:
        return create_backend(
            args.backend,
            source=args.source,
            device=args.device,
            compute_type=args.compute_type,
            cache_dir=args.cache_dir,
            cpu_threads=args.cpu_threads,
            num_workers=args.concurrency,
            beam_size=args.beam_size,
        )

    server = WorkerServer(make_backend, args.endpoint, args.heartbeat_interval, args.concurrency)
    code = asyncio.run(server.run())
    sys.stdout.flush()
    # Skip interpreter teardown: the OS frees the model's memory faster and more
    # surely than library destructors do.
    os._exit(code)


if __name__ == "__main__":
    main()
