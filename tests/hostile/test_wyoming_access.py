"""Wyoming has no credentials: `wyoming_allow` decides who is served, and a server whose
HTTP routes need keys says loudly at start-up when Wyoming serves everyone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import Server
from wyoming.client import AsyncClient, AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info

from supervisor.config import load_settings
from supervisor.interfaces.wyoming.server import WyomingService

BASE = '[defaults]\nttl = -1\n[models."tiny.en"]\nsource = "bundled"\n'


async def describe(client: AsyncClient) -> list[Event]:
    """Ask, and read every event until the server closes or answers with info."""
    events = []
    async with client:
        await client.write_event(Describe().event())
        while (event := await asyncio.wait_for(client.read_event(), 10)) is not None:
            events.append(event)
            if Info.is_type(event.type):
                break
    return events


def test_an_address_outside_wyoming_allow_is_refused(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    socket_path = tmp_path / "wyoming.sock"
    config = f'[server]\napi_keys = ["k-1"]\nwyoming_allow = ["10.0.0.0/8"]\n{BASE}'
    server: Server = make_server(config)
    events = asyncio.run(describe(AsyncTcpClient("127.0.0.1", server.wyoming_port)))
    assert [e.type for e in events] == ["error"]
    error = Error.from_event(events[0])
    assert error.code == "forbidden" and "wyoming_allow" in error.text
    log = server.log()
    assert "WARNING asr.wyoming wyoming 127.0.0.1:" in log and "(forbidden)" in log
    assert "SECURITY" not in log  # keys are set, but Wyoming does not serve everyone

    # A unix socket has no peer address: its file's permissions guard it, and it is served.
    unix: Server = make_server(config, "--wyoming-uri", f"unix://{socket_path}")
    events = asyncio.run(describe(AsyncClient.from_uri(f"unix://{socket_path}")))
    assert [e.type for e in events] == ["info"], events
    assert "SECURITY" not in unix.log()


def test_the_default_serves_loopback(shared_server: Server) -> None:
    server = shared_server  # no wyoming_allow in its configuration
    events = asyncio.run(describe(AsyncTcpClient("127.0.0.1", server.wyoming_port)))
    assert [e.type for e in events] == ["info"], events


@pytest.mark.parametrize(
    ("server_table", "env_keys", "warned"),
    [
        ('host = "0.0.0.0"\napi_keys = ["k-1"]\nwyoming_allow = ["0.0.0.0/0"]', "", True),
        ('host = "0.0.0.0"\nwyoming_allow = ["::/0", "127.0.0.0/8"]', "k-1", True),  # keys from $ASR_API_KEYS
        ('wyoming_uri = "tcp://192.168.1.5:10300"\napi_keys = ["k-1"]\nwyoming_allow = ["0.0.0.0/0"]', "", True),
        ('host = "0.0.0.0"\nwyoming_allow = ["0.0.0.0/0"]', "", False),  # no keys: nothing is promised
        ('host = "0.0.0.0"\napi_keys = ["k-1"]', "", False),  # the default: loopback and private ranges
        ('host = "127.0.0.1"\napi_keys = ["k-1"]\nwyoming_allow = ["0.0.0.0/0"]', "", False),  # loopback only
        ('wyoming_uri = "unix:///run/asr/w.sock"\napi_keys = ["k-1"]\nwyoming_allow = ["0.0.0.0/0"]', "", False),
    ],
)
def test_start_up_warns_when_keys_are_set_but_wyoming_serves_everyone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_table: str, env_keys: str, warned: bool
) -> None:
    # The decision only: binding 0.0.0.0 in a test would open a port to the network.
    monkeypatch.setenv("ASR_API_KEYS", env_keys)
    path = tmp_path / "asr.toml"
    path.write_text(f"[server]\n{server_table}\n{BASE}")
    settings = load_settings(path)
    wyoming = WyomingService(settings.server, None, api_keys_set=bool(settings.api_keys))  # type: ignore[arg-type]
    if warned:
        assert wyoming.warning is not None and "without a key" in wyoming.warning
        assert "wyoming_allow" in wyoming.warning
    else:
        assert wyoming.warning is None
