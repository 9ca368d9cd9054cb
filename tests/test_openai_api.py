"""The official `openai` SDK against a live server: change only base_url and it works."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from conftest import ASSETS, Server, key_words_found, server_fixture
from openai import OpenAI

FOX_KEYS = ["quick", "brown", "fox", "over", "lazy"]
WEATHER_KEYS = ["morning", "weather", "sunny", "warm", "breeze", "garden", "dinner"]

CONFIG = """
[server]
default_model = "tiny.en"
max_upload_mb = 4

[defaults]
ttl = -1

[models."tiny.en"]
source = "bundled"
description = "bundled test model"

[models."second"]
source = "bundled"

[models."team/tiny"]
source = "bundled"

[aliases]
"gpt-4o-mini-transcribe" = "tiny.en"
"""


api = server_fixture(CONFIG)


@pytest.fixture(scope="module")
def client(api: Server) -> OpenAI:
    return OpenAI(base_url=f"{api.url}/v1", api_key="anything", max_retries=0)


def _clip(name: str) -> Path:
    return ASSETS / name


def test_json_and_text(client: OpenAI) -> None:
    with _clip("fox.mp3").open("rb") as f:
        result = client.audio.transcriptions.create(model="tiny.en", file=f)
    assert len(key_words_found(result.text, FOX_KEYS)) >= 4
    with _clip("short.wav").open("rb") as f:
        text = client.audio.transcriptions.create(model="tiny.en", file=f, response_format="text")
    assert isinstance(text, str) and "kitchen" in text.lower()


def _cue_times(body: str) -> list[tuple[float, float]]:
    pattern = r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d) --> (\d\d):(\d\d):(\d\d)[,.](\d\d\d)"
    times = []
    for m in re.finditer(pattern, body):
        g = [int(x) for x in m.groups()]
        times.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000))
    return times


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_have_monotonic_cues(client: OpenAI, fmt: str) -> None:
    with _clip("weather.wav").open("rb") as f:
        body = client.audio.transcriptions.create(model="tiny.en", file=f, response_format=fmt)
    assert isinstance(body, str)
    if fmt == "vtt":
        assert body.startswith("WEBVTT")
    else:
        assert body.lstrip().startswith("1\n")
    times = _cue_times(body)
    assert times, body
    for (start, end), (next_start, _) in zip(times, times[1:] + [(times[-1][1], 0)]):
        assert 0 <= start <= end <= next_start + 1e-6
    assert times[-1][1] <= 9.5  # the clip is 8.9 s long
    assert len(key_words_found(body, WEATHER_KEYS)) >= 6


def test_verbose_json_with_word_timestamps(client: OpenAI) -> None:
    with _clip("weather.wav").open("rb") as f:
        result = client.audio.transcriptions.create(
            model="tiny.en", file=f, response_format="verbose_json", timestamp_granularities=["word", "segment"]
        )
    assert result.language == "en"
    assert 8.5 < result.duration < 9.5
    assert result.segments and result.words
    segments = result.segments
    for i, seg in enumerate(segments):
        assert seg.id == i and seg.start <= seg.end
        assert seg.avg_logprob <= 0 and 0 <= seg.no_speech_prob <= 1 and seg.compression_ratio > 0
    for word in result.words:
        assert word.start <= word.end
        assert any(s.start - 0.01 <= word.start and word.end <= s.end + 0.01 for s in segments), word
    assert len(key_words_found(" ".join(w.word for w in result.words), WEATHER_KEYS)) >= 6


def test_verbose_json_without_words_has_no_words(client: OpenAI) -> None:
    with _clip("fox.wav").open("rb") as f:
        result = client.audio.transcriptions.create(model="tiny.en", file=f, response_format="verbose_json")
    assert result.segments and getattr(result, "words", None) is None


def test_stream_deltas_add_up_to_the_final_text(client: OpenAI, api: Server) -> None:
    with _clip("weather.wav").open("rb") as f:
        stream = client.audio.transcriptions.create(model="tiny.en", file=f, stream=True)
        events = list(stream)
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert len(done) == 1 and events[-1] is done[0]
    assert len(deltas) >= 2, "a multi-segment clip should stream more than one delta"
    assert "".join(deltas) == done[0].text
    assert len(key_words_found(done[0].text, WEATHER_KEYS)) >= 6
    assert api.model()["in_flight"] == 0  # the stream's lease was released


def test_a_stream_in_a_timed_format_sends_each_segment_with_its_times(client: OpenAI, api: Server) -> None:
    """`stream=true` with verbose_json (or srt, vtt): each segment also comes as OpenAI's
    `transcript.text.segment` event, so subtitles need no second transcription; the segments
    are those the same request without streaming gives."""
    with _clip("weather.wav").open("rb") as f:
        stream = client.audio.transcriptions.create(
            model="tiny.en",
            file=f,
            stream=True,
            response_format="verbose_json",  # type: ignore[call-overload]
        )
        events = list(stream)
    segments = [e for e in events if e.type == "transcript.text.segment"]
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert len(segments) == len(deltas) >= 2
    with _clip("weather.wav").open("rb") as f:
        whole = client.audio.transcriptions.create(model="tiny.en", file=f, response_format="verbose_json")
    assert [(s.start, s.end, s.text) for s in segments] == [
        (s.start, s.end, s.text.strip()) for s in whole.segments or []
    ]
    # Each segment's event comes before its text's delta; a plain stream has none of them.
    assert events.index(segments[0]) < events.index(deltas[0])
    with _clip("weather.wav").open("rb") as f:
        plain = list(client.audio.transcriptions.create(model="tiny.en", file=f, stream=True))
    assert not [e for e in plain if e.type == "transcript.text.segment"]


def test_translation_on_an_english_only_model_is_refused(client: OpenAI) -> None:
    with _clip("fox.wav").open("rb") as f, pytest.raises(openai.BadRequestError) as err:
        client.audio.translations.create(model="tiny.en", file=f)
    assert "cannot translate" in str(err.value)


def test_engine_extras_are_accepted(api: Server) -> None:
    response = api.transcribe("weather.wav", vad_filter="true", beam_size="1", hotwords="garden")
    assert response.status_code == 200, response.text
    assert "garden" in response.json()["text"].lower()
    response = api.transcribe("weather.wav", beam_size="0")
    assert response.status_code == 400 and response.json()["error"]["param"] == "beam_size"


def test_models_list_and_retrieve(client: OpenAI, api: Server) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == ["tiny.en", "second", "team/tiny"]
    tiny = client.models.retrieve("tiny.en")
    assert tiny.owned_by == "asr-supervisor"
    extra = tiny.model_extra or {}
    assert extra["backend"] == "faster-whisper" and extra["languages"] == ["en"]
    assert extra["description"] == "bundled test model" and extra["size"] > 10_000_000
    assert "whisper-1" in extra["aliases"] and "gpt-4o-mini-transcribe" in extra["aliases"]
    assert client.models.retrieve("whisper-1").model_extra["source"] == "bundled"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("large-v9")


def test_openapi_documents_every_response_body(api: Server) -> None:
    """A client generator sees the real shapes: typed models, not `{}`."""
    doc = api.client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    ok = {
        path: doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        for path, method in [
            ("/health", "get"),
            ("/v1/models", "get"),
            ("/v1/model/unload", "post"),
            ("/v1/audio/transcriptions", "post"),
        ]
    }
    assert ok["/health"] == {"$ref": "#/components/schemas/Health"}
    assert ok["/v1/models"] == {"$ref": "#/components/schemas/ModelList"}
    assert ok["/v1/model/unload"] == {"$ref": "#/components/schemas/UnloadResult"}
    assert {"$ref": "#/components/schemas/VerboseTranscriptionJSON"} in ok["/v1/audio/transcriptions"]["anyOf"]
    # Every model field /health reports is documented, and a live answer has exactly those.
    documented = set(schemas["ModelSnapshot"]["properties"])
    assert set(api.health()["models"]["tiny.en"]) == documented
    assert {"ttl_remaining", "in_flight", "unloads", "vram_mb"} <= documented


def test_whisper_1_and_configured_aliases_reach_the_default_model(client: OpenAI) -> None:
    for name in ("whisper-1", "gpt-4o-mini-transcribe"):
        with _clip("fox.wav").open("rb") as f:
            result = client.audio.transcriptions.with_raw_response.create(model=name, file=f)
        assert result.headers["x-asr-model"] == "tiny.en"
        assert "fox" in result.parse().text.lower()


def test_a_models_base_url_serves_that_model_to_unmodified_clients(api: Server) -> None:
    """`/models/{name}/v1` is a base URL any OpenAI client takes: a balancer hashes on the name
    (deploy/haproxy) and every request lands where that model is warm. The SDK's own model
    names (whisper-1) and the model's aliases mean it; another configured model is a 400."""
    second = OpenAI(base_url=f"{api.url}/models/second/v1", api_key="anything", max_retries=0)
    with _clip("fox.wav").open("rb") as f:
        served = second.audio.transcriptions.with_raw_response.create(model="whisper-1", file=f)
    assert served.headers["x-asr-model"] == "second"
    assert "fox" in served.parse().text.lower()
    assert [m.id for m in second.models.list().data] == ["second"]
    with _clip("fox.wav").open("rb") as f, pytest.raises(openai.BadRequestError) as err:
        second.audio.transcriptions.create(model="tiny.en", file=f)
    assert err.value.code == "model_mismatch" and err.value.param == "model"
    assert "'second'" in str(err.value.message) and "'tiny.en'" in str(err.value.message)

    tiny = OpenAI(base_url=f"{api.url}/models/tiny.en/v1", api_key="anything", max_retries=0)
    with _clip("short.wav").open("rb") as f:  # an alias of the pinned model is the same model
        served = tiny.audio.transcriptions.with_raw_response.create(model="gpt-4o-mini-transcribe", file=f)
    assert served.headers["x-asr-model"] == "tiny.en"

    # A name with a slash goes URL-encoded; an unknown name is a 404 like any unknown model.
    assert api.client.get("/models/team%2Ftiny/v1/models").json()["data"][0]["id"] == "team/tiny"
    missing = api.client.get("/models/large-v9/v1/models")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert api.client.get("/models/second/health").status_code == 404  # only /v1/ is under a model


def test_a_models_base_url_serves_its_live_websocket_and_realtime(api: Server) -> None:
    import asyncio
    import base64
    import json

    from websockets.asyncio.client import connect

    base = api.url.replace("http://", "ws://") + "/models/second/v1"

    async def scenario() -> tuple[dict[str, object], list[dict[str, object]], dict[str, object]]:
        async with connect(base + "/audio/transcriptions/stream") as ws:
            await ws.send((ASSETS / "short.wav").read_bytes()[44:])
            await ws.send(json.dumps({"type": "end"}))
            ready = json.loads(await ws.recv())
            rest = [json.loads(m) async for m in ws]
        async with connect(base + "/audio/transcriptions/stream?model=tiny.en") as ws:
            refused = json.loads(await ws.recv())
            await ws.wait_closed()
            assert ws.close_code == 1008
        async with connect(base + "/realtime?intent=transcription") as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            update = {
                "type": "transcription_session.update",
                "session": {"input_audio_transcription": {"model": "tiny.en"}},
            }
            await ws.send(json.dumps(update))
            while (event := json.loads(await ws.recv()))["type"] != "error":
                pass
            await ws.send(
                json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0\0" * 800).decode()})
            )
        return ready, rest, {"live_refused": refused, "realtime_refused": event}

    ready, rest, refused = asyncio.run(scenario())
    assert ready["type"] == "ready" and ready["model"] == "second"
    assert any(m["type"] == "final" and "kitchen" in str(m["text"]).lower() for m in rest), rest
    live_refused = refused["live_refused"]
    assert isinstance(live_refused, dict) and live_refused["code"] == "model_mismatch"
    realtime_refused = refused["realtime_refused"]
    assert isinstance(realtime_refused, dict) and realtime_refused["error"]["code"] == "model_mismatch"


def test_errors_map_to_the_sdk_exceptions(client: OpenAI) -> None:
    with _clip("fox.wav").open("rb") as f, pytest.raises(openai.NotFoundError) as err:
        client.audio.transcriptions.create(model="large-v9", file=f)
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="tiny.en", file=("notes.wav", b"plain text, not audio" * 20))
    assert err.value.param == "file"


def test_oversized_upload_is_413_before_the_body_is_read(api: Server, client: OpenAI) -> None:
    big = b"\0" * 6_000_000  # limit is 4 MB
    with pytest.raises(openai.APIStatusError) as err:
        client.audio.transcriptions.create(model="tiny.en", file=("big.wav", big))
    assert err.value.status_code == 413 and err.value.code == "file_too_large"

    # Chunked (no Content-Length): cut off while streaming in, not after.
    def body() -> Iterator[bytes]:
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(600):
            yield b"\0" * 10_000
        yield b"\r\n--xyz--\r\n"

    response = httpx.post(
        f"{api.url}/v1/audio/transcriptions",
        content=body(),
        headers={"content-type": "multipart/form-data; boundary=xyz"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert api.transcribe("short.wav").status_code == 200  # the server is fine


def test_sidecar_contracts(api: Server) -> None:
    health = api.client.get("/health").json()
    assert health["status"] == "healthy"
    assert set(health) >= {"status", "current_model", "device"}

    models = api.client.get("/v1/models").json()
    assert models["object"] == "list"
    for m in models["data"]:
        assert m["object"] == "model" and m["owned_by"] == "asr-supervisor" and isinstance(m["ready"], bool)

    response = api.client.post("/v1/settings/model", json={"model_id": "second"})
    assert response.json() == {"status": "success", "model": "second"}
    try:
        assert api.client.get("/health").json()["default_model"] == "second"
        r = api.transcribe("fox.wav")  # no model named: the new default
        assert r.status_code == 200 and r.headers["x-asr-model"] == "second"
        r = api.transcribe("fox.wav", model="whisper-1")
        assert r.headers["x-asr-model"] == "second"
    finally:
        api.client.post("/v1/settings/model", json={"model_id": "tiny.en"})

    response = api.client.post("/v1/settings/model", json={"model_id": "nope"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    response = api.client.post("/v1/settings/model", json={})
    assert response.status_code == 400


def test_api_keys_guard_v1_but_not_health(keyed_server: Server) -> None:
    server = keyed_server  # "s3cret" and "other" among its keys
    assert server.client.get("/health").status_code == 200
    wrong = OpenAI(base_url=f"{server.url}/v1", api_key="guess", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    with _clip("fox.wav").open("rb") as f, pytest.raises(openai.AuthenticationError):
        wrong.audio.transcriptions.create(model="tiny.en", file=f)
    assert server.client.get("/v1/models").status_code == 401
    right = OpenAI(base_url=f"{server.url}/v1", api_key="other", max_retries=0)
    with _clip("fox.wav").open("rb") as f:
        assert "fox" in right.audio.transcriptions.create(model="tiny.en", file=f).text.lower()


def test_segments_stream_while_the_file_is_still_being_decoded(api: Server, tmp_path: Path) -> None:
    from conftest import make_long_clip, wait_for

    # 147 s of speech at 8 kHz (2.4 MB): five of Whisper's 30 s windows, so segments come in
    # batches and, when the first arrives, at least four windows of work are still to do.
    long_clip = make_long_clip(tmp_path, repeats=10, rate=8000)
    with httpx.stream(
        "POST",
        f"{api.url}/v1/audio/transcriptions",
        files={"file": ("long.wav", long_clip)},
        data={"stream": "true"},
        timeout=120,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert "transcript.text.delta" in first
        # The first delta is here and the worker is still busy with the rest of the file.
        assert api.model()["in_flight"] == 1
        # The client walks away mid-stream ...
    # ... and the model is released (the worker is told to stop decoding that file).
    wait_for(lambda: api.model()["in_flight"] == 0, 30, what="the abandoned stream to be released")
    assert api.transcribe("short.wav").status_code == 200
