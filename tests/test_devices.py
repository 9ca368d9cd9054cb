"""Device detection without ML imports; a stand-in `nvidia-smi` where no GPU can exist here."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import Server

from supervisor.workers import devices


def test_this_machine_reports_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvidia-smi on this CI machine
    monkeypatch.setattr(devices, "_cache", None)
    found = devices.detect()
    assert found["best"] == "cpu" and found["cuda"] == [] and found["cpu"]["count"] >= 1
    assert found["mps"] is False


def _fake_nvidia_smi(tmp_path: Path, gpu_rows: str, app_rows_per_call: list[str]) -> Path:
    """An `nvidia-smi` that answers the two queries we make, app rows changing per call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "calls").write_text("0")
    script = bin_dir / "nvidia-smi"
    answers = "\n".join(f'  {i}) printf "{rows}";;' for i, rows in enumerate(app_rows_per_call))
    script.write_text(f"""#!/bin/sh
case "$1" in
--query-gpu=*) printf "{gpu_rows}";;
--query-compute-apps=*)
  n=$(cat {tmp_path}/calls); echo $((n+1)) > {tmp_path}/calls
  case $n in
{answers}
  *) printf "";;
  esac;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_cuda_is_read_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = _fake_nvidia_smi(tmp_path, "0, NVIDIA H100 80GB HBM3, 81559, 1200\\n", [])
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(devices, "_cache", None)
    found = devices.detect()
    assert found["best"] == "cuda"
    assert found["cuda"] == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total_mb": 81559, "memory_used_mb": 1200}
    ]


async def test_waits_until_the_driver_lets_go_of_a_dead_workers_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = _fake_nvidia_smi(tmp_path, "", ["4242, 3100\\n", "4242, 3100\\n", "777, 10\\n"])
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert await devices.wait_vram_released(4242, timeout=10) is True
    assert (tmp_path / "calls").read_text().strip() == "3"  # asked until the PID was gone

    stuck_dir = tmp_path / "stuck"
    stuck_dir.mkdir()
    stuck = _fake_nvidia_smi(stuck_dir, "", ["4242, 3100\\n"] * 100)  # never lets go
    monkeypatch.setenv("PATH", f"{stuck}:{os.environ['PATH']}")
    assert await devices.wait_vram_released(4242, timeout=0.3) is False


def test_health_reports_devices_and_mps_falls_back_to_cpu(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server('[models."tiny.en"]\nsource = "bundled"\ndevice = "mps"\nttl = -1\n')
    assert server.health()["devices"]["best"] == "cpu"
    assert server.transcribe("short.wav").status_code == 200
    assert server.model()["device"] == "cpu"
    assert "no Apple MPS support" in server.log()
