"""One worker, many users: shared passes against lanes alone, on the running server (issue 26).

    .venv/bin/python -m bench --batching                    # the same as: python -m bench.batching
    .venv/bin/python -m bench.batching                      # about 7 minutes on 2 cores
    .venv/bin/python -m bench.batching --clients 4 8 --sessions 4 6 --rounds 1

Two supervisors serve the bundled tiny.en (CPU int8, beam 5, the same CTranslate2 threads),
one after the other, round by round:

- **lanes alone**: `batch_size = 1`. Two requests are decoded side by side, one window a
  model call: what a worker did before shared passes.
- **shared passes**: the default, `batch_size = "auto"`. The worker takes as many requests
  at once as a batch holds windows, and the windows waiting at one moment, from every
  request and live session, go through the model in one call on each free lane.

Rows:

- **Requests/s** at 4, 8 and 16 HTTP clients, each sending the medium clip (weather.wav,
  9 s) back to back: the median over the rounds. Every reply is compared with that server's
  reply to the clip alone: batching must not change a word.
- **Live sessions** one worker keeps in real time: 4, 6 and 8 paced WebSocket sessions at
  once (20 s of speech each, as `bench --live`'s capacity rows). A level holds when the
  p95 of speech end → final is at most 2 s, every sentence got a final and no session
  failed.

Written to bench/results/batching.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import live, live_report, page
from bench.__main__ import wait_lanes_open
from bench.clips import Clip, load_clips
from bench.live_clips import load_live_clips
from bench.servers import REPO, Supervisor, start_supervisor

WAYS = {"lanes alone": 1, "shared passes": "auto"}


def _start(tmp: Path, way: str, threads: int) -> Supervisor:
    sup = start_supervisor(tmp, way.replace(" ", "-"), ttl=-1, cpu_threads=threads, batch_size=WAYS[way])
    with httpx.Client(base_url=sup.url, timeout=None) as client:
        warm = load_clips(tmp)["short"]
        client.post("/v1/audio/transcriptions", files={"file": ("short.wav", warm.data)}).raise_for_status()
        wait_lanes_open(client, client.get("/health").json()["models"]["tiny.en"])
    return sup


async def _clients(url: str, clip: Clip, clients: int, per_client: int) -> tuple[float, list[str]]:
    """Wall seconds for `clients` clients sending `per_client` requests each, and every reply's text."""
    texts: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def one_client() -> None:
            for _ in range(per_client):
                r = await client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", clip.data, "audio/wav")})
                r.raise_for_status()
                texts.append(r.json()["text"].strip())

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        return time.perf_counter() - started, texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--sessions", type=int, nargs="+", default=[4, 6, 8])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-requests", type=int, default=24, help="requests per level and round, at least")
    parser.add_argument("--cpu-threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    live_clips = load_live_clips()
    reps = live.LiveReps(clips=1, wyoming=1, capacity_seconds=20.0, levels=tuple(args.sessions))
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        clip = load_clips(tmp)["medium"]
        for k in range(args.rounds):
            for way in WAYS:
                sup = _start(tmp, way, args.cpu_threads)
                try:
                    with httpx.Client(base_url=sup.url, timeout=None) as client:
                        r = client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", clip.data)})
                        alone = r.json()["text"].strip()
                    for clients in args.clients:
                        per_client = -(-args.min_requests // clients)
                        wall, texts = asyncio.run(_clients(sup.url, clip, clients, per_client))
                        row = {
                            "round": k,
                            "way": way,
                            "clients": clients,
                            "requests": len(texts),
                            "requests_per_s": round(len(texts) / wall, 3),
                            "changed": sum(text != alone for text in texts),
                        }
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                    for level in live.measure_capacity(sup.url, live_clips, reps, 800, []):
                        latency = level["final_latency"]
                        row = {
                            "round": k,
                            "way": way,
                            "sessions": level["sessions"],
                            "p50": round(live_report.p50(latency), 3),
                            "p95": round(live_report.percentile(latency, 95), 3),
                            "missed": level["missed_sentences"],
                            "errors": len(level["errors"]),
                            "holds": level["holds"],
                        }
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                finally:
                    sup.stop()
    lines = report(rows, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batching.md").write_text("\n".join(lines) + "\n")
    (args.out / "batching.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))
    page.update(args.out)
    return 0 if not any(r.get("changed") for r in rows) else 1


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    lines = [
        f"One worker, many users: tiny.en, CPU int8, beam 5, {args.cpu_threads} threads, {args.rounds} round(s)",
        "",
        page.stamp(None),
        "",
        "| clients | lanes alone, requests/s | shared passes, requests/s | × | replies changed by batching |",
        "|---|---|---|---|---|",
    ]
    for clients in args.clients:
        rate = {
            way: statistics.median(r["requests_per_s"] for r in rows if r.get("clients") == clients and r["way"] == way)
            for way in WAYS
        }
        changed = sum(r["changed"] for r in rows if r.get("clients") == clients and r["way"] == "shared passes")
        total = sum(r["requests"] for r in rows if r.get("clients") == clients and r["way"] == "shared passes")
        lines.append(
            f"| {clients} | {rate['lanes alone']:.2f} | {rate['shared passes']:.2f} "
            f"| {rate['shared passes'] / rate['lanes alone']:.2f} | {changed} of {total} |"
        )
    lines += [
        "",
        "| live sessions | lanes alone: p95 final (each round) | shared passes: p95 final (each round) | holds (≤ 2 s) |",
        "|---|---|---|---|",
    ]
    for sessions in args.sessions:

        def cell(way: str, n: int = sessions) -> str:
            got = [r for r in rows if r.get("sessions") == n and r["way"] == way]
            return ", ".join(f"{r['p95']:.2f} s" + ("" if r["holds"] else " ✗") for r in got) or "not run"

        held = {
            way: all(r["holds"] for r in rows if r.get("sessions") == sessions and r["way"] == way)
            and any(r.get("sessions") == sessions and r["way"] == way for r in rows)
            for way in WAYS
        }
        lines.append(
            f"| {sessions} | {cell('lanes alone')} | {cell('shared passes')} "
            f"| lanes alone {'yes' if held['lanes alone'] else 'no'}, shared {'yes' if held['shared passes'] else 'no'} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
