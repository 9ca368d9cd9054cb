"""A loopback "hub" that accepts connections and never answers: a model download that hangs.

Tests use it to hold a worker in the middle of its load for as long as they like, with no
network: everything stays on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path


class SilentHub:
    """A TCP server that accepts connections and never answers: a hub download that hangs."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.connected = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._held.append(conn)
            self.connected.set()

    def close(self) -> None:
        self._listener.close()
        for conn in self._held:
            conn.close()


def silent_hub_env(hub: SilentHub, tmp_path: Path) -> dict[str, str]:
    """The environment of a process whose hub downloads hang: online, and pointed at `hub`
    (with the client's timeouts long enough that the load really waits)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") and not k.lower().endswith("_proxy")
    }
    return env | {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "NO_PROXY": "127.0.0.1",
        "HF_HUB_ETAG_TIMEOUT": "600",
        "HF_HUB_DOWNLOAD_TIMEOUT": "600",
    }
