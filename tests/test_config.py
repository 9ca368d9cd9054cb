"""asr.toml and CLI flags become one validated Settings; bad config fails in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from supervisor.config import BUNDLED_SOURCE, ConfigError, Overrides, load_settings

SHIPPED = Path(__file__).parent.parent / "asr.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "asr.toml"
    path.write_text(text)
    return path


def test_shipped_config_serves_the_bundled_model_offline() -> None:
    settings = load_settings(SHIPPED)
    assert settings.default_model == "tiny.en"
    spec = settings.models["tiny.en"]
    assert spec.source == BUNDLED_SOURCE and spec.backend == "faster-whisper"
    assert settings.server.port == 5000


def test_no_config_at_all_still_serves_the_default_model() -> None:
    settings = load_settings(None)
    assert list(settings.models) == ["tiny.en"] and settings.models["tiny.en"].source == BUNDLED_SOURCE
    assert settings.models["tiny.en"].ttl == 300


def test_models_inherit_defaults_and_cli_flags_override_both(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        [server]
        port = 6000
        default_model = "b"
        [defaults]
        ttl = 120
        device = "cpu"
        [models.a]
        source = "bundled"
        ttl = 5
        [models.b]
        source = "bundled"
        preload = true
    """.replace("\n        ", "\n"),
    )
    settings = load_settings(path)
    assert (settings.models["a"].ttl, settings.models["b"].ttl) == (5, 120)
    assert settings.models["a"].options.device == "cpu" and settings.models["b"].preload
    assert settings.default_model == "b" and settings.server.port == 6000

    settings = load_settings(path, Overrides(ttl=-1, port=7000, compute_type="int8", models=("a",), default_model="a"))
    assert list(settings.models) == ["a"]
    assert settings.models["a"].ttl == -1 and settings.models["a"].options.compute_type == "int8"
    assert settings.server.port == 7000


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[defaults]\nttl = -5\n", "defaults.ttl"),
        ("[server]\nport = 99999\n", "server.port"),
        ('[models."x"]\nttl = "soon"\n', "models.x.ttl"),
        ('[models."x"]\nbackend = "whisper.cpp"\n', "models.x.backend"),
        ('[models."x"]\ncolour = "red"\n', "models.x.colour"),
        ("[serverr]\nport = 1\n", "serverr"),
        ('[server]\ndefault_model = "nope"\n[models.a]\n', "server.default_model"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, text))
    assert key in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "allowed"),
    [
        ('[models."x"]\nconcurrency = "lots"\n', "expected a whole number from 0 to 64 or 'auto'"),
        ('[models."x"]\nconcurrency = -3\n', "expected a whole number from 0 to 64 or 'auto'"),
        ('[models."x"]\nlane_weights = "x"\n', "expected one of 'auto', 'copy', 'shared'"),
        ('[models."x"]\nbatch_size = 0\n', "expected a whole number from 1 to 64 or 'auto'"),
    ],
)
def test_a_bad_value_is_answered_with_what_the_key_takes(tmp_path: Path, text: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, text))
    assert str(err.value).endswith(allowed)


def test_invalid_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "[defaults]\nttl = -5\n")
    out = subprocess.run(
        [sys.executable, "-m", "supervisor", "--config", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "defaults.ttl" in lines[0], out.stderr

    path.write_text("[server\nport = 1")
    out = subprocess.run(
        [sys.executable, "-m", "supervisor", "--config", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "not valid TOML" in out.stderr

    out = subprocess.run(
        [sys.executable, "-m", "supervisor", "--config", str(tmp_path / "absent.toml")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "not found" in out.stderr


def test_cli_flags_reach_the_running_server(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server('[models."tiny.en"]\nsource = "bundled"\nttl = 300\n', "--ttl", "7", "--preload")
    from conftest import wait_for

    model = cast(dict[str, Any], wait_for(lambda: (m := server.model())["state"] == "ready" and m, 30, what="preload"))
    assert model["ttl"] == 7 and 0 < model["ttl_remaining"] <= 7


def test_batch_size_is_a_model_option(tmp_path: Path) -> None:
    settings = load_settings(
        _write(tmp_path, '[defaults]\nbatch_size = 4\n[models.a]\n[models.b]\nbatch_size = "auto"\n')
    )
    assert settings.models["a"].options.batch_size == 4
    assert settings.models["b"].options.batch_size == "auto"


def test_a_catalogue_name_brings_its_backend() -> None:
    """`--model parakeet-tdt-0.6b-v2` needs no backend key: the catalogue says NeMo; an
    explicit backend still wins, and Whisper names stay Whisper's."""
    settings = load_settings(None, Overrides(models=("parakeet-tdt-0.6b-v2", "parakeet-tdt-0.6b-v3-onnx", "large-v3")))
    assert {m.name: m.backend for m in settings.models.values()} == {
        "parakeet-tdt-0.6b-v2": "parakeet-nemo",
        "parakeet-tdt-0.6b-v3-onnx": "parakeet-onnx",
        "large-v3": "faster-whisper",
    }


def test_an_explicit_backend_beats_the_catalogue(tmp_path: Path) -> None:
    config = tmp_path / "asr.toml"
    config.write_text('[models.parakeet]\nbackend = "parakeet-onnx"\nsource = "parakeet-tdt-0.6b-v2-onnx"\n')
    assert load_settings(config).models["parakeet"].backend == "parakeet-onnx"


def test_warm_spare_may_name_backends_and_a_misspelt_one_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "asr.toml"
    config.write_text('[server]\nwarm_spare = ["faster-whisper"]\n')
    assert load_settings(config).server.warm_spare == ["faster-whisper"]
    config.write_text('[server]\nwarm_spare = ["parakeet"]\n')
    with pytest.raises(
        ConfigError, match="unknown backend 'parakeet' in warm_spare; known: faster-whisper, parakeet-nemo"
    ):
        load_settings(config)
