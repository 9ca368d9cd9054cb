"""Transcription through the real stack: HTTP → supervisor → ZeroMQ → worker → faster-whisper."""

from __future__ import annotations

import concurrent.futures

import pytest
from conftest import Server, key_words_found

FOX_KEYS = ["quick", "brown", "fox", "over", "lazy"]
WEATHER_KEYS = ["morning", "weather", "sunny", "warm", "breeze", "garden", "dinner"]


@pytest.mark.parametrize("clip", ["fox.wav", "fox.mp3", "fox.ogg", "fox.flac", "fox.m4a", "fox.webm", "fox.opus"])
def test_every_container_transcribes_to_the_spoken_words(shared_server: Server, clip: str) -> None:
    response = shared_server.transcribe(clip, model="tiny.en")
    assert response.status_code == 200, response.text
    text = response.json()["text"]
    found = key_words_found(text, FOX_KEYS)
    assert len(found) >= 4, f"{clip}: {text!r} has only {found} of {FOX_KEYS}"


def test_no_model_field_uses_the_default_model(shared_server: Server) -> None:
    response = shared_server.transcribe("weather.wav")
    assert response.status_code == 200, response.text
    assert len(key_words_found(response.json()["text"], WEATHER_KEYS)) >= 6


def test_text_response_format_is_plain_text(shared_server: Server) -> None:
    response = shared_server.transcribe("short.wav", response_format="text")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "kitchen" in response.text.lower()


def test_language_and_prompt_are_accepted(shared_server: Server) -> None:
    response = shared_server.transcribe("short.wav", language="en", prompt="Home automation commands.")
    assert response.status_code == 200, response.text
    assert "lights" in response.json()["text"].lower()


def test_eight_concurrent_requests_all_get_their_own_text(shared_server: Server) -> None:
    clips = ["fox.wav", "weather.wav", "short.wav", "fox.mp3"] * 2
    expected = {
        "fox.wav": ("fox", "lazy"),
        "fox.mp3": ("fox", "brown"),
        "weather.wav": ("weather", "garden"),
        "short.wav": ("kitchen", "lights"),
    }
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda c: shared_server.transcribe(c), clips))
    for clip, response in zip(clips, responses):
        assert response.status_code == 200, response.text
        text = response.json()["text"].lower()
        assert all(w in text for w in expected[clip]), f"{clip} got {text!r}"
    # One model, one worker process, however many requests.
    assert len(shared_server.model_worker_pids()) == 1


def test_health_reports_the_loaded_worker(shared_server: Server) -> None:
    shared_server.transcribe("short.wav")
    health = shared_server.health()
    assert health["status"] == "healthy"
    assert health["current_model"] == "tiny.en"
    assert health["device"] == "cpu"
    model = health["models"]["tiny.en"]
    assert model["state"] == "ready"
    assert shared_server.model_worker_pids() == [model["pid"]]
    assert model["compute_type"] == "int8"
    assert model["ttl"] == -1 and model["ttl_remaining"] is None
    assert model["description"] == "bundled test model"
