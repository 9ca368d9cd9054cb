"""Everything that is a state rather than an event, read when Prometheus scrapes.

A custom collector: no loop pushes numbers into gauges between scrapes. At scrape time it
reads each model's owner snapshot (state, RSS, TTL, queue, exits by reason) and tally
(worker starts; the current worker's last heartbeat: VRAM, lanes; what its workers did,
banked across restarts, so those counters never go backwards when a TTL ends a worker),
the service's open requests and live streams, the capacity gate and the Wyoming listener.
It runs on the event loop (the `/metrics` route is async), like every other reader of
the owners' state, so each snapshot is consistent.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from common.protocol import LATENCY_BUCKETS, Latencies
from supervisor.models.states import SHOWN_STATES, State
from supervisor.observe import FILE_INTERFACES, LIVE_INTERFACES
from supervisor.workers import devices

if TYPE_CHECKING:
    from supervisor.interfaces.wyoming.server import WyomingService
    from supervisor.models.registry import ModelRegistry
    from supervisor.models.snapshot import ModelSnapshot
    from supervisor.service import TranscriptionService

_MIB = 1_048_576
#: Why a worker ended, as the owner counts it (`ModelSnapshot.unloads`).
EXIT_REASONS = ("ttl", "unload", "evicted", "crash", "hung", "shutdown", "reload", "removed")


class ServerCollector(Collector):
    def __init__(
        self,
        registry: ModelRegistry,
        service: TranscriptionService,
        wyoming: WyomingService | None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self._registry = registry
        self._service = service
        self._wyoming = wyoming
        self._ready = ready

    def collect(self) -> Iterator[Metric]:
        snapshots = self._registry.snapshot(retiring=True)  # once per scrape: each reads its worker's RSS from /proc
        yield from self._models(snapshots)
        yield from self._workers(snapshots)
        yield from self._requests()
        yield from self._capacity()
        if self._wyoming is not None:
            yield from self._wyoming_listener(self._wyoming)
        yield from self._box()
        yield _build_info()

    def _box(self) -> Iterator[Metric]:
        """What a fleet's alerts ask of each box: takes work or not, and how full its GPUs are."""
        if self._ready is not None:
            yield GaugeMetricFamily(
                "asr_ready",
                "1 while GET /health/ready answers 200 (a request sent now would be served), else 0.",
                value=1.0 if self._ready() else 0.0,
            )
        total = GaugeMetricFamily(
            "asr_gpu_memory_total_bytes", "Each CUDA device's memory (nvidia-smi).", labels=["gpu", "name"]
        )
        used = GaugeMetricFamily(
            "asr_gpu_memory_used_bytes",
            "Each CUDA device's memory in use, by any process (nvidia-smi).",
            labels=["gpu", "name"],
        )
        reading = devices.latest()  # refreshed off the loop by the route (nvidia-smi is a subprocess)
        for gpu in reading["cuda"] if reading else []:  # none on a machine without nvidia-smi
            labels = [str(gpu["index"]), str(gpu["name"])]
            total.add_metric(labels, gpu["memory_total_mb"] * _MIB)
            used.add_metric(labels, gpu["memory_used_mb"] * _MIB)
        yield total
        yield used

    def _models(self, snapshots: dict[str, ModelSnapshot]) -> Iterator[Metric]:
        loaded = GaugeMetricFamily(
            "whisper_model_loaded", "1 while the model's worker is loaded and serving, else 0.", labels=["model"]
        )
        state = GaugeMetricFamily(
            "asr_model_state",
            "1 for the state the model is in (unloaded, starting, ready, stopping, failed), 0 for the others.",
            labels=["model", "state"],
        )
        load_time = GaugeMetricFamily(
            "whisper_model_load_time_seconds",
            "How long the model's last successful start took (spawn or spare, load, READY).",
            labels=["model"],
        )
        ttl = GaugeMetricFamily(
            "whisper_model_ttl_remaining_seconds",
            "Seconds until the idle TTL ends the model's worker; absent while it cannot fire (not loaded, busy, "
            "ttl = -1).",
            labels=["model"],
        )
        queued = GaugeMetricFamily(
            "asr_model_queued_requests",
            "Requests waiting for the model's worker to start (or for its owner to hear them).",
            labels=["model"],
        )
        info = GaugeMetricFamily(
            "asr_model_info",
            "Always 1: the model's backend (faster-whisper, parakeet-nemo, parakeet-onnx), to join on `model`.",
            labels=["model", "backend"],
        )
        for name, snap in snapshots.items():
            info.add_metric([name, snap.backend], 1.0)
            loaded.add_metric([name], 1.0 if snap.state == State.READY.value else 0.0)
            for each in SHOWN_STATES:
                state.add_metric([name, each.value], 1.0 if snap.state == each.value else 0.0)
            if snap.load_seconds is not None:
                load_time.add_metric([name], snap.load_seconds)
            if snap.ttl_remaining is not None:
                ttl.add_metric([name], snap.ttl_remaining)
            queued.add_metric([name], snap.queued)
        yield from (info, loaded, state, load_time, ttl, queued)

    def _workers(self, snapshots: dict[str, ModelSnapshot]) -> Iterator[Metric]:
        rss = GaugeMetricFamily(
            "asr_worker_resident_memory_bytes", "The model's worker process's resident memory.", labels=["model"]
        )
        vram = GaugeMetricFamily(
            "asr_worker_vram_bytes",
            "GPU memory the model's worker holds (CUDA only; sampled by the worker every ~10 s).",
            labels=["model"],
        )
        lanes = GaugeMetricFamily(
            "asr_worker_lanes",
            "Model calls the model's worker can run side by side now (its lanes); more requests than that share "
            "batched passes.",
            labels=["model"],
        )
        busy = GaugeMetricFamily(
            "asr_worker_lanes_busy",
            "Requests and live decodes in progress, by the worker's last heartbeat (more than the lanes where "
            "they share batched passes).",
            labels=["model"],
        )
        starts = CounterMetricFamily("asr_worker_starts", "Workers that loaded the model and served.", labels=["model"])
        exits = CounterMetricFamily(
            "asr_worker_exits",
            "Workers of the model that ended, by reason: ttl, unload (by hand), evicted (for another model), "
            "crash, hung (killed for a missed heartbeat), shutdown, reload (replaced by new settings), removed.",
            labels=["model", "reason"],
        )
        evictions = CounterMetricFamily(
            "asr_evictions", "Times the model was unloaded to make room for another.", labels=["model"]
        )
        inference = CounterMetricFamily(
            "asr_inference_seconds",
            "Seconds the model's workers spent in the model on file requests (not decoding audio files, not "
            "waiting for a lane; a batched call's time shared by its windows); over time, lanes busy.",
            labels=["model"],
        )
        audio = CounterMetricFamily(
            "asr_inference_audio_seconds",
            "Seconds of audio those file requests held; divided by asr_inference_seconds, the model's speed.",
            labels=["model"],
        )
        live = CounterMetricFamily(
            "asr_live_inference_seconds",
            "Seconds the model's workers spent in the model on live streams' partials and finals.",
            labels=["model"],
        )
        passes = CounterMetricFamily(
            "asr_batch_passes",
            "Model calls the model's workers made for windows of requests and live sessions, batched.",
            labels=["model"],
        )
        pass_items = CounterMetricFamily(
            "asr_batch_items",
            "Windows (or Parakeet stretches) those calls held; divided by asr_batch_passes, the mean batch.",
            labels=["model"],
        )
        first_partial = _LatencyFamily(
            "asr_live_first_partial_seconds",
            "Live streams: from the audio where an utterance begins reaching the worker to its first partial (or "
            "final) going out.",
        )
        final = _LatencyFamily(
            "asr_live_final_after_speech_seconds",
            "Live streams: from the audio of an utterance's last voiced sample reaching the worker to its final "
            "going out (the end_silence_ms pause included).",
        )
        for name, snap in snapshots.items():
            owner = self._registry.get(name)
            beat = owner.tally.heartbeat
            if snap.rss_mb is not None:
                rss.add_metric([name], snap.rss_mb * _MIB)
            if beat is not None and beat.vram_bytes is not None:
                vram.add_metric([name], beat.vram_bytes)
            if beat is not None and snap.pid is not None:
                lanes.add_metric([name], beat.lanes)
                busy.add_metric([name], beat.lanes_busy)
            starts.add_metric([name], owner.tally.starts)
            for reason in sorted({*EXIT_REASONS, *snap.unloads}):
                exits.add_metric([name, reason], snap.unloads.get(reason, 0))
            evictions.add_metric([name], snap.unloads.get("evicted", 0))
            work = owner.tally.totals()
            inference.add_metric([name], work.inference_seconds)
            audio.add_metric([name], work.audio_seconds)
            live.add_metric([name], work.live_inference_seconds)
            passes.add_metric([name], work.passes)
            pass_items.add_metric([name], work.pass_items)
            first_partial.add(name, work.first_partial)
            final.add(name, work.final_after_speech)
        yield from (rss, vram, lanes, busy, starts, exits, evictions, inference, audio, live, passes, pass_items)
        yield first_partial.family
        yield final.family

    def _requests(self) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "whisper_active_requests",
            "File transcriptions under way (waiting for a worker or being decoded), by model and interface.",
            labels=["model", "interface"],
        )
        sessions = GaugeMetricFamily(
            "asr_live_sessions",
            "Live streams open, by model and interface (stream: the WebSocket; realtime: the OpenAI Realtime "
            "WebSocket; wyoming: an utterance decoded "
            "while spoken).",
            labels=["model", "interface"],
        )
        running, streams = self._service.active, self._service.live_streams()
        for name in self._registry.names():
            for interface in FILE_INTERFACES:
                active.add_metric([name, interface], running[name, interface])
            for interface in LIVE_INTERFACES:
                sessions.add_metric([name, interface], streams[name, interface])
        yield from (active, sessions)

    def _capacity(self) -> Iterator[Metric]:
        capacity = self._registry.capacity
        yield CounterMetricFamily(
            "asr_capacity_waits",
            "Model starts that had to wait for a busy model to become idle (max_loaded_models, memory_budget_mb).",
            value=capacity.waits,
        )
        yield CounterMetricFamily(
            "asr_capacity_refusals",
            "Model starts refused after capacity_wait seconds: every loaded model stayed busy.",
            value=capacity.refusals,
        )

    def _wyoming_listener(self, wyoming: WyomingService) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "asr_wyoming_connections_open", "Wyoming connections open now.", value=wyoming.connections
        )
        total = CounterMetricFamily(
            "asr_wyoming_connections",
            "Wyoming connections since start: accepted, or refused at wyoming_max_connections.",
            labels=["outcome"],
        )
        total.add_metric(["accepted"], wyoming.limits.accepted)
        total.add_metric(["refused"], wyoming.limits.refused)
        yield total


class _LatencyFamily:
    """A histogram family built from a worker's counts per bucket (`Latencies`)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.family = HistogramMetricFamily(name, documentation, labels=["model"])

    def add(self, model: str, latencies: Latencies) -> None:
        if len(latencies.counts) != len(LATENCY_BUCKETS) + 1:
            return  # a worker of another version: its buckets are not ours
        self.family.add_metric([model], _cumulative(latencies.counts), latencies.sum)


def _cumulative(counts: Iterable[int]) -> list[tuple[str, float]]:
    bounds = [*(str(bound) for bound in LATENCY_BUCKETS), "+Inf"]
    buckets, total = [], 0
    for bound, count in zip(bounds, counts, strict=True):
        total += count
        buckets.append((bound, float(total)))
    return buckets


def _build_info() -> Metric:
    info = GaugeMetricFamily(
        "asr_build_info", "Always 1: the server's version and Python.", labels=["version", "python"]
    )
    info.add_metric([_version(), platform.python_version()], 1.0)
    return info


def _version() -> str:
    try:
        return metadata.version("asr-supervisor")
    except metadata.PackageNotFoundError:
        return "unknown"
