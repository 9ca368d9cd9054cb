"""The live benchmark's clips: multi-sentence espeak-ng speech with pauses, and where each sentence is voiced.

`bench/clips/<n>_<voice>_<speed>.txt` holds one sentence per line (the reference text);
`<same name>.flac` is those sentences spoken by espeak-ng with that voice and speed,
16 kHz mono 16-bit, with 0.4-1.2 s pauses between them and a faint noise floor (as a
microphone has). `scripts/make-live-clips` regenerates the FLAC files from the texts
(`python -m bench.live_clips --make`): it needs Debian's espeak-ng and sox; the
benchmark itself reads the FLAC with PyAV (a faster-whisper dependency).

Where each sentence starts and stops being voiced comes from the audio itself: 10 ms
frames above an energy threshold are voiced, and the n - 1 widest gaps between voiced
frames are the sentence boundaries (a comma's pause inside a sentence is shorter than
every pause between sentences; `--make` checks that).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import wave
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLIPS = Path(__file__).resolve().parent / "clips"
RATE = 16000
FRAME = RATE // 100  # 10 ms: the energy detector's resolution
VOICED_DBFS = -45.0  # a 10 ms frame whose RMS is above this is speech
PAUSE_RANGE = (0.4, 1.2)  # seconds of pause between sentences (uniform, seeded by the clip's name)
LEAD_SECONDS = 0.5  # silence before the first sentence
TAIL_SECONDS = 1.0  # and after the last
NOISE_RMS = 12.0  # of 32767: about -69 dBFS, far below VOICED_DBFS


@dataclass(frozen=True)
class LiveClip:
    name: str  # the file stem, e.g. "1_en-us_160"
    voice: str
    speed: int  # espeak-ng words per minute
    pcm: bytes  # 16-bit little-endian mono at RATE
    sentences: list[str]  # the reference text, one sentence per line of the .txt
    spans: list[tuple[int, int]]  # per sentence: first voiced sample, one past the last voiced sample

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / RATE

    @property
    def reference(self) -> str:
        return " ".join(self.sentences)

    def flac(self) -> bytes:
        return (CLIPS / f"{self.name}.flac").read_bytes()


def _parse_name(stem: str) -> tuple[str, int]:
    _n, voice, speed = stem.split("_")
    return voice, int(speed)


def voiced_frames(samples: np.ndarray) -> np.ndarray:
    """A bool per 10 ms frame: is its RMS above VOICED_DBFS?"""
    n = len(samples) // FRAME
    frames = samples[: n * FRAME].astype(np.float64).reshape(n, FRAME)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return rms > 32768 * 10 ** (VOICED_DBFS / 20)


def _runs(voiced: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame index runs of True."""
    edges = np.diff(np.concatenate(([0], voiced.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def sentence_spans(samples: np.ndarray, sentences: int) -> tuple[list[tuple[int, int]], float, float]:
    """Voiced [start, end) sample spans, one per sentence: the `sentences - 1` widest gaps split them.

    Also returns the narrowest gap between sentences and the widest gap inside one (seconds).
    """
    runs = _runs(voiced_frames(samples))
    if len(runs) < sentences:
        raise ValueError(f"{len(runs)} voiced stretches for {sentences} sentences")
    gaps = [runs[i + 1][0] - runs[i][1] for i in range(len(runs) - 1)]
    cuts = sorted(sorted(range(len(gaps)), key=lambda i: gaps[i], reverse=True)[: sentences - 1])
    spans, first = [], 0
    for cut in [*cuts, len(runs) - 1]:
        spans.append((runs[first][0] * FRAME, runs[cut][1] * FRAME))
        first = cut + 1
    between = min((gaps[i] for i in cuts), default=0) / 100
    inside = max((g for i, g in enumerate(gaps) if i not in cuts), default=0) / 100
    return spans, between, inside


def decode_flac(path: Path) -> bytes:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        parts = [
            out.to_ndarray().reshape(-1) for frame in container.decode(stream) for out in resampler.resample(frame)
        ]
        parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(parts).astype("<i2").tobytes()


def load_live_clips(names: list[str] | None = None) -> list[LiveClip]:
    """The committed clips (all, or those whose stems are in `names`), in file order."""
    clips = []
    for txt in sorted(CLIPS.glob("*.txt")):
        if names is not None and txt.stem not in names:
            continue
        sentences = [line.strip() for line in txt.read_text().splitlines() if line.strip()]
        pcm = decode_flac(txt.with_suffix(".flac"))
        spans, _between, _inside = sentence_spans(np.frombuffer(pcm, dtype="<i2"), len(sentences))
        voice, speed = _parse_name(txt.stem)
        clips.append(LiveClip(txt.stem, voice, speed, pcm, sentences, spans))
    if not clips:
        raise RuntimeError(f"no live clips in {CLIPS}: run scripts/make-live-clips")
    return clips


# -- making them ------------------------------------------------------------------------


def _speak(text: str, voice: str, speed: int, tmp: Path) -> np.ndarray:
    raw, wav = tmp / "raw.wav", tmp / "16k.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(wav)], check=True)
    with wave.open(str(wav), "rb") as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    loud = np.flatnonzero(np.abs(samples) > 16)  # espeak's own lead-in and tail are digital silence
    return samples[loud[0] : loud[-1] + 1]


def make(txt: Path) -> str:
    """Speak `txt`'s sentences into `<stem>.flac`; returns a one-line summary."""
    voice, speed = _parse_name(txt.stem)
    sentences = [line.strip() for line in txt.read_text().splitlines() if line.strip()]
    rng = np.random.default_rng(zlib.crc32(txt.stem.encode()))
    parts = [np.zeros(int(LEAD_SECONDS * RATE), dtype=np.float64)]
    with tempfile.TemporaryDirectory(prefix="live-clips-") as tmp_name:
        for i, sentence in enumerate(sentences):
            parts.append(_speak(sentence, voice, speed, Path(tmp_name)).astype(np.float64))
            pause = TAIL_SECONDS if i == len(sentences) - 1 else rng.uniform(*PAUSE_RANGE)
            parts.append(np.zeros(int(round(pause, 2) * RATE)))
        audio = np.concatenate(parts) + rng.normal(0.0, NOISE_RMS, sum(len(p) for p in parts))
        samples = np.clip(np.round(audio), -32768, 32767).astype("<i2")
        wav = Path(tmp_name) / "clip.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(samples.tobytes())
        flac = txt.with_suffix(".flac")
        subprocess.run(["sox", str(wav), "-C", "8", str(flac)], check=True)
    _spans, between, inside = sentence_spans(np.frombuffer(decode_flac(flac), dtype="<i2"), len(sentences))
    if between <= inside:
        raise RuntimeError(f"{txt.name}: a pause inside a sentence ({inside:.2f} s) >= one between ({between:.2f} s)")
    return (
        f"{flac.name}: {len(samples) / RATE:.1f} s, {len(sentences)} sentences, {flac.stat().st_size / 1e6:.2f} MB, "
        f"pauses between sentences >= {between:.2f} s, inside <= {inside:.2f} s"
    )


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.live_clips", description="the live benchmark's clips")
    p.add_argument("--make", action="store_true", help="regenerate bench/clips/*.flac from the .txt files")
    args = p.parse_args()
    if args.make:
        for txt in sorted(CLIPS.glob("*.txt")):
            print(make(txt), flush=True)
    for clip in load_live_clips():
        lengths = [(b - a) / RATE for a, b in clip.spans]
        print(
            f"{clip.name}: {clip.seconds:.1f} s, {len(clip.sentences)} sentences, "
            f"voiced {min(lengths):.1f}-{max(lengths):.1f} s each"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
