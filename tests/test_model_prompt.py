"""A model's own `prompt` and `hotwords` in asr.toml reach every decode whose request brings none.

Home Assistant's Wyoming client sends no prompt, so the config is how its users bias
recognition towards their names. tiny.en hears the fox clip's "jumps" as "jumped"; primed
with the sentence it reads "jumps", over HTTP and over Wyoming alike, while a request's
own prompt still wins. Two commands with names (tests/assets/sonos.wav, siobhan.wav) come
through Home Assistant's sequence with their names when the default model is primed.
"""

from __future__ import annotations

import asyncio

from conftest import ASSETS, Server, server_fixture, words
from test_wyoming import ha_transcribe, pcm, transcript
from wyoming.asr import Transcribe

CONFIG = """
[server]
default_model = "home"

[defaults]
ttl = -1

[models."primed"]
source = "bundled"
prompt = "The quick brown fox jumps over the lazy dog."

[models."home"]
source = "bundled"
prompt = "In the conservatory, the Sonos speaker. In Siobhan's room, the Hue lights."
"""

primed_server = server_fixture(CONFIG)


def _http(server: Server, **form: str) -> str:
    response = server.client.post(
        "/v1/audio/transcriptions",
        files={"file": ("fox.wav", (ASSETS / "fox.wav").read_bytes(), "audio/wav")},
        data={"model": "primed", **form},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["text"])


def test_the_models_prompt_is_used_over_http_unless_the_request_brings_one(primed_server: Server) -> None:
    assert "jumps" in words(_http(primed_server))
    own = _http(primed_server, prompt="The quick brown fox jumped over the lazy dog.")
    assert "jumped" in words(own), own


def test_the_models_prompt_reaches_wyoming(primed_server: Server) -> None:
    audio, rate = pcm("fox")
    named = Transcribe(name="primed", language="en")
    text = transcript(asyncio.run(ha_transcribe(primed_server.wyoming_port, audio, rate, transcribe=named)))
    assert "jumps" in words(text), text


def test_home_assistant_hears_the_names_its_model_is_primed_with(primed_server: Server) -> None:
    """Home Assistant's own sequence (no model name, no prompt) on two commands with names
    tiny.en gets wrong unprimed ("Turn off the song of Beaker", "in Shimon's room")."""
    for clip, names in (("sonos", ["sonos", "speaker"]), ("siobhan", ["siobhan's", "lights"])):
        audio, rate = pcm(clip)
        text = transcript(asyncio.run(ha_transcribe(primed_server.wyoming_port, audio, rate)))
        assert all(name in words(text) for name in names), text


def test_prompt_and_hotwords_are_checked_as_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from supervisor.config import ConfigError, load_settings

    path = tmp_path / "asr.toml"
    path.write_text('[models.a]\nhotwords = "Aoife Hue"\nprompt = "In the living room."\n')
    options = load_settings(path).models["a"].options
    assert (options.hotwords, options.prompt) == ("Aoife Hue", "In the living room.")
    path.write_text("[models.a]\nhotwords = 3\n")
    try:
        load_settings(path)
    except ConfigError as exc:
        assert "models.a.hotwords" in str(exc)
    else:
        raise AssertionError("a number was taken for hotwords")
