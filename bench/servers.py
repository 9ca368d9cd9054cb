"""Start and stop the servers under test, and read their memory.

Every server is our child in its own session (so a Ctrl-C in the terminal reaches only
the benchmark, which then stops them in order), gets SIGTERM from the kernel if the
benchmark dies without cleaning up (PR_SET_PDEATHSIG), and is stopped with SIGTERM,
then SIGKILL, with every descendant it had checked and killed if it outlived it.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
MB = 1_048_576
WFW_VENV_PYTHON = REPO / "bench" / ".venv-wfw" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the benchmark's thread that spawned it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _env() -> dict[str, str]:
    """Our environment, offline, without anything that would change a server's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASR_", "WYO_WHISPER_"))}
    return env | {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}


@dataclass
class Service:
    """One server process we started; `stop()` leaves nothing of it running."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int
    _seen: dict[int, psutil.Process] = field(default_factory=dict)

    def process(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def descendants(self) -> list[psutil.Process]:
        """Live descendants (workers), remembered so that stop() can check them afterwards."""
        try:
            kids = [p for p in self.process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
        except psutil.Error:
            return []
        self._seen.update((p.pid, p) for p in kids)
        return kids

    def rss_mb(self) -> float:
        return self.process().memory_info().rss / MB

    def tree_rss_mb(self) -> float:
        """The whole service: this process plus every live descendant."""
        total = self.process().memory_info().rss
        for p in self.descendants():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / MB

    def cpu_seconds(self) -> float:
        """CPU time used so far by this process and its live descendants."""
        total = 0.0
        for p in [self.process(), *self.descendants()]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def settle(self, rest: float, quiet: float = 1.0, busy_share: float = 0.05, timeout: float = 60.0) -> None:
        """Wait `rest` seconds, then until the service has used < 5 % of a core for `quiet` seconds.

        Measurements of an idle service (memory, the first request after an unload) follow a
        real pause; background work the server does after a load, unload or start-up (a spare
        worker importing its libraries, say) must not land inside them.
        """
        time.sleep(rest)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self.cpu_seconds()
            time.sleep(quiet)
            if self.cpu_seconds() - before < busy_share * quiet:
                return
        raise RuntimeError(f"{self.name} stayed busy for {timeout:.0f}s while idle")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> list[int]:
        """SIGTERM, then SIGKILL; returns the pids that had to be killed after their parent ended."""
        self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        leftovers = []
        for p in self._seen.values():
            try:
                p.wait(5)  # a worker ends by itself once its supervisor is gone
            except psutil.TimeoutExpired:
                leftovers.append(p.pid)
                p.kill()
            except psutil.Error:
                pass
        return leftovers


def _spawn(name: str, cmd: list[str], tmp: Path, port: int, env: dict[str, str] | None = None) -> Service:
    log_path = tmp / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_env() | (env or {}),
            cwd=tmp,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509  (prctl only, before exec: no lock is taken)
        )
    return Service(name, proc, log_path, port)


@dataclass
class Supervisor(Service):
    wyoming_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_supervisor(
    tmp: Path,
    name: str,
    ttl: int,
    cpu_threads: int,
    code: Path = REPO,
    timeout: float = 60.0,
    lane_weights: str | None = None,
    batch_size: int | str | None = None,
) -> Supervisor:
    """asr-supervisor serving the bundled tiny.en on CPU int8, beam 5; returns once /health says 200.

    `code` is the checkout whose supervisor/ and worker/ run (PYTHONPATH reaches the
    workers too, and wins over the venv's editable install): another branch's worktree,
    or this one even if the venv holds a non-editable install. `lane_weights` and
    `batch_size` set those keys (the defaults when None).
    """
    config = tmp / f"{name}.toml"
    lanes = "" if lane_weights is None else f'lane_weights = "{lane_weights}"\n'
    lanes += "" if batch_size is None else f"batch_size = {json.dumps(batch_size)}\n"
    config.write_text(
        '[server]\ndefault_model = "tiny.en"\n\n'
        f'[defaults]\nttl = {ttl}\ndevice = "cpu"\ncompute_type = "int8"\nbeam_size = 5\ncpu_threads = {cpu_threads}\n'
        f"{lanes}\n"
        '[models."tiny.en"]\nsource = "bundled"\n'
    )
    port, wyoming_port = free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "supervisor",
        "--config",
        str(config),
        "--port",
        str(port),
        "--wyoming-port",
        str(wyoming_port),
        "--log-level",
        "warning",
    ]
    service = _spawn(name, cmd, tmp, port, {"PYTHONPATH": str(code)})
    sup = Supervisor(service.name, service.proc, service.log_path, port, wyoming_port=wyoming_port)
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=sup.url, timeout=5) as client:
        while True:
            sup.check_alive()
            try:
                if client.get("/health").status_code == 200:
                    return sup
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                sup.stop()
                raise RuntimeError(f"{name} did not answer /health within {timeout:.0f}s:\n{sup.log_tail()}")
            time.sleep(0.05)


def wfw_python() -> str:
    """The interpreter that has wyoming-faster-whisper: this venv, else bench/.venv-wfw."""
    import importlib.util

    if importlib.util.find_spec("wyoming_faster_whisper") is not None:
        return sys.executable
    if WFW_VENV_PYTHON.exists():
        return str(WFW_VENV_PYTHON)
    raise RuntimeError("wyoming-faster-whisper is not installed: pip install -r bench/requirements.txt")


def start_wfw(tmp: Path, model_dir: str, cpu_threads: int, timeout: float = 120.0) -> Service:
    """wyoming-faster-whisper on the same model directory and settings; returns once its port accepts.

    It loads its model before it opens its port, so an accepted connection means ready.
    """
    port = free_port()
    data_dir = tmp / "wfw-data"
    data_dir.mkdir(exist_ok=True)
    cmd = [
        wfw_python(),
        "-m",
        "wyoming_faster_whisper",
        "--uri",
        f"tcp://127.0.0.1:{port}",
        "--model",
        model_dir,
        "--data-dir",
        str(data_dir),
        "--local-files-only",
        "--device",
        "cpu",
        "--compute-type",
        "int8",
        "--beam-size",
        "5",
        "--cpu-threads",
        str(cpu_threads),
        "--stt-library",
        "faster-whisper",
    ]
    service = _spawn("wyoming-faster-whisper", cmd, tmp, port)
    deadline = time.monotonic() + timeout
    while True:
        service.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return service
        except OSError:
            pass
        if time.monotonic() > deadline:
            service.stop()
            raise RuntimeError(f"wyoming-faster-whisper did not open port {port}:\n{service.log_tail()}")
        time.sleep(0.1)
