"""Audio bombs: small uploads that decode to hours, headers that lie, and long silence.

A 21 KB WAV at 1 Hz holds 3 h; decoded whole to 16 kHz it once took a worker to 9.9 GB.
Each model refuses audio over its `max_audio_seconds` with 413 `audio_too_long`, from the
container's header before decoding or from the samples while decoding; what it accepts
is decoded in memory bounded by its 16 kHz samples; and silence gives no words.
"""

from __future__ import annotations

import io
import itertools
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import ASSETS, Server, claiming, key_words_found, start_server, words

CONFIG = """
[server]
default_model = "tiny.en"
[defaults]
ttl = -1
[models."tiny.en"]
source = "bundled"
max_audio_seconds = 600
[models."five-seconds"]
source = "bundled"
max_audio_seconds = 5
"""

FOX_KEYS = ["quick", "brown", "fox", "over", "lazy"]
WEATHER_KEYS = ["morning", "weather", "sunny", "warm", "breeze", "garden", "dinner"]
MB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("bombs"), CONFIG)
    yield server
    server.stop()


def wav(rate: int, samples: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()


def flac(rate: int, samples: np.ndarray) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        for i in range(0, samples.size, 4096):
            frame = av.AudioFrame.from_ndarray(samples[i : i + 4096].reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def clip(name: str) -> np.ndarray:
    with wave.open(str(ASSETS / f"{name}.wav"), "rb") as w:
        assert w.getframerate() == 16000
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def post(server: Server, data: bytes, name: str = "upload.wav", **form: str):  # type: ignore[no-untyped-def]
    return server.client.post("/v1/audio/transcriptions", files={"file": (name, data)}, data=form)


def too_long(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "audio_too_long" and error["param"] == "file", error
    return str(error["message"])


def worker_pid(server: Server, model: str = "tiny.en") -> int:
    pid = server.model(model)["pid"]
    assert pid
    return int(pid)


def reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the kernel's VmHWM := VmRSS now


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_a_small_file_that_holds_hours_is_refused_before_it_is_decoded(server: Server) -> None:
    assert post(server, (ASSETS / "fox.wav").read_bytes()).status_code == 200  # the model is loaded
    pid = worker_pid(server)
    hours = 3 * 3600
    bombs = {
        "bomb.wav": wav(1, np.zeros(hours, dtype=np.int16)),  # 21 KB
        "bomb.flac": flac(1, np.zeros(hours, dtype=np.int16)),  # 9 KB
    }
    for name, data in bombs.items():
        assert len(data) < 25_000, (name, len(data))
        reset_peak_rss(pid)
        before = rss_mb(pid)
        started = time.monotonic()
        message = too_long(post(server, data, name))
        assert time.monotonic() - started < 5, f"{name}: refused, but only after {time.monotonic() - started:.1f} s"
        assert "10800 s" in message and "600 s" in message and "max_audio_seconds" in message, message
        assert peak_rss_mb(pid) - before < 50, f"{name}: the worker grew by {peak_rss_mb(pid) - before:.0f} MB"
    # The same worker answers the next request, and correctly.
    response = post(server, (ASSETS / "fox.wav").read_bytes())
    assert response.status_code == 200 and len(key_words_found(response.json()["text"], FOX_KEYS)) >= 4
    assert worker_pid(server) == pid


def test_a_header_that_understates_is_caught_while_decoding(server: Server) -> None:
    # 700 s of (noisy) audio at 1 kHz, in a FLAC whose header says it holds one second.
    noise = (np.random.default_rng(0).standard_normal(700_000) * 3000).astype(np.int16)
    liar = claiming(flac(1000, noise), 1000)
    with av.open(io.BytesIO(liar)) as container:  # what the header says, as FFmpeg reads it
        assert container.duration == 1_000_000
    started = time.monotonic()
    message = too_long(post(server, liar, "liar.flac"))
    assert time.monotonic() - started < 10
    assert "longer than" in message and "600 s" in message, message

    # A WAV header that overstates is measured by its data: FFmpeg bounds it by the file size.
    fox = bytearray(wav(16000, clip("fox")))
    fox[4:8] = fox[40:44] = (16000 * 2 * 3600 * 5).to_bytes(4, "little")  # "5 hours"
    response = post(server, bytes(fox), "overstated.wav")
    assert response.status_code == 200, response.text
    assert len(key_words_found(response.json()["text"], FOX_KEYS)) >= 4


def test_the_limit_is_each_models_own(server: Server) -> None:
    weather = (ASSETS / "weather.wav").read_bytes()  # 8.9 s
    message = too_long(post(server, weather, model="five-seconds"))
    assert message.startswith("8.9") and "limit of 5 s" in message, message
    response = post(server, (ASSETS / "fox.wav").read_bytes(), model="five-seconds")  # 3.4 s
    assert response.status_code == 200, response.text
    assert len(key_words_found(response.json()["text"], FOX_KEYS)) >= 4
    response = post(server, weather, model="tiny.en")
    assert response.status_code == 200, response.text
    assert len(key_words_found(response.json()["text"], WEATHER_KEYS)) >= 6


def test_an_odd_rate_decodes_in_memory_bounded_by_its_samples(server: Server) -> None:
    # 590 s at 1 Hz: 590 input samples become 9.4 M (38 MB of float32), under the 600 s limit.
    seconds = 590
    data = wav(1, np.zeros(seconds, dtype=np.int16))
    assert post(server, (ASSETS / "short.wav").read_bytes()).status_code == 200
    pid = worker_pid(server)
    reset_peak_rss(pid)
    before = rss_mb(pid)
    response = post(server, data, "one-hertz.wav", response_format="verbose_json")
    assert response.status_code == 200, response.text
    assert response.json()["duration"] == pytest.approx(seconds, abs=0.1)
    samples_mb = seconds * 16000 * 4 / MB
    grown = peak_rss_mb(pid) - before
    assert grown < samples_mb + 60, f"decoding {samples_mb:.0f} MB of samples took the worker {grown:.0f} MB more"


@pytest.mark.parametrize("level_dbfs", [None, -60.0], ids=["digital silence", "low noise"])
def test_minutes_of_silence_give_no_words(server: Server, level_dbfs: float | None) -> None:
    seconds = 300
    samples = np.zeros(seconds * 16000)
    if level_dbfs is not None:
        samples = np.random.default_rng(1).standard_normal(samples.size) * 32768 * 10 ** (level_dbfs / 20)
    response = post(server, wav(16000, samples), "silence.wav", response_format="verbose_json")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"].strip() == "", body["text"][:200]  # not "You You You", not ". . . ."
    assert body["duration"] == pytest.approx(seconds, abs=0.1)


def test_speech_after_a_long_silence_is_transcribed_at_its_own_time(server: Server) -> None:
    fox, weather = clip("fox"), clip("weather")
    gap = np.zeros(60 * 16000, dtype=np.int16)
    data = wav(16000, np.concatenate([fox, gap, weather]))
    response = post(server, data, "gap.wav", response_format="verbose_json")
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(key_words_found(body["text"], FOX_KEYS)) >= 4 and len(key_words_found(body["text"], WEATHER_KEYS)) >= 6
    weather_starts = (fox.size + gap.size) / 16000
    later = [s for s in body["segments"] if "morning" in s["text"].lower()]
    assert later and abs(later[0]["start"] - weather_starts) < 1.5, body["segments"]
    assert all("you" not in words(s["text"]) for s in body["segments"]), body["text"]


def test_a_quiet_recording_is_not_taken_for_silence(server: Server) -> None:
    # Speech recorded 40 dB too low (its loudest moments near -54 dBFS), between stretches of
    # a quiet room's hiss as loud as itself: Whisper reads it, so it must reach Whisper.
    rng = np.random.default_rng(2)
    hiss = rng.standard_normal(20 * 16000) * 32768 * 10 ** (-70 / 20)
    quiet = clip("weather") * 10 ** (-40 / 20)
    data = wav(16000, np.concatenate([hiss, quiet, hiss]))
    response = post(server, data, "quiet.wav")
    assert response.status_code == 200, response.text
    text = response.json()["text"]
    assert len(key_words_found(text, WEATHER_KEYS)) >= 6, text


def test_long_audio_is_read_in_windows_cut_in_its_pauses() -> None:
    """The plan behind the memory bound: no window over 2 minutes, none cut inside a word."""
    from worker.audio.pieces import FRAME, WINDOW_SECONDS, loudness, plan

    pause = np.zeros(8000, dtype=np.int16)
    cycle = np.concatenate([clip("weather"), pause, clip("fox"), pause, clip("short"), pause])
    audio = np.tile(cycle, 45).astype(np.float32) / 32768  # 11 minutes of speech
    windows = plan(audio)
    assert len(windows) >= 6 and windows[0].start == 0 and windows[-1].end == audio.size
    level = loudness(audio)
    for before, after in itertools.pairwise(windows):
        assert before.end == after.start  # nothing skipped: there is no long silence here
        assert level[before.end // FRAME] < -55, f"cut at {before.end / 16000:.2f} s is not in a pause"
    assert all(w.end - w.start <= WINDOW_SECONDS * 16000 and w.whole for w in windows)
    assert plan(audio[: 60 * 16000])[0].whole and len(plan(audio[: 60 * 16000])) == 1


def test_a_stream_is_read_in_the_sections_the_whole_audio_has() -> None:
    """An upload arrives in 10 s blocks and is cut as it arrives, one window held at a time:
    the same stretches (to the 0.1 s frame) as planning the whole array, each with the 15 s
    before it as context, and the long silence between left out."""
    from worker.audio.pieces import CONTEXT_SECONDS, WINDOW_SECONDS, plan, sections

    pause = np.zeros(8000, dtype=np.int16)
    cycle = np.concatenate([clip("weather"), pause, clip("fox"), pause, clip("short"), pause])
    speech = np.tile(cycle, 12).astype(np.float32) / 32768  # 3 minutes
    audio = np.concatenate([speech, np.zeros(30 * 16000, dtype=np.float32), speech])
    whole = [(w.start + round(a * 16000), w.start + round(b * 16000)) for w in plan(audio) for a, b in w.clips]
    blocks = [audio[i : i + 160_000] for i in range(0, audio.size, 160_000)]
    streamed = list(sections(blocks))
    assert len(streamed) == len(whole)
    for section, (start, end) in zip(streamed, whole, strict=True):
        assert abs(section.start - start) <= 1600 and abs(section.end - end) <= 1600
        assert section.samples.size <= WINDOW_SECONDS * 16000
        assert np.array_equal(section.samples, audio[section.start : section.end])
        before = audio[max(0, section.start - CONTEXT_SECONDS * 16000) : section.start]
        assert np.array_equal(section.context, before)
    gap = (speech.size + 16000, speech.size + 29 * 16000)
    assert not any(s.start < gap[1] and s.end > gap[0] for s in streamed), "the silence was decoded"
