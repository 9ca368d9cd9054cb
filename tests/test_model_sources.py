"""Start-up checks a new user meets: `--model` alone, typo'd names, missing directories.

What can be known offline fails start-up in one line (exit 2, like any config mistake);
what only the hub knows is a warning, and the server serves.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, Server

from supervisor.config import ConfigError, Overrides, load_settings
from supervisor.models.sources import check_sources

SHIPPED = REPO / "asr.toml"


def start(tmp_path: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A supervisor expected to refuse its config (exit 2). Its HTTP port is taken, so one that
    accepts the config fails at once on the port (exit 1) instead of serving."""
    path = tmp_path / "asr.toml"
    path.write_text(config)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        return subprocess.run(
            [sys.executable, "-m", "supervisor", "--config", str(path), "--port", port, "--no-wyoming", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
        )


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def test_a_typo_in_a_model_name_fails_start_up_naming_the_model_and_a_suggestion(tmp_path: Path) -> None:
    line = one_line_error(start(tmp_path, "", "--model", "lareg-v3"))
    assert "models.lareg-v3.source" in line and "did you mean 'large-v3'" in line

    line = one_line_error(start(tmp_path, '[models.talk]\nsource = "smal.en"\n'))
    assert "models.talk.source = 'smal.en'" in line and "did you mean 'small.en'" in line


def test_a_missing_or_incomplete_model_directory_fails_start_up(tmp_path: Path) -> None:
    line = one_line_error(start(tmp_path, f'[models.mine]\nsource = "{tmp_path / "nowhere"}"\n'))
    assert "models.mine.source" in line and f"no such directory ({tmp_path / 'nowhere'})" in line

    line = one_line_error(start(tmp_path, '[models.rel]\nsource = "models/faster-whisper/small"\n'))
    assert "models.rel.source" in line and "no such directory" in line  # three parts: not a hub id either

    empty = tmp_path / "empty-model"
    empty.mkdir()
    line = one_line_error(start(tmp_path, f'[models.empty]\nsource = "{empty}"\n'))
    assert "models.empty.source" in line and "has no model.bin" in line


def test_model_flag_alone_serves_that_model_by_default_and_warns_it_is_not_downloaded(make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The shipped asr.toml says default_model = "tiny.en"; `--model small.en` replaces its list.
    server: Server = make_server(
        SHIPPED.read_text(),
        "--model",
        "small.en",
        "--cache-dir",
        str(tmp_path / "empty-cache"),
        env={"HF_HOME": str(tmp_path / "hf-home")},
    )
    health = server.health()
    assert health["default_model"] == "small.en" and list(health["models"]) == ["small.en"]
    log = server.log()
    assert "WARNING" in log and "models.small.en: small.en (Systran/faster-whisper-small.en" in log
    assert "asrctl models download small.en" in log
    assert server.proc.poll() is None  # a warning, not a refusal: nothing was downloaded


def test_hub_sources_warn_only_until_they_are_in_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = tmp_path / "asr.toml"
    path.write_text(f'[defaults]\ncache_dir = "{cache}"\n[models.hub]\nsource = "acme/whisper-tiny"\n')
    (warning,) = check_sources(load_settings(path))
    assert "models.hub: hub repo 'acme/whisper-tiny' is not in the model cache" in warning

    # The hub cache's own layout, as a download leaves it: a complete snapshot silences it.
    snapshot = cache / "models--acme--whisper-tiny" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "model.bin").write_bytes(b"0")
    assert check_sources(load_settings(path)) == []


def test_model_flags_choose_the_default_and_leave_the_files_aliases_alone(tmp_path: Path) -> None:
    settings = load_settings(SHIPPED, Overrides(models=("large-v3",)))
    assert settings.default_model == "large-v3" and list(settings.models) == ["large-v3"]
    assert settings.server.default_model == "large-v3"
    assert load_settings(SHIPPED, Overrides(models=("small", "tiny.en"))).default_model == "small"
    chosen = load_settings(SHIPPED, Overrides(models=("small", "tiny.en"), default_model="tiny.en"))
    assert chosen.default_model == "tiny.en"
    with pytest.raises(ConfigError, match=r"--default-model: 'tiny.en' is not a served model"):
        load_settings(SHIPPED, Overrides(models=("small",), default_model="tiny.en"))
    assert load_settings(SHIPPED).default_model == "tiny.en"  # without --model, the file decides

    path = tmp_path / "asr.toml"
    path.write_text(
        '[models."tiny.en"]\nsource = "bundled"\n[models.big]\nsource = "large-v3"\n[aliases]\nbest = "big"\n'
    )
    assert load_settings(path).aliases == {"best": "big"}
    assert load_settings(path, Overrides(models=("tiny.en",))).aliases == {}  # `big` is not served
    path.write_text('[models."tiny.en"]\nsource = "bundled"\n[aliases]\nbest = "big"\n')
    with pytest.raises(ConfigError, match=r"aliases\.best"):
        load_settings(path, Overrides(models=("tiny.en",)))
