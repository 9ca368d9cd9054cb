"""TTL unloading ends the worker process; requests are never lost to it."""

from __future__ import annotations

import concurrent.futures

import psutil
from conftest import ASSETS, Server, wait_for, worker_pids


def _config(ttl: int) -> str:
    return f"""
    [defaults]
    ttl = {ttl}
    [models."tiny.en"]
    source = "bundled"
    """


def test_worker_process_is_gone_after_the_ttl(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(_config(2))
    assert server.model()["state"] == "unloaded" and worker_pids(server.pid) == []  # lazy: nothing loaded yet

    assert server.transcribe("short.wav").status_code == 200
    pid = server.model()["pid"]
    assert psutil.pid_exists(pid)
    assert 0 < server.model()["ttl_remaining"] <= 2

    wait_for(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        timeout=2 + 8,
        what="worker to end after the TTL",
    )
    model = wait_for(lambda: (m := server.model())["state"] == "unloaded" and m, 5, what="state unloaded")
    assert model["pid"] is None
    assert worker_pids(server.pid) == []

    # The next request loads a fresh worker.
    response = server.transcribe("short.wav")
    assert response.status_code == 200 and "kitchen" in response.json()["text"].lower()
    assert server.model()["pid"] not in (None, pid)


def test_ttl_minus_one_keeps_the_worker(make_server) -> None:  # type: ignore[no-untyped-def]
    # "brief" beside it is the clock: loaded after tiny.en's request ended, with a 3 s TTL, it
    # ends once tiny.en has been idle for longer than 3 s, TTL checks and all.
    server: Server = make_server(_config(-1) + _WITNESS.format(ttl=3))
    assert server.transcribe("short.wav").status_code == 200
    pid = server.model()["pid"]
    _wait_out_a_ttl(server)
    assert server.model()["state"] == "ready" and server.model()["pid"] == pid
    assert psutil.pid_exists(pid)


def test_ttl_zero_ends_the_worker_after_each_request_and_loses_none(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(_config(0))
    pids = []
    for _ in range(3):
        # Each request arrives while the previous request's worker is still stopping
        # (or just after): it must be served by a fresh worker, never hang or fail.
        response = server.transcribe("short.wav")
        assert response.status_code == 200, response.text
        assert "kitchen" in response.json()["text"].lower()
        pids.append(int(response.headers["x-asr-worker-pid"]))
    assert len(set(pids)) == 3, f"every request should get a fresh worker, got {pids}"
    wait_for(lambda: not worker_pids(server.pid), 10, what="the last worker to end")
    wait_for(lambda: server.model()["state"] == "unloaded", 5, what="state unloaded")
    assert "state=stopping→unloaded" in server.log()


def test_ttl_never_fires_under_a_request_in_flight(make_server) -> None:  # type: ignore[no-untyped-def]
    # A 1 s TTL and three requests held in flight (their worker stopped) for longer than that,
    # then let go: the worker must survive every one of them, and stop only once they are all done.
    server: Server = make_server(_config(1) + _WITNESS.format(ttl=1))
    clip = (ASSETS / "weather.wav").read_bytes()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(server.client.post, "/v1/audio/transcriptions", files={"file": ("weather.wav", clip)})]
        wait_for(lambda: server.model()["in_flight"] == 1, 30, what="the first request to load the worker")
        with server.held() as pid:
            futures += [
                pool.submit(server.client.post, "/v1/audio/transcriptions", files={"file": ("weather.wav", clip)})
                for _ in range(2)
            ]
            wait_for(lambda: server.model()["in_flight"] == 3, 30, what="three requests in flight")
            _wait_out_a_ttl(server)  # a second past the last request's arrival: its TTL had every chance
            assert server.model()["state"] == "ready" and server.model()["pid"] == pid
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]
    assert len({r.headers["x-asr-worker-pid"] for r in responses}) == 1
    wait_for(lambda: server.model()["state"] == "unloaded", 10, what="unload after the last request")


#: A second model, loaded only to time a TTL: what it does the model under test would do too.
_WITNESS = """
    [models."brief"]
    source = "bundled"
    ttl = {ttl}
    """


def _wait_out_a_ttl(server: Server) -> None:
    """Load "brief" now and wait for its TTL to end its worker: by then as long as its TTL has
    passed since every request that came before, with the server's TTL checks running."""
    response = server.transcribe("short.wav", model="brief")
    assert response.status_code == 200, response.text
    wait_for(lambda: server.model("brief")["state"] == "unloaded", 30, what="brief's TTL to end its worker")
