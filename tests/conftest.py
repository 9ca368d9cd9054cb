"""Live-server fixtures: a real supervisor process on a loopback port, real workers."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

ASSETS = Path(__file__).parent / "assets"
REPO = Path(__file__).parent.parent


def make_long_clip(tmp_path: Path, repeats: int, rate: int = 16000) -> bytes:
    """The three clips, repeated with pauses (14.7 s a round): a WAV that takes a while to transcribe.

    `rate=8000` halves the file size (telephone quality; the worker resamples).
    """
    rounds = []
    for name in ("weather", "fox", "short"):
        with wave.open(str(ASSETS / f"{name}.wav"), "rb") as src:
            params = src.getparams()
            rounds.append(src.readframes(src.getnframes()) + b"\0\0" * (params.framerate // 2))
    pcm = b"".join(rounds) * repeats
    if rate != params.framerate:
        pcm = resample_pcm16(pcm, params.framerate, rate)
    out = tmp_path / f"long-{repeats}-{rate}.wav"
    with wave.open(str(out), "wb") as dst:
        dst.setparams(params._replace(framerate=rate))
        dst.writeframes(pcm)
    return out.read_bytes()


def claiming(data: bytes, total_samples: int) -> bytes:
    """A FLAC whose STREAMINFO says it holds `total_samples`, whatever its frames hold."""
    patched = bytearray(data)
    assert patched[:4] == b"fLaC"
    info = int.from_bytes(patched[18:26], "big")  # 20 bits rate, 3 channels, 5 depth, 36 total samples
    patched[18:26] = ((info & ~((1 << 36) - 1)) | total_samples).to_bytes(8, "big")
    return bytes(patched)


def resample_pcm16(pcm: bytes, rate_in: int, rate_out: int) -> bytes:
    """Linear-interpolation resampling of mono 16-bit PCM: good enough for speech tests."""
    import numpy as np

    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    n_out = int(len(samples) * rate_out / rate_in)
    positions = np.arange(n_out) * (rate_in / rate_out)
    return np.interp(positions, np.arange(len(samples)), samples).astype("<i2").tobytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def reference(name: str) -> str:
    return (ASSETS / f"{name}.txt").read_text().strip()


def key_words_found(text: str, expected: list[str]) -> list[str]:
    got = set(words(text))
    return [w for w in expected if w in got]


def worker_pids(supervisor_pid: int) -> list[int]:
    """Every live `python -m worker` process this supervisor started."""
    try:
        children = psutil.Process(supervisor_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p.pid for p in children if _is_worker(p)]


def all_worker_pids_with_parent_arg(supervisor_pid: int) -> list[int]:
    """Workers anywhere on the machine that were started by this supervisor (even re-parented)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        ours = (
            _is_worker_cmd(cmd) and "--parent-pid" in cmd and cmd[cmd.index("--parent-pid") + 1] == str(supervisor_pid)
        )
        if ours and p.status() != psutil.STATUS_ZOMBIE:
            found.append(p.pid)
    return found


def _is_worker(p: psutil.Process) -> bool:
    try:
        return _is_worker_cmd(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _is_worker_cmd(cmd: list[str]) -> bool:
    return len(cmd) >= 3 and cmd[1:3] == ["-m", "worker"]


def wait_for(
    predicate: Callable[[], object], timeout: float, interval: float = 0.05, what: str = "condition"
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    config_path: Path
    log_path: Path
    wyoming_port: int
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def health(self) -> dict:
        return self.client.get("/health").json()

    def model(self, name: str = "tiny.en") -> dict:
        return self.health()["models"][name]

    def transcribe(self, clip: str = "fox.wav", **form: str) -> httpx.Response:
        path = ASSETS / clip
        return self.client.post("/v1/audio/transcriptions", files={"file": (path.name, path.read_bytes())}, data=form)

    @contextlib.contextmanager
    def request_in_flight(
        self, clip: bytes, model: str = "tiny.en"
    ) -> Iterator[concurrent.futures.Future[httpx.Response]]:
        """POST `clip` in the background; yield once the model counts it in flight."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                self.client.post, "/v1/audio/transcriptions", files={"file": ("long.wav", clip)}, data={"model": model}
            )
            wait_for(lambda: self.model(model)["in_flight"] == 1, 30, what=f"a request in flight on {model}")
            yield pending

    @contextlib.contextmanager
    def held(self, model: str = "tiny.en") -> Iterator[int]:
        """Hold `model`'s worker still (SIGSTOP) until the block ends (SIGCONT), and yield its PID.

        What it has in flight stays in flight for as long as the test needs, however fast the
        machine: the way to overlap a request with a reload, an unload or a TTL without a clip
        long enough to outlast them. A pause far shorter than `heartbeat_timeout` (30 s unless
        the config says less) is not taken for a hang."""
        pid = self.model(model)["pid"]
        assert pid is not None, f"{model} has no worker to hold"
        os.kill(pid, signal.SIGSTOP)
        try:
            yield pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def live_sessions(self) -> float:
        """Live sessions open (WebSocket, Realtime, Wyoming streaming), by the server's own gauge."""
        from prometheus_client.parser import text_string_to_metric_families

        families = text_string_to_metric_families(self.client.get("/metrics").text)
        return sum(s.value for f in families if f.name == "asr_live_sessions" for s in f.samples)

    def model_worker_pids(self) -> list[int]:
        """Worker processes that hold a model: every worker but the warm spares."""
        spares = set(self.health()["spare_pids"].values())
        return [pid for pid in worker_pids(self.pid) if pid not in spares]

    def log(self, since: int = 0) -> str:
        """Its output so far; from `since` (an earlier `len(log())`), what came after that mark:
        on a shared server, what one test caused."""
        return self.log_path.read_text(errors="replace")[since:]

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(
    tmp_path: Path,
    config: str,
    *args: str,
    wait: bool = True,
    env: dict[str, str] | None = None,
    warm_spare: bool = False,
    ports: tuple[int, int] | None = None,
) -> Server:
    """A supervisor on free ports (or `ports`: HTTP, Wyoming, as a restarted box keeps its
    own). Without `warm_spare`, every worker process it has is a model's, which keeps PID
    counting simple; tests/test_spares.py covers the spare."""
    port, wyoming_port = ports or (free_port(), free_port())
    config_path = tmp_path / f"asr-{port}.toml"
    config_path.write_text(textwrap.dedent(config))
    log_path = tmp_path / f"supervisor-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    env.pop("ASR_CONFIG", None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "supervisor",
                "--config",
                str(config_path),
                "--port",
                str(port),
                "--wyoming-port",
                str(wyoming_port),
                *([] if warm_spare else ["--no-warm-spare"]),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    server = Server(proc, port, config_path, log_path, wyoming_port)
    if wait:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"supervisor exited with {proc.returncode}:\n{server.log()}")
            try:
                if server.client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                raise AssertionError(f"supervisor did not answer /health:\n{server.log()}")
            time.sleep(0.05)
    return server


def stop_and_check(server: Server) -> None:
    """Stop a supervisor and check that it leaves no worker behind, whatever its tests did."""
    pid = server.pid
    server.stop()
    wait_for(lambda: not all_worker_pids_with_parent_arg(pid), 10, what=f"workers of {pid} to exit")


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start supervisors with a given asr.toml, for a test that needs its own: one that kills or
    stops it, reloads its configuration, changes a TTL, crashes a worker, counts what a test
    before it would have disturbed, or leaves a worker decoding what nobody waits for any more
    (the tests after it would pay for that CPU). Each is stopped, and checked for leftovers,
    at the end."""
    started: list[Server] = []

    def make(
        config: str = "", *args: str, wait: bool = True, env: dict[str, str] | None = None, warm_spare: bool = False
    ) -> Server:
        server = start_server(tmp_path, config, *args, wait=wait, env=env, warm_spare=warm_spare)
        started.append(server)
        return server

    yield make
    for server in started:
        stop_and_check(server)


BASIC_CONFIG = """
[server]
default_model = "tiny.en"

[defaults]
ttl = -1

[models."tiny.en"]
source = "bundled"
description = "bundled test model"
"""


class ServerPool:
    """Servers shared across modules: one per configuration, started by the first test that
    asks for it and stopped at the end of the run. A test on one may load and unload models
    and send what it likes, but never stop it, reload it or crash its workers (make_server)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: dict[str, Server] = {}

    def get(self, config: str, **kwargs: object) -> Server:
        key = repr((textwrap.dedent(config), sorted(kwargs.items())))
        if key not in self.servers:
            home = self.root / f"shared-{len(self.servers)}"
            home.mkdir()
            self.servers[key] = start_server(home, config, **kwargs)  # type: ignore[arg-type]
        server = self.servers[key]
        assert server.proc.poll() is None, f"a shared server ended (exit {server.proc.returncode}):\n{server.log()}"
        return server

    def close(self) -> None:
        for server in self.servers.values():
            stop_and_check(server)


@pytest.fixture(scope="session")
def server_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    pool = ServerPool(tmp_path_factory.mktemp("shared"))
    yield pool
    pool.close()


def server_fixture(config: str, *, shared: bool = False, **kwargs: object) -> Callable[..., Iterator[Server]]:
    """A module-scoped fixture: one server with `config` for every test in the module. With
    `shared`, the server comes from the run's ServerPool, and every module that asks for the
    same configuration (and `kwargs`) gets the same server."""

    if shared:

        @pytest.fixture(scope="module")
        def pooled(server_pool: ServerPool) -> Iterator[Server]:
            yield server_pool.get(config, **kwargs)

        return pooled

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
        server = start_server(tmp_path_factory.mktemp("server"), config, **kwargs)  # type: ignore[arg-type]
        yield server
        stop_and_check(server)

    return fixture


#: One long-lived server (TTL off) for the whole run, for tests that only need a working
#: endpoint; it runs the default configuration, warm spare included. A live session it
#: unloads under gets half a second to finish (tests/test_live.py times that).
shared_server = server_fixture(
    BASIC_CONFIG.replace("[server]\n", "[server]\nsession_drain_timeout = 0.5\n"), shared=True, warm_spare=True
)

#: Every test module's keys, on one shared server: each uses its own, and none may load
#: "other" (tests/hostile/test_auth.py counts on it staying unloaded).
KEYED_CONFIG = """
[server]
default_model = "tiny.en"
api_keys = ["user-key", "k1", "s3cret", "other", "sk-scrape-secret-1234", "sk-realtime-test"]
admin_keys = ["admin-key"]
[defaults]
ttl = -1
[models."tiny.en"]
source = "bundled"
[models."other"]
source = "bundled"
"""
keyed_server = server_fixture(KEYED_CONFIG, shared=True)

#: Room for one live session (WebSocket or Realtime), shared by the tests of that limit.
one_session_server = server_fixture(
    '[server]\nmax_live_sessions = 1\n[models."tiny.en"]\nsource = "bundled"\nttl = -1\n', shared=True
)


#: Figures the reliability and hostile-input tests measure (section, figure, value), printed
#: after the run so the table in docs/reliability.md can be checked against any CI log: those
#: this process's tests recorded and its reports have not carried yet (pytest_runtest_makereport).
FIGURES: list[tuple[str, str, str]] = []
#: Every figure of the run, in the process that prints the summary (the xdist controller).
REPORTED: list[tuple[str, str, str]] = []
_FIGURE = "asr-figure"


def record_figure(section: str, figure: str, value: object) -> None:
    FIGURES.append((section, figure, str(value)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A test's figures travel with its report: under pytest-xdist it ran in a worker, and
    only the controller prints the summary."""
    report = yield
    report.user_properties += [(_FIGURE, figure) for figure in FIGURES]
    FIGURES.clear()
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    REPORTED.extend(tuple(value) for name, value in report.user_properties if name == _FIGURE)


#: The container image's build (tests/fleet/image_build.py): one a run, started in the
#: background as soon as the container test is known to be among the selected tests, which
#: runs last and waits for the status file the build writes. Under pytest-xdist the
#: controller starts it (the workers inherit the log's path from the environment); without,
#: this process does, after collection.
IMAGE_BUILD: subprocess.Popen[bytes] | None = None
IMAGE_BUILD_LOG = Path(
    os.environ.setdefault(
        "ASR_IMAGE_BUILD_LOG", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"asr-image-build-{os.getpid()}.log")
    )
)
CONTAINER_TEST = "test_container.py::test_the_image_"


#: The quick tier (`scripts/test --quick`, marker `quick`): unit and contract tests that
#: start no server and load no model, for a check in about a minute.
QUICK_MODULES = {
    "test_audio_stream.py",
    "test_batch_size.py",
    "test_cuda_libs.py",
    "test_doctor.py",
    "test_boundaries.py",
    "test_docs.py",
    "test_flags.py",
    "test_worker_handle.py",
    "test_formats.py",
    "test_lane_plan.py",
    "test_lifecycle.py",
    "test_protocol.py",
    "test_reload_units.py",
    "test_worker_protocol.py",
    "test_balancer.py",
    "test_kubernetes.py",
}


def pytest_itemcollected(item: pytest.Item) -> None:
    if item.path.name in QUICK_MODULES:  # marked as collected: before -m selects
        item.add_marker(pytest.mark.quick)


@pytest.hookimpl(trylast=True)  # after -k / -m have deselected what they do
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the container test last, and start the image build now (see IMAGE_BUILD)."""
    items.sort(key=lambda item: CONTAINER_TEST in item.nodeid)  # stable: the rest keep their order
    if "PYTEST_XDIST_WORKER" not in os.environ and any(CONTAINER_TEST in item.nodeid for item in items):
        _start_image_build()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """The xdist controller's side of pytest_collection_modifyitems: a worker's selected tests."""
    if any(CONTAINER_TEST in nodeid for nodeid in ids):
        _start_image_build()


def _start_image_build() -> None:
    """At the lowest CPU priority, so its downloads and unpacking overlap the other tests
    instead of adding two minutes to the suite."""
    global IMAGE_BUILD
    if IMAGE_BUILD is not None or not (shutil.which("podman") and shutil.which("mmdebstrap")):
        return
    IMAGE_BUILD_LOG.write_bytes(b"")  # the container test's sign that a build is under way
    IMAGE_BUILD = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "fleet" / "image_build.py"), str(IMAGE_BUILD_LOG)],
        preexec_fn=lambda: os.nice(19),  # noqa: PLW1509 - a plain fork, no threads to upset yet
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    if IMAGE_BUILD is not None and IMAGE_BUILD.poll() is None:  # the run stopped before its test
        IMAGE_BUILD.terminate()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTED:
        return
    terminalreporter.section("reliability figures")
    width = max(len(f"{section}: {figure}") for section, figure, _ in REPORTED)
    for section, figure, value in REPORTED:
        terminalreporter.write_line(f"{f'{section}: {figure}':<{width}}  {value}")
