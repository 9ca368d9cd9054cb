"""Bad input gets a clear OpenAI-style 4xx, and the worker serving it is not disturbed."""

from __future__ import annotations

from conftest import ASSETS, Server


def _error(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def _post(server: Server, files: dict | None = None, **data: str):  # type: ignore[no-untyped-def]
    return server.client.post("/v1/audio/transcriptions", files=files or {}, data=data)


def test_bad_requests_get_clear_errors_and_leave_the_worker_alone(shared_server: Server) -> None:
    assert shared_server.transcribe("short.wav").status_code == 200
    pid_before = shared_server.model()["pid"]

    response = _post(shared_server, model="tiny.en")
    assert response.status_code == 400
    error = _error(response)
    assert error["param"] == "file" and "file" in error["message"].lower()

    response = _post(shared_server, files={"file": ("empty.wav", b"")})
    assert response.status_code == 400
    assert "empty" in _error(response)["message"].lower()

    not_audio = b"This is a shopping list, not a recording.\n" * 50
    response = _post(shared_server, files={"file": ("notes.wav", not_audio)})
    assert response.status_code == 400
    error = _error(response)
    assert error["param"] == "file" and "decode" in error["message"].lower()

    cut_in_header = (ASSETS / "fox.wav").read_bytes()[:20]
    response = _post(shared_server, files={"file": ("cut.wav", cut_in_header)})
    assert response.status_code == 400, response.text
    assert _error(response)["param"] == "file"

    header_only = (ASSETS / "fox.wav").read_bytes()[:44]
    response = _post(shared_server, files={"file": ("header.wav", header_only)})
    assert response.status_code == 400, response.text
    assert "no audio" in _error(response)["message"]

    # A file cut mid-stream is transcribed as far as it goes, like any player would play it.
    wav = (ASSETS / "fox.wav").read_bytes()
    response = _post(shared_server, files={"file": ("half.wav", wav[: len(wav) // 2])})
    assert response.status_code == 200, response.text
    assert "fox" in response.json()["text"].lower()

    response = shared_server.transcribe("fox.wav", model="no-such-model")
    assert response.status_code == 404
    error = _error(response)
    assert error["code"] == "model_not_found" and "no-such-model" in error["message"]
    assert "tiny.en" in error["message"]  # it tells the user what exists

    response = shared_server.transcribe("fox.wav", response_format="yaml")
    assert response.status_code == 400
    assert _error(response)["param"] == "response_format"

    response = shared_server.transcribe("fox.wav", temperature="hot")
    assert response.status_code == 400
    assert _error(response)["param"] == "temperature"

    response = shared_server.transcribe("fox.wav", language="xx")
    assert response.status_code == 400
    assert "language" in _error(response)["message"]

    # The same worker is still there and still right.
    assert shared_server.model()["pid"] == pid_before
    response = shared_server.transcribe("fox.wav")
    assert response.status_code == 200 and "fox" in response.json()["text"].lower()
    assert shared_server.model()["pid"] == pid_before


def test_unknown_route_is_an_openai_style_404(shared_server: Server) -> None:
    response = shared_server.client.get("/v1/nothing-here")
    assert response.status_code == 404
    _error(response)
