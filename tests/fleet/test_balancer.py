"""The shipped HAProxy config, checked by HAProxy itself, and rendered for boxes on loopback.

`render` points its three backends at real supervisors; tests/fleet/test_fleet.py runs it
in front of three of them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import Server

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "haproxy.cfg"
pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs Debian's haproxy (.ci/run installs it)")


def test_haproxy_accepts_the_shipped_config() -> None:
    checked = subprocess.run(["haproxy", "-c", "-f", str(SHIPPED)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "WARNING" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr


def render(boxes: list[Server], http: int, wyoming: int, stats: int) -> str:
    """The shipped config with its boxes replaced by `boxes` and its ports by free ones."""
    text = SHIPPED.read_text()
    text = text.replace("bind :8080", f"bind 127.0.0.1:{http}").replace("bind :10300", f"bind 127.0.0.1:{wyoming}")
    text = text.replace("bind :8404", f"bind 127.0.0.1:{stats}")

    def boxes_for(block: re.Match[str]) -> str:
        wyoming_backend = "port 8000" in block.group(0)
        lines = [
            f"    server box{i} 127.0.0.1:{box.wyoming_port} check port {box.port}"
            if wyoming_backend
            else f"    server box{i} 127.0.0.1:{box.port} check"
            for i, box in enumerate(boxes, 1)
        ]
        return "\n".join(lines) + "\n"

    rendered, count = re.subn(r"    # boxes: begin\n(?:.*\n)*?    # boxes: end\n", boxes_for, text)
    assert count == 3, "the shipped config's three backends each list the boxes"
    return rendered


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def servers_up(stats: int) -> int:
    """How many servers HAProxy reports up, over all backends."""
    try:
        text = httpx.get(f"http://127.0.0.1:{stats}/metrics", timeout=2).text
    except httpx.HTTPError:
        return -1
    return sum(
        1
        for line in text.splitlines()
        if line.startswith("haproxy_server_status{") and 'state="UP"' in line and line.endswith(" 1")
    )
