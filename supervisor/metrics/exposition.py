"""The metrics of one server: their registry, and the text a scrape gets."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import prometheus_client
from prometheus_client import CollectorRegistry, ProcessCollector

from supervisor.metrics.collector import ServerCollector
from supervisor.metrics.requests import RequestMetrics

if TYPE_CHECKING:
    from supervisor.interfaces.wyoming.server import WyomingService
    from supervisor.models.registry import ModelRegistry
    from supervisor.service import TranscriptionService

#: A counter's `_created` twin doubles the series for a figure nobody graphs.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """Made by the app's lifespan (when `server.metrics` is on): it observes the service's
    requests and reads the rest when scraped."""

    #: The classic text format (0.0.4), which every Prometheus version takes.
    CONTENT_TYPE = prometheus_client.CONTENT_TYPE_PLAIN_0_0_4

    def __init__(
        self,
        registry: ModelRegistry,
        service: TranscriptionService,
        wyoming: WyomingService | None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        # The supervisor's own CPU, memory and file descriptors (process_*), read from /proc at scrape time.
        ProcessCollector(registry=self.registry)
        self.requests = RequestMetrics(self.registry)
        self.registry.register(ServerCollector(registry, service, wyoming, ready))
        service.observers.add(self.requests)

    def render(self) -> bytes:
        """The Prometheus text format; call it on the event loop (the collector reads the owners)."""
        return prometheus_client.generate_latest(self.registry)
