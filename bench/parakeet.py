"""Parakeet beside Whisper: `python -m bench.parakeet [--quick]`.

One supervisor serves three models on the CPU: the bundled Whisper tiny.en
(faster-whisper, int8), and the tiny random Parakeet the tests build (tests/tiny_parakeet.py:
a 2-layer FastConformer-TDT of 62k parameters) through NeMo and through onnx-asr. No real
Parakeet weights can be downloaded here, so the Parakeet rows measure what the runtime
costs — process start, imports, load, per-request overhead, memory before any weights —
not what parakeet-tdt-0.6b would: its 600M parameters add their own load time and
about 2.4 GB (float32) on top of the RSS shown.

For each model: the first request on a cold model (no worker: process, imports, load,
decode), the same with a warm spare of its backend waiting, the load itself (READY's
load_seconds), the worker's RSS once loaded and a spare's RSS, warm latency on the 9 s
clip, and throughput with 4 clients (audio seconds per wall-clock second). Writes
bench/results/parakeet.md and parakeet.json, then docs/performance.md (bench/page.py).

`--hour` instead sends each Parakeet model one hour of speech (the test clips cycled with
pauses) and reports the worker's peak RSS while it decodes it (VmHWM, reset once the
model is loaded): the windows keep the encoder's input, and so its memory, bounded.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import page
from bench.servers import MB, REPO, Supervisor, _spawn, free_port

sys.path.insert(0, str(REPO / "tests"))
import tiny_parakeet  # tests/ holds the builder, shared with the tests

ASSETS = REPO / "tests" / "assets"
RESULTS = REPO / "bench" / "results"
MODELS = {"tiny.en": "faster-whisper", "pk-onnx": "parakeet-onnx", "pk-nemo": "parakeet-nemo"}
CLIP = "weather.wav"  # 9 s of speech


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def start(
    tmp: Path, model: tiny_parakeet.TinyParakeet, spare: bool, extra: str = "", upload_mb: int = 200
) -> Supervisor:
    config = tmp / f"parakeet-{'spare' if spare else 'nospare'}.toml"
    config.write_text(
        f'[server]\ndefault_model = "tiny.en"\nmax_upload_mb = {upload_mb}\n'
        f'[defaults]\nttl = -1\ndevice = "cpu"\ncpu_threads = 2\n{extra}'
        '[models."tiny.en"]\nsource = "bundled"\ncompute_type = "int8"\n'
        f'[models.pk-onnx]\nbackend = "parakeet-onnx"\nsource = "{model.onnx}"\n'
        f'[models.pk-nemo]\nbackend = "parakeet-nemo"\nsource = "{model.nemo}"\n'
    )
    port, wyoming_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "supervisor", "--config", str(config), "--port", str(port)]
    cmd += ["--wyoming-port", str(wyoming_port), "--warm-spare" if spare else "--no-warm-spare"]
    service = _spawn(config.stem, cmd, tmp, port)
    server = Supervisor(service.name, service.proc, service.log_path, port, wyoming_port=wyoming_port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the supervisor did not start:\n{server.log_tail()}")


def transcribe(client: httpx.Client, name: str) -> float:
    started = time.perf_counter()
    response = client.post(
        "/v1/audio/transcriptions",
        files={"file": (CLIP, (ASSETS / CLIP).read_bytes())},
        data={"model": name},
        timeout=300,
    )
    response.raise_for_status()
    return time.perf_counter() - started


def health(client: httpx.Client) -> dict[str, Any]:
    return client.get("/health").json()  # type: ignore[no-any-return]


def unload(client: httpx.Client, name: str) -> None:
    client.post("/v1/model/unload", params={"model": name}, timeout=60).raise_for_status()
    wait(lambda: health(client)["models"][name]["state"] == "unloaded", f"{name} to unload")


def wait(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def cold(client: httpx.Client, name: str, reps: int, spare_backend: str | None) -> list[float]:
    """First-request latencies on an unloaded model; with a spare of `spare_backend` ready first."""
    times = []
    for _ in range(reps):
        unload(client, name)
        if spare_backend is not None:
            wait(lambda: spare_backend in health(client)["spare_pids"], f"a {spare_backend} spare", timeout=180)
        time.sleep(1.0)  # let the spare's import settle off the CPU (it is measured, not ordered)
        times.append(transcribe(client, name))
    return times


def throughput(url: str, name: str, clients: int, requests: int) -> float:
    """Audio seconds transcribed per wall-clock second, `clients` at once."""
    seconds = 9.0
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()

        def one(_: int) -> None:
            with httpx.Client(base_url=url, timeout=300) as client:
                transcribe(client, name)

        list(pool.map(one, range(requests)))
    return requests * seconds / (time.perf_counter() - started)


def hour(model: tiny_parakeet.TinyParakeet) -> None:
    """Each Parakeet model's worker: idle RSS, then its peak while it transcribes an hour."""
    from bench.memory import long_wav, status_kb

    with tempfile.TemporaryDirectory(prefix="bench-parakeet-hour-") as tmp_dir:
        tmp = Path(tmp_dir)
        wav = long_wav(tmp / "hour.wav", 3600).read_bytes()
        server = start(tmp, model, spare=False, extra="max_audio_seconds = 3700\n", upload_mb=2048)
        try:
            with httpx.Client(base_url=server.url, timeout=None) as client:
                for name in ("pk-onnx", "pk-nemo"):
                    transcribe(client, name)  # loaded
                    pid = health(client)["models"][name]["pid"]
                    idle = status_kb(pid, "VmRSS") / 1024
                    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
                    started = time.perf_counter()
                    response = client.post(
                        "/v1/audio/transcriptions", files={"file": ("hour.wav", wav)}, data={"model": name}
                    )
                    response.raise_for_status()
                    print(
                        f"| {name} | {len(wav) / MB:.0f} MB upload | idle {idle:.0f} MB | "
                        f"peak {status_kb(pid, 'VmHWM') / 1024:.0f} MB | {time.perf_counter() - started:.0f} s |",
                        flush=True,
                    )
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--hour", action="store_true", help="only the peak RSS over one hour of audio")
    args = parser.parse_args()
    if args.hour:
        hour(tiny_parakeet.cached())
        return
    reps, warm_reps, requests = (2, 4, 8) if args.quick else (5, 15, 24)
    model = tiny_parakeet.cached()
    rows: dict[str, dict[str, Any]] = {name: {"backend": backend} for name, backend in MODELS.items()}
    with tempfile.TemporaryDirectory(prefix="bench-parakeet-") as tmp_dir:
        tmp = Path(tmp_dir)
        server = start(tmp, model, spare=False)
        try:
            with httpx.Client(base_url=server.url, timeout=300) as client:
                for name in MODELS:
                    log(f"{name}: cold starts without a spare")
                    transcribe(client, name)  # the first ever also fills the OS's file cache
                    rows[name]["cold_s"] = cold(client, name, reps, None)
                    snapshot = health(client)["models"][name]
                    rows[name]["load_s"] = snapshot["load_seconds"]
                    log(f"{name}: warm latency and throughput")
                    rows[name]["warm_s"] = [transcribe(client, name) for _ in range(warm_reps)]
                    rows[name]["rss_mb"] = psutil.Process(snapshot["pid"]).memory_info().rss / MB
                    rows[name]["audio_s_per_s"] = throughput(server.url, name, 4, requests)
                    unload(client, name)  # one model at a time holds the CPU
        finally:
            server.stop()
        server = start(tmp, model, spare=True)
        try:
            with httpx.Client(base_url=server.url, timeout=300) as client:
                for name, backend in MODELS.items():
                    log(f"{name}: cold starts with a warm {backend} spare")
                    transcribe(client, name)
                    rows[name]["cold_spare_s"] = cold(client, name, reps, backend)
                    wait(lambda b=backend: b in health(client)["spare_pids"], f"a {backend} spare", timeout=180)
                    spare = health(client)["spare_pids"][backend]
                    rows[name]["spare_rss_mb"] = psutil.Process(spare).memory_info().rss / MB
                    unload(client, name)
        finally:
            server.stop()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parakeet.json").write_text(json.dumps(rows, indent=1))
    table = render(rows)
    mode = "quick" if args.quick else "full"
    (RESULTS / "parakeet.md").write_text(f"{page.stamp()} · CPU, cpu_threads 2 · {mode}\n\n{table}")
    print(table)
    page.update(RESULTS)


def render(rows: dict[str, dict[str, Any]]) -> str:
    med = statistics.median
    lines = [
        "| model (backend) | cold request | cold, spare ready | load | warm 9 s clip | 4 clients | worker RSS | spare RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} ({row['backend']}) | {med(row['cold_s']):.2f} s | {med(row['cold_spare_s']):.2f} s "
            f"| {row['load_s']:.2f} s | {med(row['warm_s']):.3f} s | {row['audio_s_per_s']:.0f}x real time "
            f"| {row['rss_mb']:.0f} MB | {row['spare_rss_mb']:.0f} MB |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
