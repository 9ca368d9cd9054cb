"""Several models, independent TTLs, a capacity limit: real workers, real eviction."""

from __future__ import annotations

import psutil
from conftest import ASSETS, Server, wait_for, worker_pids


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_independent_ttls(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server("""
    [models."fast"]
    source = "bundled"
    ttl = 2
    [models."keep"]
    source = "bundled"
    ttl = -1
    """)
    # The PIDs come from the responses: on a busy machine, fast's 2 s may be over before
    # /health is asked (reading it there made this test fail about 2 runs in 5 under load).
    first, second = server.transcribe("short.wav", model="fast"), server.transcribe("short.wav", model="keep")
    assert first.status_code == 200 and second.status_code == 200
    fast, keep = int(first.headers["x-asr-worker-pid"]), int(second.headers["x-asr-worker-pid"])
    assert fast != keep and keep in worker_pids(server.pid)
    wait_for(lambda: server.model("fast")["state"] == "unloaded", 15, what="fast to unload")
    assert _gone(fast)
    assert server.model("keep")["state"] == "ready" and psutil.pid_exists(keep)


def test_single_resident_model(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server("""
    [server]
    max_loaded_models = 1
    default_model = "a"
    [defaults]
    ttl = -1
    [models."a"]
    source = "bundled"
    [models."b"]
    source = "bundled"
    """)
    assert server.transcribe("short.wav").status_code == 200
    a = server.model("a")["pid"]
    r = server.transcribe("short.wav", model="b")
    assert r.status_code == 200 and "kitchen" in r.json()["text"].lower()
    assert _gone(a), "loading b must stop a's worker first"
    assert worker_pids(server.pid) == [server.model("b")["pid"]]
    health = server.health()
    capacity = health["capacity"]
    assert capacity == {
        "max_loaded_models": 1,
        "memory_budget_mb": 0,
        "loaded": ["b"],
        "memory_mb": capacity["memory_mb"],
    }
    assert capacity["memory_mb"] == server.model("b")["memory_mb"] > 0
    assert server.model("a")["state"] == "unloaded"

    # The sidecar's model switch, then a request with no model: a comes back, b goes.
    assert server.client.post("/v1/settings/model", json={"model_id": "a"}).json()["model"] == "a"
    r = server.transcribe("fox.wav")
    assert r.status_code == 200 and r.headers["x-asr-model"] == "a"
    assert server.model("b")["state"] == "unloaded" and len(worker_pids(server.pid)) == 1


def test_busy_full_server_answers_503_and_loses_nothing(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server("""
    [server]
    max_loaded_models = 1
    capacity_wait = 1
    [defaults]
    ttl = -1
    [models."a"]
    source = "bundled"
    [models."b"]
    source = "bundled"
    """)
    clip = (ASSETS / "weather.wav").read_bytes()
    assert server.transcribe("short.wav", model="a").status_code == 200
    with server.request_in_flight(clip, model="a") as busy:
        with server.held("a"):  # a's worker keeps it busy far longer than capacity_wait
            refused = server.transcribe("short.wav", model="b")
        long_response = busy.result()
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "capacity_full" and int(refused.headers["retry-after"]) >= 1
    assert long_response.status_code == 200 and "weather" in long_response.json()["text"].lower()
    assert server.model("b")["state"] == "unloaded" and server.model("b")["last_error"] is None
    # Once a is idle, b gets its place.
    assert server.transcribe("short.wav", model="b").status_code == 200
    assert server.model("a")["state"] == "unloaded"
