"""Parakeet through NeMo and through onnx-asr, side by side with Whisper, in the real server.

No Parakeet weights can be downloaded here, so the model is tiny and random (see
tests/tiny_parakeet.py): its words are nonsense. What is asserted is the pipeline: both
backends load in their own worker processes, every interface and format serves them,
the two libraries give the same words for the same weights, timings cover the audio,
and a NeMo worker's gigabytes leave with its process.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import tiny_parakeet
from conftest import ASSETS, Server, make_long_clip, start_server, wait_for, worker_pids
from hub_standin import HubStandIn
from prometheus_client.parser import text_string_to_metric_families
from test_asrctl import asrctl
from test_downloads import hub_env
from test_live import pcm, run, talk
from test_wyoming import ha_transcribe, transcript
from wyoming.asr import Transcribe
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

if (why := tiny_parakeet.stack_missing()) is not None:
    if os.environ.get(tiny_parakeet.SKIP_ENV) == "1":
        pytest.skip(f"{why} ({tiny_parakeet.SKIP_ENV}=1)", allow_module_level=True)
    raise RuntimeError(f"{why}; or set {tiny_parakeet.SKIP_ENV}=1 to skip the Parakeet tests")

MODELS = ("pk-nemo", "pk-onnx")


@pytest.fixture(scope="module")
def model() -> tiny_parakeet.TinyParakeet:
    return tiny_parakeet.cached()


def side_by_side(model: tiny_parakeet.TinyParakeet, parakeet_ttl: int = -1) -> str:
    return f"""
    [server]
    default_model = "tiny.en"
    [defaults]
    ttl = -1
    [models."tiny.en"]
    source = "bundled"
    [models.pk-nemo]
    backend = "parakeet-nemo"
    source = "{model.nemo}"
    ttl = {parakeet_ttl}
    [models.pk-onnx]
    backend = "parakeet-onnx"
    source = "{model.onnx}"
    ttl = {parakeet_ttl}
    """


@pytest.fixture(scope="module")
def server(model: tiny_parakeet.TinyParakeet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("parakeet"), side_by_side(model))
    yield server
    server.stop()


def transcribe(server: Server, model: str, clip: str = "weather.wav", **form: str | list[str]) -> httpx.Response:
    path = ASSETS / clip
    return server.client.post(
        "/v1/audio/transcriptions",
        files={"file": (path.name, path.read_bytes())},
        data={"model": model, **form},
        timeout=120,
    )


def clip_seconds(name: str) -> float:
    with wave.open(str(ASSETS / name), "rb") as clip:
        return clip.getnframes() / clip.getframerate()


def test_both_backends_transcribe_with_the_same_words_and_timings_inside_the_audio(server: Server) -> None:
    results = {}
    for name in MODELS:
        response = transcribe(
            server, name, response_format="verbose_json", **{"timestamp_granularities[]": ["word", "segment"]}
        )
        assert response.status_code == 200, response.text
        results[name] = response.json()
    seconds = clip_seconds("weather.wav")
    for name, result in results.items():
        assert result["duration"] == pytest.approx(seconds, abs=0.01), name
        assert result["segments"] and result["text"], (name, result)
        ends = [0.0] + [s["end"] for s in result["segments"]]
        for segment in result["segments"]:
            assert 0 <= segment["start"] <= segment["end"] <= seconds + 0.25, (name, segment)
        assert ends == sorted(ends), name  # segments in order
        assert result["words"] and all(0 <= w["start"] <= w["end"] <= seconds + 0.25 for w in result["words"])
        assert "".join(w["word"] for w in result["words"]).strip() == result["text"]
    # The same weights through NeMo (torch) and onnx-asr (onnxruntime): the same words.
    assert results["pk-nemo"]["text"] == results["pk-onnx"]["text"]
    # Each is its own worker process, beside nothing of Whisper's (not loaded yet).
    health = server.health()["models"]
    pids = {name: health[name]["pid"] for name in MODELS}
    assert all(pids.values()) and len(set(pids.values())) == 2 and health["tiny.en"]["state"] == "unloaded"
    assert {health[n]["backend"] for n in MODELS} == {"parakeet-nemo", "parakeet-onnx"}


def test_every_openai_format_and_sse_serve_parakeet(server: Server) -> None:
    for name in MODELS:
        text = transcribe(server, name).json()["text"]
        srt = transcribe(server, name, response_format="srt").text
        assert re.match(r"1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n\S", srt), srt
        vtt = transcribe(server, name, response_format="vtt").text
        assert vtt.startswith("WEBVTT") and "-->" in vtt
        assert transcribe(server, name, response_format="text").text.strip() == text
        events = []
        with server.client.stream(
            "POST",
            "/v1/audio/transcriptions",
            files={"file": ("weather.wav", (ASSETS / "weather.wav").read_bytes())},
            data={"model": name, "stream": "true"},
            timeout=120,
        ) as response:
            assert response.status_code == 200
            events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
        assert events[-1] == {"type": "transcript.text.done", "text": text}
        assert "".join(e["delta"] for e in events[:-1]).strip() == text


def test_translation_is_refused_with_a_clear_400(server: Server) -> None:
    path = ASSETS / "fox.wav"
    for name in MODELS:
        response = server.client.post(
            "/v1/audio/translations", files={"file": (path.name, path.read_bytes())}, data={"model": name}
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert "cannot translate" in error["message"] and "parakeet" in error["message"]


def test_wyoming_serves_parakeet_models(server: Server) -> None:
    async def describe() -> Info:
        async with AsyncTcpClient("127.0.0.1", server.wyoming_port) as client:
            await client.write_event(Describe().event())
            event = await asyncio.wait_for(client.read_event(), 5)
        assert event is not None
        return Info.from_event(event)

    [program] = asyncio.run(describe()).asr
    assert {"tiny.en", *MODELS} <= {m.name for m in program.models}
    with wave.open(str(ASSETS / "weather.wav"), "rb") as clip:
        audio, rate = clip.readframes(clip.getnframes()), clip.getframerate()
    for name in MODELS:
        events = asyncio.run(ha_transcribe(server.wyoming_port, audio, rate, transcribe=Transcribe(name=name)))
        assert transcript(events) == transcribe(server, name).json()["text"]


def test_live_websocket_sessions_run_on_parakeet(server: Server) -> None:
    """The live engine re-decodes the utterance with whatever backend the model has. Parakeet
    cannot be made to begin a final with given words, so it commits none (a final never
    contradicts a committed word), and it reads no context: a later utterance's job skips the
    earlier speech it carries, and keeps the session's clock."""
    second = pcm("short")
    audio = pcm("weather") + b"\0\0" * 16000 + second + b"\0\0" * 16000
    for name in MODELS:
        seen = run(talk(server.url, audio, query=f"model={name}"))
        assert seen.messages[0] == {"type": "ready", "model": name, "sample_rate": 16000}
        finals = seen.of("final")
        assert len(finals) >= 2 and not seen.of("error"), seen.messages
        assert all(0 <= f["start"] < f["end"] <= len(audio) / 32000 + 0.5 for f in finals), finals
        for final in finals:
            assert all(s["start"] >= final["start"] - 0.5 for s in final["segments"]), final
        assert all(p["committed"] == "" for p in seen.of("partial")), seen.of("partial")
        assert seen.close_code == 1000


def test_long_audio_is_read_in_windows_and_keeps_its_clock(server: Server, tmp_path: Path) -> None:
    """Past two minutes the encoder gets windows cut at pauses; timings stay on the whole file's clock."""
    audio = make_long_clip(tmp_path, repeats=10)  # about 150 s: two windows
    with wave.open(io.BytesIO(audio), "rb") as clip:
        seconds = clip.getnframes() / clip.getframerate()
    for name in MODELS:
        response = server.client.post(
            "/v1/audio/transcriptions",
            files={"file": ("long.wav", audio)},
            data={"model": name, "response_format": "verbose_json"},
            timeout=300,
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["duration"] == pytest.approx(seconds, abs=0.01)
        starts = [s["start"] for s in result["segments"]]
        assert starts == sorted(starts)
        # Speech in the second window was decoded, at its place in the file.
        assert max(s["end"] for s in result["segments"]) > 130, result["segments"][-3:]


def test_ttl_ends_the_nemo_worker_and_the_service_returns_to_its_idle_memory(
    model: tiny_parakeet.TinyParakeet, tmp_path: Path
) -> None:
    """A NeMo worker holds torch and NeMo (hundreds of MB even for a tiny model): its TTL ends
    the process, and the service's memory is back where it was before the model loaded,
    while Whisper beside it keeps its own TTL and its worker."""
    server = start_server(tmp_path, side_by_side(model, parakeet_ttl=3))
    try:

        def rss_mb(*, but: int | None = None) -> float:
            """The service's memory: the supervisor and every process under it (but one)."""
            processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
            return sum(p.memory_info().rss for p in processes if p.pid != but and p.is_running()) / 2**20

        idle = rss_mb()
        assert worker_pids(server.pid) == []
        assert server.transcribe("short.wav", model="tiny.en").status_code == 200
        whisper_pid = server.model("tiny.en")["pid"]
        assert transcribe(server, "pk-nemo").status_code == 200
        nemo_pid = server.model("pk-nemo")["pid"]
        loaded = rss_mb(but=whisper_pid)
        assert loaded - idle > 300, (idle, loaded)  # torch + NeMo + the model

        wait_for(lambda: not psutil.pid_exists(nemo_pid), timeout=3 + 10, what="the NeMo worker to end after its TTL")
        wait_for(lambda: server.model("pk-nemo")["state"] == "unloaded", timeout=5, what="pk-nemo unloaded")
        after = rss_mb(but=whisper_pid)
        assert after - idle < 25, (idle, loaded, after)  # the supervisor's own few MB of bookkeeping at most
        # Whisper's worker, with ttl = -1, is the same process as before.
        assert server.model("tiny.en")["pid"] == whisper_pid and psutil.pid_exists(whisper_pid)
        assert worker_pids(server.pid) == [whisper_pid]
    finally:
        server.stop()


def test_a_missing_extra_fails_the_load_with_the_pip_line(model: tiny_parakeet.TinyParakeet, tmp_path: Path) -> None:
    """A machine without the [parakeet] extra: NeMo cannot be imported there."""
    hide = tmp_path / "no-nemo"
    (hide / "nemo").mkdir(parents=True)
    (hide / "nemo" / "__init__.py").write_text("raise ImportError(\"No module named 'nemo'\")\n")
    server = start_server(tmp_path, side_by_side(model), env={"PYTHONPATH": str(hide)})
    try:
        response = transcribe(server, "pk-nemo")
        assert response.status_code >= 500
        message = response.json()["error"]["message"]
        assert "pip install 'asr-supervisor[parakeet]'" in message, message
        # The onnx backend and Whisper are not affected.
        assert transcribe(server, "pk-onnx").status_code == 200
        assert server.transcribe("short.wav", model="tiny.en").status_code == 200
    finally:
        server.stop()


def test_the_catalogue_lists_parakeet_models(server: Server) -> None:
    listing = asrctl("models", "list", "--available", "--wide", url=server.url)
    assert listing.returncode == 0, listing.stderr
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in listing.stdout.splitlines() if "│" in line]
    rows = {row[0]: row for row in cells if row and row[0].startswith("parakeet")}
    assert rows["parakeet-tdt-0.6b-v2"][1:5] == ["parakeet-nemo", "nvidia/parakeet-tdt-0.6b-v2", "2470", "en"]
    assert rows["parakeet-tdt-0.6b-v3-onnx"][1] == "parakeet-onnx" and rows["parakeet-tdt-0.6b-v3-onnx"][4] == "25"


def test_the_supervisor_maps_no_ml_library_after_serving_parakeet(server: Server) -> None:
    """torch, NeMo and onnxruntime live in the workers: the supervisor's own memory holds
    none of their native libraries, after it has served both Parakeet backends."""
    for name in MODELS:
        assert transcribe(server, name).status_code == 200
    libraries = {Path(m.path).name for m in psutil.Process(server.pid).memory_maps() if m.path.endswith(".so")}
    heavy = {lib for lib in libraries if re.search(r"torch|onnxruntime|ctranslate2|_multiarray|sentencepiece", lib)}
    assert heavy == set(), heavy
    # The workers do hold them: the check above can see what it looks for.
    nemo_worker = psutil.Process(server.model("pk-nemo")["pid"])
    assert any("libtorch" in Path(m.path).name for m in nemo_worker.memory_maps())


def test_catalogue_models_download_through_the_hub_client(model: tiny_parakeet.TinyParakeet, tmp_path: Path) -> None:
    """`--model parakeet-tdt-0.6b-v2` (its backend from the catalogue): fetched by `asrctl models
    download` from a loopback stand-in for the hub, then served; the onnx export is fetched by
    its first request. Their catalogue entries give their languages."""
    nemo_repo = tmp_path / "nemo-repo"
    nemo_repo.mkdir()
    shutil.copy(model.nemo, nemo_repo / "parakeet-tdt-0.6b-v2.nemo")
    repos = {"nvidia/parakeet-tdt-0.6b-v2": nemo_repo, "istupakov/parakeet-tdt-0.6b-v2-onnx": model.onnx}
    with HubStandIn(repos) as hub:
        config = f'[defaults]\nttl = -1\ncache_dir = "{tmp_path / "cache"}"\n'
        server = start_server(
            tmp_path,
            config,
            "--model",
            "parakeet-tdt-0.6b-v2",
            "--model",
            "parakeet-tdt-0.6b-v2-onnx",
            env=hub_env(hub, tmp_path),
        )
        try:
            listed = {m["id"]: m for m in server.client.get("/v1/models").json()["data"]}
            assert listed["parakeet-tdt-0.6b-v2"]["backend"] == "parakeet-nemo"
            assert listed["parakeet-tdt-0.6b-v2"]["installed"] is False
            assert listed["parakeet-tdt-0.6b-v2"]["languages"] == ["en"]

            out = asrctl("models", "download", "parakeet-tdt-0.6b-v2", url=server.url)
            assert out.returncode == 0 and "downloaded" in out.stdout, out.stdout + out.stderr
            assert list((tmp_path / "cache").glob("models--nvidia--parakeet-tdt-0.6b-v2/snapshots/*/*.nemo"))
            requests = len(hub.requests)
            assert transcribe(server, "parakeet-tdt-0.6b-v2").status_code == 200
            assert len(hub.requests) == requests, "loading a downloaded model touched the network"

            response = transcribe(server, "parakeet-tdt-0.6b-v2-onnx", response_format="verbose_json")
            assert response.status_code == 200, response.text
            assert response.json()["language"] == "en"  # an English-only model says so
            refused = transcribe(server, "parakeet-tdt-0.6b-v2-onnx", language="fr")
            assert refused.status_code == 400 and "'fr' is not supported" in refused.json()["error"]["message"]
        finally:
            server.stop()


def test_tiny_and_silent_audio_get_an_answer_not_a_crash(server: Server) -> None:
    """One sample, a twentieth of a second, ten seconds of digital silence: each gets 200 with
    the text the model has for it (silence: none, since it is never decoded), and the worker lives on."""

    def wav(samples: int, sample: bytes) -> bytes:
        out = io.BytesIO()
        with wave.open(out, "wb") as clip:
            clip.setnchannels(1)
            clip.setsampwidth(2)
            clip.setframerate(16000)
            clip.writeframes(sample * samples)
        return out.getvalue()

    for name in MODELS:
        pid = server.model(name)["pid"] if server.model(name)["state"] == "ready" else None
        for samples, silent in ((1, False), (800, False), (160_000, True)):
            audio = wav(samples, b"\0\0" if silent else b"\0\1")
            response = server.client.post(
                "/v1/audio/transcriptions", files={"file": ("x.wav", audio)}, data={"model": name}, timeout=60
            )
            assert response.status_code == 200, (name, samples, response.text)
            if silent:
                assert response.json()["text"] == ""
        assert pid is None or server.model(name)["pid"] == pid


def test_warm_spare_can_leave_the_nemo_spare_out(model: tiny_parakeet.TinyParakeet, tmp_path: Path) -> None:
    """`warm_spare = ["faster-whisper", "parakeet-onnx"]`: no 0.7 GB NeMo spare; NeMo models start cold."""
    config = side_by_side(model).replace(
        "[server]\n", '[server]\n    warm_spare = ["faster-whisper", "parakeet-onnx"]\n', 1
    )
    server = start_server(tmp_path, config, warm_spare=True)
    try:
        wanted = {"faster-whisper", "parakeet-onnx"}
        spares = wait_for(lambda: (p := server.health()["spare_pids"]) and set(p) == wanted and p, 60, what="spares")
        response = transcribe(server, "pk-nemo")
        assert response.status_code == 200
        assert int(response.headers["x-asr-worker-pid"]) not in spares.values()  # a fresh process, not a spare
        assert "parakeet-nemo" not in server.health()["spare_pids"]
    finally:
        server.stop()


def test_each_backend_keeps_its_own_warm_spare(model: tiny_parakeet.TinyParakeet, tmp_path: Path) -> None:
    """A spare has one backend's libraries imported: with Whisper and both Parakeet backends
    configured there is one of each, and a NeMo model's first request takes the NeMo one
    (its import already paid), which is then replaced."""
    server = start_server(tmp_path, side_by_side(model), warm_spare=True)
    try:
        backends = {"faster-whisper", "parakeet-nemo", "parakeet-onnx"}
        spares = wait_for(
            lambda: (p := server.health()["spare_pids"]) and set(p) == backends and p, 120, what="three spares"
        )
        response = transcribe(server, "pk-nemo")
        assert response.status_code == 200
        assert int(response.headers["x-asr-worker-pid"]) == spares["parakeet-nemo"]
        replacement = wait_for(
            lambda: (
                (p := server.health()["spare_pids"].get("parakeet-nemo")) not in (None, spares["parakeet-nemo"]) and p
            ),
            120,
            what="a new NeMo spare",
        )
        assert psutil.pid_exists(replacement)
        # The other backends' spares were not touched.
        assert {k: v for k, v in server.health()["spare_pids"].items() if k != "parakeet-nemo"} == {
            k: v for k, v in spares.items() if k != "parakeet-nemo"
        }
    finally:
        server.stop()


def test_metrics_name_each_models_backend_and_count_parakeet_work(server: Server) -> None:
    """Prometheus sees Parakeet models like any other, and can tell the backends apart."""
    for name in MODELS:
        assert transcribe(server, name).status_code == 200

    def scrape() -> tuple[str, dict[str, str], dict[str, float]]:
        text = server.client.get("/metrics").text
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
        backends = {s.labels["model"]: s.labels["backend"] for s in samples if s.name == "asr_model_info"}
        audio = {s.labels["model"]: s.value for s in samples if s.name == "asr_inference_audio_seconds_total"}
        return text, backends, audio

    # The workers count their work and report it with their next heartbeat (every second).
    text, backends, _audio = wait_for(
        lambda: (got := scrape()) and min(got[2].get(n, 0.0) for n in MODELS) >= clip_seconds("weather.wav") and got,
        10,
        what="both workers' counts in /metrics",
    )  # type: ignore[misc]
    assert backends == {"tiny.en": "faster-whisper", "pk-nemo": "parakeet-nemo", "pk-onnx": "parakeet-onnx"}
    if shutil.which("promtool"):
        checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
