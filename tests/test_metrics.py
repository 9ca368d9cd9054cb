"""`/metrics`: scraped from a real server after real requests (httpx, Wyoming, the WebSocket),
parsed with prometheus_client's own parser, and checked by `promtool`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import wave
from pathlib import Path

import pytest
from conftest import ASSETS, Server, server_fixture, wait_for
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient

from common.protocol import LATENCY_BUCKETS, Heartbeat, Latencies, WorkTotals
from supervisor.metrics.collector import _cumulative
from supervisor.models.tally import ModelTally
from worker.engine.batcher import Work
from worker.engine.tally import Arrivals, Tally

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"

server = server_fixture("""
[server]
default_model = "tiny.en"

[defaults]
ttl = -1

[models."tiny.en"]
source = "bundled"

[models."brief"]
source = "bundled"
ttl = 1
""")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: Server, **headers: str) -> Samples:
    response = server.client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
    want = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and want <= have)


def has(samples: Samples, name: str, **labels: str) -> bool:
    want = set(labels.items())
    return any(n == name and want <= have for n, have in samples)


def pcm(name: str) -> tuple[bytes, int]:
    with wave.open(str(ASSETS / f"{name}.wav"), "rb") as clip:
        return clip.readframes(clip.getnframes()), clip.getframerate()


FOX_SECONDS = len(pcm("fox")[0]) / (2 * pcm("fox")[1])


def transcribe(server: Server, model: str = "tiny.en") -> None:
    path = ASSETS / "fox.wav"
    response = server.client.post(
        "/v1/audio/transcriptions", files={"file": (path.name, path.read_bytes())}, data={"model": model}
    )
    assert response.status_code == 200, response.text


async def wyoming_transcribe(port: int, audio: bytes, rate: int) -> str:
    """Home Assistant's sequence; returns the transcript."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
        for i in range(0, len(audio), 3200):
            await client.write_event(AudioChunk(rate=rate, width=2, channels=1, audio=audio[i : i + 3200]).event())
        await client.write_event(AudioStop().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), 60)
            assert event is not None
            if Transcript.is_type(event.type):
                return Transcript.from_event(event).text


async def live_transcribe(url: str, audio: bytes) -> list[dict[str, object]]:
    """A WebSocket live session: the audio in 100 ms frames, then `end`; every message back."""
    messages = []
    async with connect(url.replace("http://", "ws://") + "/v1/audio/transcriptions/stream") as ws:
        for i in range(0, len(audio), 3200):
            await ws.send(audio[i : i + 3200])
        await ws.send(json.dumps({"type": "end"}))
        async for message in ws:
            messages.append(json.loads(message))
    return messages


# -- after real requests --------------------------------------------------------------


def test_an_http_transcription_moves_the_counts_and_histograms(server: Server) -> None:
    before = scrape(server)
    transcribe(server)
    after = scrape(server)
    http = {"model": "tiny.en", "interface": "http"}

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("whisper_transcription_requests_total", **http, status="ok") == 1
    assert moved("whisper_transcription_duration_seconds_count", **http) == 1
    assert moved("whisper_transcription_duration_seconds_sum", **http) > 0
    assert moved("whisper_audio_duration_seconds_sum", **http) == pytest.approx(FOX_SECONDS, abs=0.01)
    assert moved("asr_real_time_factor_count", **http) == 1
    assert moved("asr_request_wait_seconds_count", **http) == 1
    assert value(after, "whisper_active_requests", **http) == 0
    assert value(after, "whisper_model_loaded", model="tiny.en") == 1
    assert value(after, "whisper_model_load_time_seconds", model="tiny.en") > 0
    assert value(after, "asr_worker_resident_memory_bytes", model="tiny.en") > 50e6
    # Nothing was said over the other interfaces.
    assert moved("whisper_transcription_requests_total", model="tiny.en", interface="wyoming") == 0
    # The worker's own figures come with its next heartbeat: its time in the model, the audio it held.
    wait_for(
        lambda: (
            value(scrape(server), "asr_inference_audio_seconds_total", model="tiny.en")
            >= value(before, "asr_inference_audio_seconds_total", model="tiny.en") + FOX_SECONDS - 0.01
        ),
        20,
        what="the worker's heartbeat to count the request's audio",
    )
    assert value(scrape(server), "asr_inference_seconds_total", model="tiny.en") > value(
        before, "asr_inference_seconds_total", model="tiny.en"
    )
    # The model calls its windows took, and the windows they held: at least one each, never fewer
    # windows than calls (their ratio is the mean batch).
    now = scrape(server)
    calls = value(now, "asr_batch_passes_total", model="tiny.en") - value(
        before, "asr_batch_passes_total", model="tiny.en"
    )
    windows = value(now, "asr_batch_items_total", model="tiny.en") - value(
        before, "asr_batch_items_total", model="tiny.en"
    )
    assert 1 <= calls <= windows


def test_a_failed_request_is_counted_with_its_kind(server: Server) -> None:
    before = scrape(server)
    response = server.client.post("/v1/audio/transcriptions", files={"file": ("x.wav", b"not audio at all")})
    assert response.status_code == 400
    after = scrape(server)
    labels = {"model": "tiny.en", "interface": "http", "status": "bad_audio"}
    assert (
        value(after, "whisper_transcription_requests_total", **labels)
        - value(before, "whisper_transcription_requests_total", **labels)
        == 1
    )


def test_wyoming_and_websocket_requests_carry_their_interface(server: Server) -> None:
    before = scrape(server)
    audio, rate = pcm("fox")
    assert "fox" in asyncio.run(wyoming_transcribe(server.wyoming_port, audio, rate)).lower()
    messages = asyncio.run(asyncio.wait_for(live_transcribe(server.url, audio), 60))
    assert any(m["type"] == "final" for m in messages), messages
    after = scrape(server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("whisper_transcription_requests_total", model="tiny.en", interface="wyoming", status="ok") == 1
    assert moved("whisper_transcription_requests_total", model="tiny.en", interface="stream", status="ok") == 1
    assert moved("whisper_transcription_requests_total", interface="http") == 0
    assert moved("whisper_audio_duration_seconds_sum", interface="stream") == pytest.approx(FOX_SECONDS, abs=0.01)
    assert moved("asr_wyoming_connections_total", outcome="accepted") == 1
    assert value(after, "asr_wyoming_connections_open") == 0
    assert value(after, "asr_live_sessions", model="tiny.en") == 0
    # Both were decoded live: the worker timed their first partial and their final.
    wait_for(
        lambda: (
            value(scrape(server), "asr_live_final_after_speech_seconds_count", model="tiny.en")
            >= value(before, "asr_live_final_after_speech_seconds_count", model="tiny.en") + 2
        ),
        20,
        what="the worker's heartbeat to count two finals",
    )
    now = scrape(server)
    assert value(now, "asr_live_first_partial_seconds_count", model="tiny.en") > value(
        before, "asr_live_first_partial_seconds_count", model="tiny.en"
    )
    assert value(now, "asr_live_inference_seconds_total", model="tiny.en") > 0
    inf = value(now, "asr_live_final_after_speech_seconds_bucket", model="tiny.en", le="+Inf")
    assert inf == value(now, "asr_live_final_after_speech_seconds_count", model="tiny.en")


def test_a_ttl_unload_flips_loaded_and_the_totals_survive_it(server: Server) -> None:
    brief = {"model": "brief"}
    transcribe(server, "brief")
    first = scrape(server)
    assert value(first, "asr_worker_starts_total", **brief) >= 1
    # `brief` has a 1 s TTL: its worker ends, and the metrics say so.
    # (`loaded` is 0 from the moment the worker starts stopping: wait for it to be gone.)
    wait_for(
        lambda: value(scrape(server), "asr_model_state", **brief, state="unloaded") == 1, 20, what="the TTL unload"
    )
    unloaded = scrape(server)
    assert value(unloaded, "whisper_model_loaded", **brief) == 0
    assert value(unloaded, "asr_worker_exits_total", **brief, reason="ttl") >= 1
    assert not has(unloaded, "whisper_model_ttl_remaining_seconds", **brief)
    assert not has(unloaded, "asr_worker_resident_memory_bytes", **brief)
    requests = value(unloaded, "whisper_transcription_requests_total", **brief)
    assert requests >= 1
    banked = value(unloaded, "asr_inference_audio_seconds_total", **brief)
    assert banked >= FOX_SECONDS - 0.01  # the ended worker's work is still counted
    # A second worker: the totals go on from there, never back to zero.
    transcribe(server, "brief")
    second = scrape(server)
    assert value(second, "asr_worker_starts_total", **brief) == value(unloaded, "asr_worker_starts_total", **brief) + 1
    assert value(second, "whisper_transcription_requests_total", **brief) == requests + 1
    wait_for(
        lambda: value(scrape(server), "asr_inference_audio_seconds_total", **brief) >= banked + FOX_SECONDS - 0.01,
        20,
        what="the second worker's work added to the first's",
    )


def test_work_done_just_before_an_unload_is_counted(server: Server) -> None:
    """The worker's last heartbeat on its way out carries the request that ended just before."""
    before = value(scrape(server), "asr_inference_audio_seconds_total", model="tiny.en")
    transcribe(server)
    response = server.client.post("/v1/model/unload", params={"model": "tiny.en"})
    assert response.status_code == 200 and response.json()["unloaded"], response.text
    after = scrape(server)
    assert value(after, "whisper_model_loaded", model="tiny.en") == 0
    assert value(after, "asr_worker_exits_total", model="tiny.en", reason="unload") >= 1
    assert value(after, "asr_inference_audio_seconds_total", model="tiny.en") == pytest.approx(
        before + FOX_SECONDS, abs=0.01
    )


def test_a_killed_worker_is_a_crash_and_a_frozen_one_is_hung(make_server) -> None:  # type: ignore[no-untyped-def]
    crashy = make_server(
        '[server]\ndefault_model = "tiny.en"\nheartbeat_timeout = 2\n[models."tiny.en"]\nsource = "bundled"\n'
    )

    def exits(reason: str) -> float:
        return value(scrape(crashy), "asr_worker_exits_total", model="tiny.en", reason=reason)

    transcribe(crashy)
    [pid] = crashy.model_worker_pids()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: exits("crash") == 1, 20, what="the crash counted")
    transcribe(crashy)  # a new worker
    [pid] = crashy.model_worker_pids()
    os.kill(pid, signal.SIGSTOP)  # frozen: no heartbeat, and the supervisor kills it after 2 s
    wait_for(lambda: exits("hung") == 1, 30, what="the frozen worker counted as hung")
    after = scrape(crashy)
    assert value(after, "asr_worker_exits_total", model="tiny.en", reason="crash") == 1
    assert value(after, "asr_worker_starts_total", model="tiny.en") == 2
    assert value(after, "whisper_transcription_requests_total", model="tiny.en", status="ok") == 2


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)")
def test_promtool_accepts_the_output(server: Server) -> None:
    transcribe(server)  # every family with samples
    text = server.client.get("/metrics").text
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_readiness_is_a_metric_as_the_fleet_alerts_need_it(server: Server) -> None:
    """`asr_ready` says what /health/ready says; the GPU memory families exist (without
    samples on a machine with no CUDA device, where the VRAM alert then never fires)."""
    families = {f.name: f for f in text_string_to_metric_families(server.client.get("/metrics").text)}
    ready = server.client.get("/health/ready").status_code == 200
    assert [s.value for s in families["asr_ready"].samples] == [1.0 if ready else 0.0]
    assert ready
    for name in ("asr_gpu_memory_total_bytes", "asr_gpu_memory_used_bytes"):
        assert name in families


# -- the shipped dashboard and scrape config ---------------------------------------------

#: PromQL's own words, which look like metric names in an expression.
PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "histogram_quantile", "by", "without", "on", "ignoring", "group_left",
    "group_right", "max", "min", "avg", "count", "topk", "bottomk", "clamp_min", "clamp_max", "max_over_time",
    "min_over_time", "avg_over_time", "delta", "deriv", "abs", "and", "or", "unless", "offset", "le", "bool",
    "label_replace", "vector", "scalar", "time", "changes", "resets", "sort", "sort_desc", "absent", "round",
}  # fmt: skip


def expressions() -> list[str]:
    """Every PromQL expression in the dashboard (panel targets, variables' queries) and in the
    scrape config (`expr:` of rules, should it ever have some)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    walk(dashboard)
    for variable in dashboard["templating"]["list"]:  # label_values(metric, label): the metric is a selector
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        found += re.findall(r"label_values\(\s*([^,)]+)", query)
    found += re.findall(r"^\s*expr:\s*(.+)$", (DEPLOY / "prometheus.yml").read_text(), flags=re.MULTILINE)
    found += rule_expressions(DEPLOY / "prometheus" / "asr-rules.yml")
    return found


def rule_expressions(path: Path) -> list[str]:
    """The `expr:` of every rule in a rules file, a folded one (`expr: >`) joined from its lines."""
    found: list[str] = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not (match := re.match(r"^(\s*)expr:\s*(.*)$", line)):
            continue
        indent, value = len(match.group(1)), match.group(2).strip()
        if value in (">", "|", ">-", "|-"):
            body = []
            for following in lines[i + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                if not following.strip().startswith("#"):
                    body.append(following.strip())
            value = " ".join(body)
        found.append(value)
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression uses: identifiers outside label matchers and strings,
    not followed by `(` (a function), not PromQL's own words, not a `$variable`."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    names = set()
    for match in re.finditer(r"(?<![\w$])[a-zA-Z_:][\w:]*\b(?!\s*\()", expr):
        if match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def test_every_dashboard_query_uses_metrics_the_server_exposes(server: Server) -> None:
    text = server.client.get("/metrics").text
    exposed = {family.name for family in text_string_to_metric_families(text)}
    exposed |= {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    suffixes = ("_bucket", "_sum", "_count", "_total")
    exposed |= {name + suffix for name in exposed for suffix in suffixes}
    exprs = expressions()
    assert len(exprs) >= 8, "the dashboard has its panels"
    exposed.add("up")  # Prometheus's own series for every target
    # The rules' recorded series (level:metric:operation) come from the rules, not the server.
    unknown = {name for expr in exprs for name in metric_names(expr) if ":" not in name} - exposed
    assert not unknown, f"the dashboard and rules query metrics the server does not expose: {sorted(unknown)}"
    # ... and those must be recorded by the shipped rules (the dashboard's fleet view uses them).
    rules = (DEPLOY / "prometheus" / "asr-rules.yml").read_text()
    recorded = set(re.findall(r"^\s*- record:\s*(\S+)", rules, flags=re.MULTILINE))
    used = {name for expr in exprs for name in metric_names(expr) if ":" in name}
    assert used and used <= recorded, f"series no rule records: {sorted(used - recorded)}"


def test_the_name_check_catches_a_wrong_name() -> None:
    assert metric_names('sum by (model) (rate(whisper_transcription_requests_total{status!="ok"}[5m]))') == {
        "whisper_transcription_requests_total"
    }
    assert metric_names("histogram_quantile(0.95, sum by (le) (rate(whisper_nope_bucket[$__rate_interval])))") == {
        "whisper_nope_bucket"
    }


# -- off, and behind the keys -----------------------------------------------------------


def test_metrics_can_be_turned_off(make_server) -> None:  # type: ignore[no-untyped-def]
    by_flag = make_server(
        '[server]\ndefault_model = "tiny.en"\n[models."tiny.en"]\nsource = "bundled"\n', "--no-metrics"
    )
    assert by_flag.client.get("/metrics").status_code == 404
    by_file = make_server(
        '[server]\ndefault_model = "tiny.en"\nmetrics = false\n[models."tiny.en"]\nsource = "bundled"\n'
    )
    assert by_file.client.get("/metrics").status_code == 404
    assert by_file.client.get("/health").status_code == 200


def test_with_api_keys_a_scrape_needs_one_and_never_shows_it(keyed_server: Server) -> None:
    key = "sk-scrape-secret-1234"  # one of the shared keyed server's API keys
    keyed = keyed_server
    assert keyed.client.get("/metrics").status_code == 401
    assert keyed.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = keyed.client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert key not in response.text
    assert "whisper_model_loaded" in response.text
    assert keyed.client.get("/health").status_code == 200  # probes still need no key


# -- pure accumulation -----------------------------------------------------------------


def _beat(work: WorkTotals) -> Heartbeat:
    return Heartbeat(
        in_flight=0, served=0, lanes=1, lanes_busy=0, rss_bytes=1, vram_bytes=None, last_inference_at=None, time=0.0,
        work=work,
    )  # fmt: skip


class _Worker:
    def __init__(self) -> None:
        self.last_heartbeat: Heartbeat | None = None


def _latencies(*per_bucket: int) -> Latencies:
    counts = per_bucket + (0,) * (len(LATENCY_BUCKETS) + 1 - len(per_bucket))
    return Latencies(counts=counts, sum=float(sum(per_bucket)))


def test_a_models_totals_never_go_back_when_its_workers_restart() -> None:
    tally = ModelTally()
    first = _Worker()
    tally.adopted(first)
    assert tally.totals() == WorkTotals()  # no heartbeat yet
    first.last_heartbeat = _beat(WorkTotals(inference_seconds=2.0, audio_seconds=10.0, first_partial=_latencies(1)))
    assert tally.totals().inference_seconds == 2.0
    tally.forgotten()  # a TTL unload: its last figures are banked
    assert tally.totals().audio_seconds == 10.0
    second = _Worker()
    tally.adopted(second)
    assert tally.totals().audio_seconds == 10.0  # the new worker has not reported: still the banked figures
    second.last_heartbeat = _beat(WorkTotals(inference_seconds=0.5, audio_seconds=1.0, first_partial=_latencies(0, 2)))
    totals = tally.totals()
    assert (totals.inference_seconds, totals.audio_seconds) == (2.5, 11.0)
    assert totals.first_partial.counts[:2] == (1, 2) and totals.first_partial.sum == 3.0
    tally.forgotten()
    tally.forgotten()  # forgetting twice banks nothing twice
    third = _Worker()  # crashed before its first heartbeat: adds nothing
    tally.adopted(third)
    tally.forgotten()
    assert tally.totals().audio_seconds == 11.0
    assert tally.starts == 3


def test_the_worker_tally_sorts_latencies_into_buckets() -> None:
    tally = Tally()
    tally.first_partial(0.05)  # first bucket (<= 0.1)
    tally.first_partial(0.1)  # le is inclusive
    tally.first_partial(99.0)  # +Inf
    tally.decoded(6.0)
    totals = tally.totals(Work(file_seconds=1.5, live_seconds=0.5, passes=3, items=5))
    assert totals.first_partial.counts[0] == 2 and totals.first_partial.counts[-1] == 1
    assert totals.first_partial.sum == pytest.approx(99.15)
    assert (totals.inference_seconds, totals.audio_seconds, totals.live_inference_seconds) == (1.5, 6.0, 0.5)
    assert (totals.passes, totals.pass_items) == (3, 5)
    cumulative = _cumulative(totals.first_partial.counts)
    assert cumulative[0] == ("0.1", 2.0) and cumulative[-1] == ("+Inf", 3.0)


def test_arrivals_map_session_time_to_when_the_audio_came() -> None:
    arrivals = Arrivals(keep_s=5.0)
    for i in range(1000):  # 100 ms frames, one a second of wall time
        arrivals.add(0.1, float(i))
    assert arrivals.arrived(99.95) == 999.0  # in the last frame
    assert arrivals.arrived(99.0) in (989.0, 990.0)
    assert arrivals.arrived(10.0) is None  # long forgotten: bounded memory
    assert arrivals.arrived(100.5) is None  # not arrived yet


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)")
def test_the_fleet_rules_pass_promtool_and_their_unit_tests() -> None:
    """Recording rules (rates, failure ratio, p95s and live sessions per model over every box;
    VRAM per box) and alerts (a box down, not ready, a model failing to load, a worker crash
    loop, a long queue, a GPU nearly full) are
    checked by promtool, and their unit tests feed them series and expect the figures and
    alerts (deploy/prometheus/asr-rules.test.yml)."""
    rules = DEPLOY / "prometheus"
    checked = subprocess.run(["promtool", "check", "rules", "asr-rules.yml"], cwd=rules, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        ["promtool", "test", "rules", "asr-rules.test.yml"], cwd=rules, capture_output=True, text=True
    )
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    assert len(rule_expressions(rules / "asr-rules.yml")) == 14  # the parser above finds every rule


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)")
def test_promtool_accepts_the_scrape_config() -> None:
    checked = subprocess.run(
        ["promtool", "check", "config", str(DEPLOY / "prometheus.yml")], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "/metrics" in (DEPLOY / "prometheus.yml").read_text()
