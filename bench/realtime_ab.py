"""`python bench/realtime_ab.py PORT REPS`: the Realtime endpoint against the native live WebSocket on one running server.

Speech end (the clip's last voiced 20 ms) -> final / completed, start -> first partial / delta, and the gap between
them; the clips paced in real time, the two endpoints alternating. Not yet part of `python -m bench --live`.
"""

import asyncio
import base64
import json
import statistics
import sys
import time
import wave
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import resample_pcm16

PORT = int(sys.argv[1])
CLIPS = ["weather", "fox", "short"]
REPS = int(sys.argv[2])


def pcm(name, rate):
    with wave.open(str(ROOT / "tests" / "assets" / f"{name}.wav")) as w:
        return resample_pcm16(w.readframes(w.getnframes()), w.getframerate(), rate)


def voiced_end(p, rate):
    a = np.frombuffer(p, np.int16).astype(np.float32)
    f = rate // 50
    e = [np.sqrt(np.mean(a[i : i + f] ** 2)) for i in range(0, len(a) - f, f)]
    last = max(i for i, v in enumerate(e) if v > 300)
    return (last + 1) * f / rate


async def paced(send, p, rate, extra_silence=2.0):
    frame = rate // 10 * 2
    data = p + b"\0\0" * int(rate * extra_silence)
    t0 = time.monotonic()
    for i in range(0, len(data), frame):
        await asyncio.sleep(max(0, t0 + (i + frame) / 2 / rate - time.monotonic()))
        await send(data[i : i + frame])
    return t0


async def native(name):
    p = pcm(name, 16000)
    end = voiced_end(p, 16000)
    async with connect(f"ws://127.0.0.1:{PORT}/v1/audio/transcriptions/stream?sample_rate=16000") as ws:
        json.loads(await ws.recv())
        partial_times = []

        async def reader():
            async for m in ws:
                e = json.loads(m)
                now = time.monotonic()
                if e["type"] == "partial":
                    partial_times.append(now)
                if e["type"] == "final":
                    return now

        r = asyncio.create_task(reader())
        t0 = await paced(ws.send, p, 16000)
        done = await asyncio.wait_for(r, 30)
    return done - (t0 + end), (partial_times[0] - t0) if partial_times else None, np.diff(partial_times).tolist()


async def realtime(name):
    p = pcm(name, 24000)
    end = voiced_end(p, 24000)
    async with connect(f"ws://127.0.0.1:{PORT}/v1/realtime?intent=transcription") as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "transcription",
                        "audio": {
                            "input": {
                                "format": {"type": "audio/pcm", "rate": 24000},
                                "transcription": {"model": "tiny.en", "language": "en"},
                                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                            }
                        },
                    },
                }
            )
        )
        deltas = []

        async def reader():
            async for m in ws:
                e = json.loads(m)
                now = time.monotonic()
                if e["type"].endswith("transcription.delta"):
                    deltas.append(now)
                if e["type"].endswith("transcription.completed"):
                    return now

        r = asyncio.create_task(reader())
        t0 = await paced(
            lambda b: ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b).decode()})),
            p,
            24000,
        )
        done = await asyncio.wait_for(r, 30)
    return done - (t0 + end), (deltas[0] - t0) if deltas else None, np.diff(deltas).tolist()


async def main():
    res = {"native WebSocket": [], "Realtime": []}
    for _ in range(REPS):
        for name in CLIPS:
            res["native WebSocket"].append(await native(name))
            res["Realtime"].append(await realtime(name))
    for k, v in res.items():
        lat = sorted(x[0] for x in v)
        first = [x[1] for x in v if x[1] is not None]
        gaps = [g for x in v for g in x[2]]
        q = lambda a, p: a[min(len(a) - 1, int(p * len(a)))]
        print(
            f"{k}: n={len(lat)} speech end->final p50 {statistics.median(lat):.2f}s p90 {q(lat, 0.9):.2f}s | first partial/delta p50 {statistics.median(first):.2f}s | gap between partials/deltas p50 {statistics.median(gaps) if gaps else float('nan'):.2f}s"
        )


asyncio.run(main())
