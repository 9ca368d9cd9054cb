"""`scripts/gpu-check` (`python -m bench.gpu`): what a CUDA GPU does for the supervisor, in one table.

One supervisor, its models on GPU 0, and each row with its goal:

- VRAM (the whole GPU's, from nvidia-smi) before any model, with one loaded, at the peak of
  a burst of concurrent requests, and after its TTL unload: back to the baseline, and how
  long after the last request;
- one request's latency, float16 on the GPU against int8 on the CPU, and the throughput of
  the burst on each;
- two models on the GPU with their own TTLs: each unloads at its own, the other stays;
- Parakeet through NeMo on CUDA, when NeMo is installed and `--parakeet` names a model.

Without a CUDA GPU it says so and exits 77 (skipped), measuring nothing; with one that
CTranslate2 cannot use, it says why (as `asrctl doctor` does) and exits 1. `--device cpu`
runs every step on the CPU, without VRAM figures and without goals: a check of this script
itself on a machine with no GPU. Exit 0 when every goal is met, 1 when one is not.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import importlib.util
import io
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import httpx

from bench.servers import REPO, Supervisor, _spawn, free_port
from common import nvidia_smi
from supervisor.preflight import device as machine

SKIPPED = 77  # the automake convention for a test that could not run here
ASSETS = REPO / "tests" / "assets"
#: VRAM counted as "back to the baseline": the driver's own bookkeeping moves by a few MB.
VRAM_TOLERANCE_MB = 64
#: How late past its TTL an unload may come: the idle timer, the worker's exit, the driver.
TTL_SLACK_S = 5.0


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    goal: str
    result: str
    met: bool | None  # None: nothing to judge (a figure only, or skipped)


def no_gpu_reason() -> tuple[int, str] | None:
    """(exit code, why) when there is no CUDA GPU to measure; None when there is one CTranslate2 can use."""
    listed = machine.gpus()
    if not listed:
        why = "nvidia-smi not found (no NVIDIA driver)" if listed is None else "nvidia-smi lists no GPU"
        return SKIPPED, f"no CUDA GPU here: {why}. Nothing measured: the CUDA figures stay 'not measured yet'."
    found = machine.probe(inference=False)
    if "error" in found:
        return 1, f"{found['error']}; `asrctl doctor` says more"
    if not found.get("cuda_devices"):
        return 1, f"nvidia-smi lists {listed[0].name}, but CTranslate2 sees no CUDA device: run `asrctl doctor`"
    if problem := found.get("libraries_problem"):
        return 1, f"CTranslate2's CUDA libraries: {problem}"
    return None


def vram_mb() -> float | None:
    """GPU 0's memory in use by every process, in MB; None without nvidia-smi."""
    rows = nvidia_smi.query(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
    try:
        return float(rows[0][0]) if rows else None
    except (IndexError, ValueError):
        return None


class PeakSampler:
    """GPU 0's highest VRAM use while it runs, sampled in a thread (nvidia-smi takes tens of ms)."""

    def __init__(self) -> None:
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if (used := vram_mb()) is not None:
                self.peak = max(self.peak or used, used)


def clip(seconds_wanted: float) -> tuple[bytes, float]:
    """The test clips, repeated with half-second pauses up to `seconds_wanted`: a WAV and its length."""
    pcm, params = b"", None
    while params is None or len(pcm) / 2 / params.framerate < seconds_wanted:
        for name in ("weather", "fox", "short"):
            with wave.open(str(ASSETS / f"{name}.wav"), "rb") as src:
                params = src.getparams()
                pcm += src.readframes(src.getnframes()) + b"\0\0" * (params.framerate // 2)
    out = io.BytesIO()
    with wave.open(out, "wb") as dst:
        dst.setparams(params)
        dst.writeframes(pcm)
    return out.getvalue(), len(pcm) / 2 / params.framerate


def write_config(tmp: Path, args: argparse.Namespace) -> Path:
    gpu = args.device == "cuda"
    fast = f'device = "{args.device}"\ncompute_type = "{"float16" if gpu else "int8"}"\n'
    text = (
        '[server]\ndefault_model = "gpu-a"\nwarm_spare = false\n\n'
        f'[models."gpu-a"]\nsource = "{args.model}"\n{fast}ttl = {args.ttl_a}\n\n'
        f'[models."gpu-b"]\nsource = "{args.model}"\n{fast}ttl = {args.ttl_b}\n\n'
        f'[models."cpu"]\nsource = "{args.model}"\ndevice = "cpu"\ncompute_type = "int8"\nttl = -1\n'
    )
    if args.parakeet:
        text += f'\n[models."parakeet"]\nbackend = "parakeet-nemo"\nsource = "{args.parakeet}"\ndevice = "{args.device}"\nttl = -1\n'
    path = tmp / "gpu-check.toml"
    path.write_text(text)
    return path


def start(tmp: Path, config: Path) -> Supervisor:
    port, wyoming = free_port(), free_port()
    cmd = [sys.executable, "-m", "supervisor", "--config", str(config), "--port", str(port)]
    cmd += ["--wyoming-port", str(wyoming), "--log-level", "warning"]
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}
    service = _spawn("gpu-check", cmd, tmp, port, env)
    sup = Supervisor(service.name, service.proc, service.log_path, port, wyoming_port=wyoming)
    deadline = time.monotonic() + 60
    while True:
        sup.check_alive()
        try:
            if httpx.get(f"{sup.url}/health", timeout=5).status_code == 200:
                return sup
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            sup.stop()
            raise RuntimeError(f"the supervisor did not answer /health in 60 s:\n{sup.log_tail()}")
        time.sleep(0.05)


class Session:
    """The running supervisor, asked over HTTP as a client would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=600)

    def load(self, model: str, ttl: int | None = None) -> float:
        """Load `model` (or, loaded, give it `ttl` from now on); the seconds it took."""
        started = time.perf_counter()
        params: dict[str, str | int] = {"model": model} | ({"ttl": ttl} if ttl is not None else {})
        self.client.post("/v1/model/load", params=params).raise_for_status()
        return time.perf_counter() - started

    def unload(self, model: str) -> None:
        self.client.post("/v1/model/unload", params={"model": model}).raise_for_status()

    def transcribe(self, model: str, audio: bytes) -> float:
        return transcribe(self.url, model, audio)

    def state(self, model: str) -> str:
        return str(self.client.get("/health").json()["models"][model]["state"])

    def wait_state(self, model: str, state: str, since: float, timeout: float) -> float | None:
        """Seconds from `since` (a perf_counter time) until `model` is in `state`; None past `timeout`."""
        while time.perf_counter() - since < timeout:
            if self.state(model) == state:
                return time.perf_counter() - since
            time.sleep(0.1)
        return None


def transcribe(url: str, model: str, audio: bytes) -> float:
    started = time.perf_counter()
    files = {"file": ("clip.wav", audio, "audio/wav")}
    httpx.post(f"{url}/v1/audio/transcriptions", files=files, data={"model": model}, timeout=600).raise_for_status()
    return time.perf_counter() - started


def burst(url: str, model: str, audio: bytes, clients: int) -> tuple[float, float]:
    """`clients` requests at once: (wall seconds, perf_counter time the last one ended)."""
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: transcribe(url, model, audio), range(clients)))
    ended = time.perf_counter()
    return ended - started, ended


def wait_vram(target: float | None, since: float, timeout: float) -> float | None:
    """Seconds from `since` until GPU 0 uses at most `target` + the tolerance; None past `timeout`."""
    while target is not None and time.perf_counter() - since < timeout:
        if (used := vram_mb()) is not None and used <= target + VRAM_TOLERANCE_MB:
            return time.perf_counter() - since
        time.sleep(0.1)
    return None


def mb(value: float | None) -> str:
    return "n/a (no GPU)" if value is None else f"{value:.0f} MB"


def measure(s: Session, args: argparse.Namespace) -> list[Row]:
    gpu = args.device == "cuda"
    judge: Callable[[bool], bool | None] = (lambda ok: ok) if gpu else (lambda ok: None)
    short = (ASSETS / "fox.wav").read_bytes()
    with wave.open(str(ASSETS / "fox.wav"), "rb") as fox:
        short_s = fox.getnframes() / fox.getframerate()
    long, long_s = clip(args.burst_seconds)
    rows = []

    baseline = vram_mb()
    rows.append(Row("VRAM before any model", "the baseline", mb(baseline), None))
    load_s = s.load("gpu-a", ttl=-1)  # kept until its burst; then its TTL is measured
    loaded = vram_mb()
    grew = "" if loaded is None or baseline is None else f" (+{loaded - baseline:.0f}; load {load_s:.1f} s)"
    rows.append(Row("VRAM, gpu-a loaded", "the weights and CUDA's context", mb(loaded) + grew, None))

    s.load("cpu")
    for model in ("gpu-a", "cpu"):
        s.transcribe(model, short)  # a first request pays one-time costs
    gpu_lat = statistics.median(s.transcribe("gpu-a", short) for _ in range(args.repeats))
    cpu_lat = statistics.median(s.transcribe("cpu", short) for _ in range(args.repeats))
    rows.append(
        Row(
            f"latency, one request ({short_s:.1f} s clip)",
            "GPU float16 below CPU int8",
            f"{gpu_lat:.2f} s against {cpu_lat:.2f} s on the CPU ({cpu_lat / gpu_lat:.1f}x)",
            judge(gpu_lat < cpu_lat),
        )
    )

    cpu_wall, _ = burst(s.url, "cpu", long, args.clients)
    s.load("gpu-a", ttl=args.ttl_a)
    with PeakSampler() as peak:
        gpu_wall, last_end = burst(s.url, "gpu-a", long, args.clients)
    total = machine.gpus() or []
    room = total[0].total_mb if total else None
    over = "" if peak.peak is None or loaded is None else f" (+{peak.peak - loaded:.0f} over loaded)"
    fits = room is not None and peak.peak is not None and peak.peak < room
    rows.append(
        Row(
            f"VRAM at the peak of {args.clients} concurrent requests",
            "within the GPU",
            mb(peak.peak) + over,
            judge(fits),
        )
    )
    audio = args.clients * long_s
    rows.append(
        Row(
            f"throughput, {args.clients} concurrent {long_s:.0f} s requests",
            "GPU above the CPU",
            f"{audio / gpu_wall:.0f} audio s/s ({gpu_wall:.1f} s) against {audio / cpu_wall:.0f} on the CPU "
            f"({cpu_wall:.1f} s): {cpu_wall / gpu_wall:.1f}x",
            judge(gpu_wall < cpu_wall),
        )
    )

    gone = s.wait_state("gpu-a", "unloaded", last_end, args.ttl_a + 60)
    back = wait_vram(baseline, last_end, args.ttl_a + 60)
    after = vram_mb()
    on_time = gone is not None and gone <= args.ttl_a + TTL_SLACK_S
    rows.append(
        Row(
            f"after the TTL unload (ttl {args.ttl_a} s)",
            f"back to the baseline ±{VRAM_TOLERANCE_MB} MB, by ttl + {TTL_SLACK_S:.0f} s",
            f"unloaded {_s(gone)} after the last request"
            + (f", VRAM {mb(after)}, back {_s(back)} after it" if gpu else ""),
            on_time and (not gpu or (back is not None and back <= args.ttl_a + TTL_SLACK_S)),
        )
    )
    rows.append(two_ttls(s, args, short))
    rows.append(parakeet(s, args, short, judge))
    return rows


def two_ttls(s: Session, args: argparse.Namespace, audio: bytes) -> Row:
    """gpu-a and gpu-b loaded together, one request each: each must end at its own TTL."""
    s.load("gpu-a", ttl=args.ttl_a)
    s.load("gpu-b", ttl=args.ttl_b)
    s.transcribe("gpu-a", audio)
    a_end = time.perf_counter()
    s.transcribe("gpu-b", audio)
    b_end = time.perf_counter()
    a_gone = s.wait_state("gpu-a", "unloaded", a_end, args.ttl_b + 60)
    b_then = s.state("gpu-b")
    between = vram_mb()
    b_gone = s.wait_state("gpu-b", "unloaded", b_end, args.ttl_b + 60)
    after = vram_mb()
    ok = (
        a_gone is not None
        and b_gone is not None
        and args.ttl_a <= a_gone + 0.5 <= args.ttl_a + TTL_SLACK_S
        and args.ttl_b <= b_gone + 0.5 <= args.ttl_b + TTL_SLACK_S
        and b_then == "ready"
    )
    return Row(
        f"two models, ttl {args.ttl_a} s and {args.ttl_b} s",
        f"each unloads at its own TTL (+{TTL_SLACK_S:.0f} s), the other stays",
        f"gpu-a after {_s(a_gone)} (gpu-b then {b_then}, VRAM {mb(between)}), gpu-b after {_s(b_gone)} (VRAM {mb(after)})",
        ok,
    )


def parakeet(s: Session, args: argparse.Namespace, audio: bytes, judge: Callable[[bool], bool | None]) -> Row:
    name = "Parakeet (NeMo) on CUDA"
    if importlib.util.find_spec("nemo") is None:
        return Row(
            name, "loads, answers, unloads", "not measured: NeMo is not installed (asr-supervisor[parakeet])", None
        )
    if not args.parakeet:
        return Row(name, "loads, answers, unloads", "not measured: no --parakeet model given", None)
    before = vram_mb()
    load_s = s.load("parakeet")
    loaded = vram_mb()
    latency = statistics.median(s.transcribe("parakeet", audio) for _ in range(args.repeats))
    s.unload("parakeet")
    back = wait_vram(before, time.perf_counter(), 30)
    return Row(
        name,
        "loads, answers, unloads to the baseline",
        f"load {load_s:.1f} s, VRAM {mb(loaded)}, {latency:.2f} s a request, VRAM back {_s(back)} after the unload",
        judge(back is not None),
    )


def _s(seconds: float | None) -> str:
    return "never (timed out)" if seconds is None else f"{seconds:.1f} s"


def print_table(rows: list[Row], title: str) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for header in ("row", "goal", "result", "met"):
        table.add_column(header, overflow="fold")
    marks = {True: ("yes", "green"), False: ("NO", "bold red"), None: ("", "")}
    for row in rows:
        mark, style = marks[row.met]
        table.add_row(Text(row.name), Text(row.goal), Text(row.result), Text(mark, style=style))
    Console().print(table)


def markdown(rows: list[Row], title: str) -> str:
    lines = [f"{title}\n", "| row | goal | result | met |", "|---|---|---|---|"]
    marks = {True: "yes", False: "**no**", None: ""}
    lines += [f"| {r.name} | {r.goal} | {r.result} | {marks[r.met]} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/gpu-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="bundled", help="the Whisper model's source (default: the bundled tiny.en)")
    p.add_argument("--parakeet", default="", help="a Parakeet source for the NeMo row (a .nemo file or hub name)")
    p.add_argument("--clients", type=int, default=8, help="concurrent requests in the burst (8)")
    p.add_argument("--burst-seconds", type=float, default=30.0, help="audio in each burst request (30 s)")
    p.add_argument("--repeats", type=int, default=5, help="requests whose median is a latency (5)")
    p.add_argument("--ttl-a", type=int, default=6, help="gpu-a's TTL, seconds (6)")
    p.add_argument("--ttl-b", type=int, default=15, help="gpu-b's TTL, seconds (15)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: check this script where no GPU is")
    p.add_argument("--markdown", type=Path, help="also write the table as Markdown here (for docs/gpu.md)")
    args = p.parse_args(argv)
    if args.device == "cuda" and (missing := no_gpu_reason()) is not None:
        code, why = missing
        print(f"gpu-check: {why}", file=sys.stderr)
        return code
    listed = machine.gpus() or []
    where = f"{listed[0].name}, driver {listed[0].driver}" if listed else f"{platform.processor() or 'CPU'}, no GPU"
    title = f"gpu-check {datetime.date.today()}, {where}, model {args.model}, device {args.device}"
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        sup = start(Path(tmp), write_config(Path(tmp), args))
        try:
            rows = measure(Session(sup.url), args)
        except (httpx.HTTPError, RuntimeError) as exc:
            print(f"gpu-check: a step failed: {exc}\n{sup.log_tail()}", file=sys.stderr)
            return 1
        finally:
            sup.stop()
    print_table(rows, title)
    if args.markdown:
        args.markdown.write_text(markdown(rows, title))
    return 1 if any(row.met is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
