"""Backend descriptions: ML-free, and the one source for config, catalogue, downloads, files and spares."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, cast

import pytest
from conftest import REPO
from hub_standin import HubStandIn

from common.backends import DESCRIPTIONS, BackendDescription, Capabilities, ModelFiles, describe
from common.protocol import ModelOptions
from supervisor.config import ConfigError, Overrides, load_settings
from supervisor.models import catalog, files
from supervisor.models.spares import SparePool
from supervisor.workers.process import WorkerProcess
from worker.backends import LoadError, create_backend
from worker.download import DownloadError, repo_for

ML_MODULES = (
    "torch",
    "ctranslate2",
    "faster_whisper",
    "nemo",
    "onnxruntime",
    "onnx_asr",
    "av",
    "numpy",
    "tokenizers",
    "huggingface_hub",
)
WHISPER = describe("faster-whisper")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "asr.toml"
    path.write_text(text)
    return path


# -- the descriptions themselves ------------------------------------------------------------


def test_descriptions_and_what_the_supervisor_reads_import_no_ml_library() -> None:
    script = f"""
import json, sys
import common.backends, worker.backends, worker.download, supervisor.config, supervisor.models.catalog
import supervisor.models.files, supervisor.models.downloads, supervisor.models.spares
for d in common.backends.DESCRIPTIONS.values():
    assert d.implementation not in sys.modules, d.implementation
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({ML_MODULES!r}))))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("name", list(DESCRIPTIONS))
def test_every_description_is_complete_and_names_its_implementation(name: str) -> None:
    d = describe(name)
    assert d.name == name
    assert importlib.util.find_spec(d.implementation) is not None  # locates, does not import
    # What makes a model complete is among what a download fetches.
    assert d.files.required and all(any(fnmatch(r, p) for p in d.files.download) for r in d.files.required)
    assert all(known.backend == name and known.size_mb > 0 for known in d.catalog)
    assert all(d.lookup(target) is not None for target in d.aliases.values())


def test_faster_whisper_is_in_the_base_install_and_does_everything() -> None:
    assert WHISPER.extra is None and "base install" in WHISPER.install_hint
    assert WHISPER.capabilities == Capabilities(translate=True, word_timestamps=True, streaming=True)


def test_model_files_say_which_directories_are_complete(tmp_path: Path) -> None:
    wanted = ModelFiles(required=("model.bin", "vocab*"), download=("model.bin", "vocab*"))
    assert wanted.missing(tmp_path) == ["model.bin", "vocab*"] and not wanted.complete(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"0")
    (tmp_path / "vocabulary.json").write_text("{}")
    assert wanted.complete(tmp_path) and not wanted.complete(tmp_path / "absent")


# -- config ------------------------------------------------------------------------------


def test_an_unknown_backend_fails_naming_the_key_and_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, '[models."x"]\nbackend = "whisper.cpp"\n'))
    message = str(err.value)
    assert "models.x.backend" in message and "whisper.cpp" in message and "\n" not in message
    assert all(name in message for name in DESCRIPTIONS)

    # A bad default is named where it was written, even when every model sets its own.
    with pytest.raises(ConfigError, match=r"defaults\.backend"):
        load_settings(_write(tmp_path, '[defaults]\nbackend = "nope"\n[models.a]\nbackend = "faster-whisper"\n'))


def test_model_options_flow_from_defaults_table_and_flags_into_one_struct(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "[defaults]\nbeam_size = 3\ncpu_threads = 4\nttl = 9\n"
        '[models.a]\ncpu_threads = 2\nconcurrency = 1\ndescription = "A"\n',
    )
    spec = load_settings(path, Overrides(device="cpu")).models["a"]
    assert spec.options == ModelOptions(source="a", device="cpu", beam_size=3, cpu_threads=2, concurrency=1)
    assert (spec.ttl, spec.preload, spec.description) == (9, False, "A")
    assert (spec.backend, spec.source) == ("faster-whisper", "a")  # read-only views of the options


@pytest.mark.parametrize(
    ("text", "overrides", "key"),
    [
        ("[defaults]\nbeam_size = 0\n", Overrides(), "defaults.beam_size"),
        ('[models.a]\ndevice = "gpu"\n', Overrides(), "models.a.device"),
        ("[models.a]\n", Overrides(device="gpu"), "--device"),
        ('[defaults]\nsource = "x"\n', Overrides(), "defaults.source"),  # a model's identity is not a default
        ('[defaults]\nttl = 5\n[models.a]\nttl = "soon"\n', Overrides(), "models.a.ttl"),
    ],
)
def test_a_bad_option_names_where_it_was_written(tmp_path: Path, text: str, overrides: Overrides, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, text), overrides)
    assert f": {key}" in str(err.value) and "\n" not in str(err.value)


# -- catalogue -----------------------------------------------------------------------------


def test_the_catalogue_is_the_descriptions_entries() -> None:
    known = catalog.lookup("large-v3")
    assert known is not None and known.repo == "Systran/faster-whisper-large-v3" and known.backend == "faster-whisper"
    assert catalog.lookup("large") == known and catalog.lookup("large-v3", "faster-whisper") == known
    assert catalog.lookup("large-v3", "no-such-backend") is None and catalog.lookup("nope") is None
    assert set(catalog.CATALOG) == {k.name for d in DESCRIPTIONS.values() for k in d.catalog}


# -- downloads -----------------------------------------------------------------------------


def test_names_resolve_through_the_catalogue_not_the_library() -> None:
    assert repo_for("large-v3-turbo", WHISPER) == "mobiuslabsgmbh/faster-whisper-large-v3-turbo"
    assert repo_for("turbo", WHISPER) == "mobiuslabsgmbh/faster-whisper-large-v3-turbo"
    assert repo_for("org/name", WHISPER) == "org/name"
    with pytest.raises(DownloadError, match="large-v3"):
        repo_for("huge-v9", WHISPER)


@pytest.fixture
def fake_repo(tmp_path: Path) -> Iterator[tuple[HubStandIn, dict[str, str]]]:
    """A CTranslate2-shaped repo holding files the backend reads and files it does not."""
    with_bin, without_bin = tmp_path / "repo", tmp_path / "no-weights"
    for root in (with_bin, without_bin):
        root.mkdir()
        for name in ("config.json", "tokenizer.json", "vocabulary.txt", "README.md", "pytorch_model.bin"):
            (root / name).write_text(name)
    (with_bin / "model.bin").write_bytes(b"weights")
    env = {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(tmp_path / "hf-home"), "NO_PROXY": "127.0.0.1"}
    with HubStandIn({"org/fake": with_bin, "org/no-weights": without_bin}) as hub:
        yield hub, {**env, "HF_ENDPOINT": hub.url}


def _download(source: str, cache: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.download",
            "--source",
            source,
            "--backend",
            WHISPER.name,
            "--cache-dir",
            str(cache),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=REPO,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_downloads_fetch_only_what_the_description_allows(
    fake_repo: tuple[HubStandIn, dict[str, str]], tmp_path: Path
) -> None:
    _, env = fake_repo
    cache = tmp_path / "cache"
    done = _download("org/fake", cache, env)[-1]
    assert done["event"] == "done", done
    assert sorted(p.name for p in Path(done["path"]).iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ]

    # files.py finds it by the same description: a complete snapshot is installed.
    spec = load_settings(_write(tmp_path, f'[models.f]\nsource = "org/fake"\ncache_dir = "{cache}"\n')).models["f"]
    assert files.installed_path(spec) == Path(done["path"])

    error = _download("org/no-weights", cache, env)[-1]
    assert error["event"] == "error" and "model.bin" in error["message"]
    spec = load_settings(_write(tmp_path, f'[models.n]\nsource = "org/no-weights"\ncache_dir = "{cache}"\n')).models[
        "n"
    ]
    assert files.installed_path(spec) is None


def test_a_local_directory_is_installed_only_when_complete(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    spec = load_settings(_write(tmp_path, f'[models.m]\nsource = "{model}"\n')).models["m"]
    assert files.installed_path(spec) is None and files.source_path(spec) == model
    (model / "model.bin").write_bytes(b"0")
    assert files.installed_path(spec) == model


# -- the worker's way in -------------------------------------------------------------------


def test_the_worker_reports_an_unknown_or_uninstalled_backend_as_a_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LoadError, match="unknown backend 'nope'; known: faster-whisper"):
        create_backend(ModelOptions(backend="nope"))
    # A backend whose libraries are not installed: the hint names its pip extra.
    absent = BackendDescription(
        name="absent",
        implementation="worker.backends.absent_engine",
        capabilities=Capabilities(translate=False, word_timestamps=False, streaming=False),
        files=ModelFiles(required=("*.onnx",), download=("*.onnx",)),
        extra="absent",
    )
    monkeypatch.setitem(DESCRIPTIONS, "absent", absent)
    with pytest.raises(LoadError, match=r"pip install 'asr-supervisor\[absent\]'"):
        create_backend(ModelOptions(backend="absent"))


# -- spares --------------------------------------------------------------------------------


class _Spare:
    """Stands in for a spare worker process: the pool only reads pid, is_alive and seems_frozen,
    and stops it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.is_alive = True
        self.seems_frozen = False  # its heartbeats are current
        self.stopped = False

    async def stop(self) -> str:
        self.stopped = True
        return "shutdown"


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):  # yields to the pool's tasks; no wall-clock wait
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the pool never got there")


async def test_the_pool_keeps_one_spare_per_configured_backend() -> None:
    spawned: list[tuple[str, _Spare]] = []

    async def spawn(backend: str, on_exit: Callable[[WorkerProcess], None]) -> WorkerProcess:
        spare = _Spare(100 + len(spawned))
        spawned.append((backend, spare))
        return cast(WorkerProcess, spare)

    pool = SparePool(spawn, enabled=True, backends=["faster-whisper", "other", "faster-whisper"])
    pool.start()
    await _until(lambda: len(pool.pids) == 2)
    assert [b for b, _ in spawned] == ["faster-whisper", "other"]
    assert pool.pids == {"faster-whisper": 100, "other": 101} and pool.pid == 100

    assert pool.take("no-such-backend") is None
    taken = pool.take("other")
    assert taken is not None and taken.pid == spawned[1][1].pid and pool.take("other") is None
    assert pool.pid == 100 and pool.pids == {"faster-whisper": 100}

    spawned[0][1].is_alive = False  # died, and its exit not yet reported: never handed out
    assert pool.take("faster-whisper") is None

    await pool.close()  # cancels the pending refill of "other" and stops the rest
    assert len(spawned) == 2 and spawned[0][1].stopped and not spawned[1][1].stopped
    assert pool.pid is None and pool.pids == {}


async def test_a_disabled_pool_spawns_nothing() -> None:
    async def spawn(backend: str, on_exit: Callable[[WorkerProcess], None]) -> WorkerProcess:
        raise AssertionError("spawned while disabled")

    pool = SparePool(spawn, enabled=False, backends=["faster-whisper"])
    pool.start()
    await asyncio.sleep(0)
    assert pool.pid is None and pool.take("faster-whisper") is None
    await pool.close()
