"""The supervisor stays light and the workers stay private."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
from conftest import ASSETS, Server

ML_MODULES = ("torch", "ctranslate2", "faster_whisper", "nemo", "onnxruntime", "av", "numpy", "tokenizers")


def test_the_supervisor_imports_no_ml_library_even_after_serving(tmp_path: Path) -> None:
    # Run the real app in-process (uvicorn in a thread), serve a real transcription and a
    # live session through it, then look at what that interpreter has imported.
    script = textwrap.dedent(f"""
        import json, sys, threading, time
        import httpx, uvicorn
        from supervisor.interfaces.http.app import create_app
        from supervisor.config import Overrides, load_settings
        from conftest import free_port

        port = free_port()
        settings = load_settings(None, Overrides(ttl=-1))
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        with open({str(ASSETS / "fox.wav")!r}, "rb") as f:
            r = httpx.post(f"http://127.0.0.1:{{port}}/v1/audio/transcriptions", files={{"file": f}}, timeout=60)
        # And a live session: the engine (VAD, agreement) lives in the worker too.
        import asyncio, wave
        from websockets.asyncio.client import connect

        async def live():
            with wave.open({str(ASSETS / "short.wav")!r}) as w:
                pcm = w.readframes(w.getnframes()) + bytes(32000)
            async with connect(f"ws://127.0.0.1:{{port}}/v1/audio/transcriptions/stream") as ws:
                await ws.send(pcm)
                await ws.send(json.dumps({{"type": "end"}}))
                return [json.loads(m)["type"] async for m in ws]

        live_types = asyncio.run(live())
        server.should_exit = True
        thread.join(30)
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({ML_MODULES!r}))
        print(json.dumps({{"status": r.status_code, "text": r.json().get("text"), "loaded": loaded,
                          "live": live_types}}))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 200 and "fox" in result["text"].lower()
    assert "final" in result["live"], result["live"]
    assert result["loaded"] == [], f"the supervisor imported {result['loaded']}"


def test_worker_sockets_are_private_unix_sockets(shared_server: Server) -> None:
    assert shared_server.transcribe("short.wav").status_code == 200
    worker = psutil.Process(shared_server.model()["pid"])
    # The worker listens on nothing: it connects out to a Unix socket only.
    assert [c for c in worker.net_connections(kind="inet")] == []
    supervisor = psutil.Process(shared_server.pid)
    listening = {c.laddr.port for c in supervisor.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    assert listening == {shared_server.port, shared_server.wyoming_port}, "ZeroMQ must not open TCP ports"

    sockets = [c.laddr for c in supervisor.net_connections(kind="unix") if c.laddr]
    runtime_dirs = {Path(s).parent for s in sockets if "asr-supervisor-" in s}
    assert len(runtime_dirs) == 1, sockets
    runtime_dir = runtime_dirs.pop()
    assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
    assert runtime_dir.name.startswith(f"asr-supervisor-{shared_server.pid}-")


def test_runtime_dir_is_removed_at_shutdown(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server("[defaults]\nttl = -1\n")
    assert server.transcribe("short.wav").status_code == 200
    supervisor = psutil.Process(server.pid)
    sockets = [c.laddr for c in supervisor.net_connections(kind="unix") if c.laddr and "asr-supervisor-" in c.laddr]
    runtime_dir = Path(sockets[0]).parent
    assert runtime_dir.exists()
    server.stop()
    assert not runtime_dir.exists()
