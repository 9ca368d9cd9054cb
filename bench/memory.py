"""The worker's peak memory for one long upload (docs/long-recordings.md, "Memory").

    .venv/bin/python -m bench.memory --hours 1 3           # about 5 and 15 minutes on 2 cores
    .venv/bin/python -m bench.memory --hours 3 --abort-after 120 --rev HEAD~3
    .venv/bin/python -m bench.memory --hours 1 --batch-size 1     # the batch's share of the peak
    .venv/bin/python -m bench.memory --hours 3 --silence          # 3 h of silence as a FLAC of a few KB

A supervisor serving the bundled tiny.en (CPU, int8, beam 5, temperature 0) gets one WAV
of real speech, the test clips cycled with pauses for `hours`. The figure is the worker's
own high-water mark (VmHWM in /proc/PID/status), reset through /proc/PID/clear_refs once
the model is loaded, its copies too (they load with or without the upload): exact, with
no sampling to miss a short peak. After the answer the worker is left idle for `IDLE_S`
and its RSS read again: what it keeps between requests. `--abort-after` abandons the
request after that many seconds (the peak of an old version, which reads its whole
feature matrix at the start, is reached early). Writes bench/results/memory.md and
memory.json, then docs/performance.md (bench/page.py).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx

from bench import page
from bench.__main__ import export_rev, wait_lanes_open
from bench.clips import ASSETS, RATE
from bench.servers import MB, REPO, Supervisor, _spawn, free_port

PAUSE = b"\0\0" * (RATE // 2)
#: How long the worker is left idle before its RSS is read again: past its heap trim
#: (worker.engine.heap.IDLE_BEFORE_TRIM_S, 2 s) and the next heartbeat.
IDLE_S = 4.0


def long_wav(path: Path, seconds: float) -> Path:
    """Speech for `seconds`: weather, fox and short with half a second after each, over and over."""
    parts = []
    for name in ("weather", "fox", "short"):
        with wave.open(str(ASSETS / f"{name}.wav"), "rb") as src:
            parts.append(src.readframes(src.getnframes()) + PAUSE)
    cycle = b"".join(parts)
    with wave.open(str(path), "wb") as dst:
        dst.setnchannels(1)
        dst.setsampwidth(2)
        dst.setframerate(RATE)
        written = 0
        while written < seconds * RATE * 2:
            dst.writeframes(cycle)
            written += len(cycle)
    return path


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def silent_flac(path: Path, seconds: float) -> Path:
    """`seconds` of digital silence at 8 kHz as FLAC: a few KB that decode to hours."""
    import av
    import numpy as np

    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=8000, layout="mono")
        block = np.zeros((1, 8000 * 60), dtype=np.int16)
        for _ in range(round(seconds / 60)):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate = 8000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def start(tmp: Path, code: Path, max_seconds: float, batch_size: str = '"auto"') -> Supervisor:
    config = tmp / "memory.toml"
    config.write_text(
        '[server]\ndefault_model = "tiny.en"\nwarm_spare = false\nmax_upload_mb = 2048\n\n'
        '[defaults]\nttl = -1\ndevice = "cpu"\ncompute_type = "int8"\nbeam_size = 5\n\n'
        f'[models."tiny.en"]\nsource = "bundled"\nmax_audio_seconds = {max_seconds}\nbatch_size = {batch_size}\n'
    )
    port = free_port()
    cmd = [sys.executable, "-m", "supervisor", "--config", str(config), "--port", str(port)]
    cmd += ["--wyoming-port", str(free_port()), "--log-level", "warning"]
    service = _spawn("supervisor", cmd, tmp, port, {"PYTHONPATH": str(code)})
    return Supervisor(service.name, service.proc, service.log_path, port)


def measure(
    tmp: Path, code: Path, hours: float, abort_after: float | None, batch_size: str = '"auto"', silence: bool = False
) -> dict[str, object]:
    if silence:
        wav = silent_flac(tmp / f"silence-{hours}h.flac", hours * 3600)
    else:
        wav = long_wav(tmp / f"speech-{hours}h.wav", hours * 3600)
    sup = start(tmp, code, max(hours * 3600 + 60, 60), batch_size)
    try:
        with httpx.Client(base_url=sup.url, timeout=None) as client:
            deadline = time.monotonic() + 60
            while True:
                sup.check_alive()
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no /health:\n{sup.log_tail()}")
                time.sleep(0.1)
            files = {"file": ("short.wav", (ASSETS / "short.wav").read_bytes())}
            client.post("/v1/audio/transcriptions", files=files).raise_for_status()  # loads the model
            model = client.get("/health").json()["models"]["tiny.en"]
            wait_lanes_open(client, model)  # its copies are part of the loaded worker
            pid = model["pid"]
            idle_kb = status_kb(pid, "VmRSS")
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            data = wav.read_bytes()

            def post() -> httpx.Response:
                with httpx.Client(base_url=sup.url, timeout=None) as own:
                    files = {"file": (wav.name, data)}
                    return own.post("/v1/audio/transcriptions", files=files, data={"temperature": "0"})

            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pending = pool.submit(post)
                try:
                    response = pending.result(timeout=abort_after)
                    outcome = f"{response.status_code}, {len(response.json().get('text', ''))} characters"
                except concurrent.futures.TimeoutError:
                    outcome = f"abandoned after {abort_after:.0f} s"
                    peak_kb = status_kb(pid, "VmHWM")
                    sup.stop()
                    pending.exception()  # the connection fails once the server is gone
                else:
                    peak_kb = status_kb(pid, "VmHWM")
            # What the worker keeps once idle: the batch's memory goes back after a quiet
            # moment (worker.engine.heap), or stays until the model unloads (older code).
            after_kb = None
            if sup.proc.poll() is None:
                time.sleep(IDLE_S)
                after_kb = status_kb(pid, "VmRSS")
            return {
                "audio": "silence (FLAC)" if silence else "speech (WAV)",
                "batch_size": batch_size,
                "hours": hours,
                "upload_mb": round(len(data) / MB),
                "samples_mb": round(hours * 3600 * RATE * 4 / MB),
                "idle_rss_mb": round(idle_kb / 1024),
                "peak_rss_mb": round(peak_kb / 1024),
                "idle_after_mb": None if after_kb is None else round(after_kb / 1024),
                "seconds": round(time.monotonic() - started),
                "outcome": outcome,
            }
    finally:
        sup.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--abort-after", type=float, default=None, help="abandon each request after S seconds")
    parser.add_argument("--rev", default=None, help="measure supervisor/ and worker/ as committed at REV")
    parser.add_argument("--batch-size", default="auto", help='the model\'s batch_size ("auto" or a number)')
    parser.add_argument("--silence", action="store_true", help="digital silence as FLAC instead of speech as WAV")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="asr-memory-") as name:
        tmp = Path(name)
        code = REPO
        commit = None
        if args.rev:
            code = tmp / "code"
            commit = export_rev(args.rev, code)
            print(f"code at {commit}", flush=True)
        for hours in args.hours:
            batch = args.batch_size if args.batch_size.isdigit() else '"auto"'
            rows.append(measure(tmp, code, hours, args.abort_after, batch, args.silence))
            print(rows[-1], flush=True)
    results = page.RESULTS
    results.mkdir(exist_ok=True)
    (results / "memory.json").write_text(json.dumps(rows, indent=1) + "\n")
    (results / "memory.md").write_text(render(rows, page.stamp(commit)))
    page.update(results)
    return 0


def render(rows: list[dict[str, object]], stamp: str) -> str:
    """The table docs/performance.md shows: the worker's peak over its idle RSS, per upload."""
    lines = [
        "Peak worker memory for one upload, tiny.en, CPU int8, beam 5, temperature 0",
        "",
        stamp,
        "",
        "| audio | upload | `batch_size` | idle worker | peak RSS | over idle | idle after | time | outcome |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        idle, peak = int(str(row["idle_rss_mb"])), int(str(row["peak_rss_mb"]))
        after = "" if row.get("idle_after_mb") is None else f"{row['idle_after_mb']} MB"
        lines.append(
            f"| {row['hours']:g} h of {row['audio']} | {row['upload_mb']} MB | `{row['batch_size']}` | {idle} MB "
            f"| {peak} MB | +{peak - idle} MB | {after} | {row['seconds']} s | {row['outcome']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
