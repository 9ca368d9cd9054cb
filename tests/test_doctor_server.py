"""`asrctl doctor` beside a running asr-supervisor: the ports it holds are its own, not a fault."""

from __future__ import annotations

from pathlib import Path

from conftest import Server
from test_doctor import doctor, rows, write


def test_ports_held_by_a_running_supervisor_are_not_a_failure(shared_server: Server, tmp_path: Path) -> None:
    config = write(
        tmp_path,
        f"""
        [server]
        port = {shared_server.port}
        wyoming_port = {shared_server.wyoming_port}
        [models."tiny.en"]
        source = "bundled"
        """,
    )
    done = doctor(config, "--json", "--no-inference")
    assert done.returncode == 0, done.stdout + done.stderr
    found = rows(done)
    for subject in (f"HTTP 127.0.0.1:{shared_server.port}", f"Wyoming 127.0.0.1:{shared_server.wyoming_port}"):
        assert (found[subject]["outcome"], found[subject]["detail"]) == ("ok", "in use by a running asr-supervisor")
