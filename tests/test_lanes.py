"""Two lanes on model copies or on shared weights: real supervisor, real workers, real requests."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys

from conftest import Server, wait_for

#: A budget smaller than any worker: each model still loads alone (the lone-model rule), one
#: at a time, and "auto" sees no room for a second copy.
CONFIG = """
[server]
memory_budget_mb = 150
default_model = "copy"
[defaults]
ttl = -1
cpu_threads = 1
concurrency = 2
[models."copy"]
source = "bundled"
lane_weights = "copy"
[models."shared"]
source = "bundled"
lane_weights = "shared"
[models."auto"]
source = "bundled"
"""


def _two_at_once(server: Server, model: str) -> list[str]:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda clip: server.transcribe(clip, model=model), ["weather.wav", "fox.wav"]))
    assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    return [r.json()["text"].lower() for r in replies]


def _asrctl_status(url: str) -> str:
    env = {**os.environ, "ASR_URL": url, "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "supervisor.ctl", "status"], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_copies_and_shared_weights_serve_two_at_once_and_shared_holds_less(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(CONFIG)
    rss: dict[str, float] = {}
    copy_mb: dict[str, float] = {}
    for model in ("copy", "shared"):
        weather, fox = _two_at_once(server, model)
        assert "weather is sunny" in weather and "quick brown fox" in fox
        # Both lanes run model calls, on two copies or on one copy's two CTranslate2 workers.
        wait_for(lambda model=model: server.model(model)["lanes_open"] == 2, 30, what=f"{model}: both lanes open")
        m = server.model(model)
        assert m["concurrency"] == 2 and m["lane_weights"] == model
        assert m["copies"] == (2 if model == "copy" else 1) and m["copy_mb"] > 20
        # The budget counts what the worker holds, every copy included, from READY on.
        assert m["memory_mb"] >= m["rss_mb"] - 1
        rss[model], copy_mb[model] = m["rss_mb"], m["copy_mb"]
        if model == "copy":
            assert "2, 2 copies" in _asrctl_status(server.url)
    # Loading "shared" evicted "copy": neither fits the budget beside the other.
    assert server.model("copy")["state"] == "unloaded"
    assert "2, shared" in _asrctl_status(server.url)
    health = server.health()
    assert health["capacity"]["memory_mb"] == server.model("shared")["memory_mb"]
    # Two requests decoded side by side on one shared copy hold less than on two copies.
    assert rss["shared"] < rss["copy"] - copy_mb["copy"] / 3, (rss, copy_mb)

    # auto with no room in the budget for a second copy shares, and says why.
    weather, fox = _two_at_once(server, "auto")
    assert "weather is sunny" in weather and "quick brown fox" in fox
    auto = server.model("auto")
    assert (auto["concurrency"], auto["copies"], auto["lane_weights"]) == (2, 1, "shared")
    assert "memory_budget_mb" in auto["lanes_reason"]


def test_copies_load_by_themselves_not_on_first_concurrent_use(make_server) -> None:  # type: ignore[no-untyped-def]
    """An idle worker loads its copies on its own; READY announced their memory before that."""
    server: Server = make_server(CONFIG.replace("memory_budget_mb = 150", "memory_budget_mb = 0"))
    server.client.post("/v1/model/load", params={"model": "auto"}).raise_for_status()
    m = server.model("auto")
    assert (m["copies"], m["lane_weights"]) == (2, "copy"), m["lanes_reason"]  # no budget; plenty of RAM here
    announced, copy_mb = m["memory_mb"], m["copy_mb"]
    # No request has run: the second copy loads by itself, its lane opens, and the RSS nears
    # what READY announced (the RSS then + one copy).
    wait_for(lambda: server.model("auto")["lanes_open"] == 2, 30, what="the second lane to open")
    assert server.model("auto")["rss_mb"] >= announced - copy_mb / 2
