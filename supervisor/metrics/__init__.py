"""Prometheus metrics on `/metrics`: one scrape target for the supervisor and all its workers.

Two sources, nothing pushed and nothing polled:
- `requests.RequestMetrics`, a request observer (`supervisor.observe`): counters and
  histograms of the requests as they end, over every interface;
- `collector.ServerCollector`, read at scrape time: each model's owner snapshot and tally
  (state, memory, TTL, queue, worker starts and exits, what its workers did, from their
  heartbeats), the live streams, the capacity gate, the Wyoming listener, the build.

`Metrics` puts them in a registry of their own (not prometheus_client's global one), made
per app by the lifespan when `server.metrics` is on.
"""

from __future__ import annotations

from supervisor.metrics.exposition import Metrics

__all__ = ["Metrics"]
