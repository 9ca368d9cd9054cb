"""What a model's owner counts about its use and memory, and the snapshot it is read through.

Kept apart from the owner's state machine (`owner.ModelOwner`): the owner tells its
account what happened (a worker adopted, a request ended, a worker gone) and the account
keeps the figures that /health, /v1/models, asrctl, the metrics and the capacity gate
read. Everything here is advisory the moment it is read; nothing may act on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from supervisor.config import ModelSpec
from supervisor.models.snapshot import ModelSnapshot
from supervisor.workers.process import WorkerProcess


@dataclass(slots=True)
class ModelAccount:
    #: What its files suggest the model needs (`files.memory_estimate_mb`), before any READY.
    estimate_mb: float = 0.0
    measured_mb: float = 0.0  # the largest RSS its worker has been seen at
    footprint_mb: float = 0.0  # what its last READY said the worker holds once every copy is loaded
    requests: int = 0
    load_seconds: float | None = None
    languages: list[str] | None = None  # from the last READY: known once loaded
    last_used: float | None = None  # time.time() of the last request's end
    last_error: str | None = None
    unloads: dict[str, int] = field(default_factory=dict)

    def memory_mb(self) -> float:
        """What memory_budget_mb counts for this model, every model copy included.

        The larger of its worker's largest RSS seen and the footprint its READY announced:
        extra copies load just after READY, and are counted from READY on, before they are
        spent. Before any READY, the estimate from its files.
        """
        return max(self.measured_mb, self.footprint_mb) or self.estimate_mb

    def new_spec(self, estimate_mb: float) -> None:
        """New worker options: the next worker's memory is measured anew."""
        self.estimate_mb = estimate_mb
        self.measured_mb = self.footprint_mb = 0.0

    def started(self, worker: WorkerProcess, load_seconds: float) -> None:
        self.load_seconds = round(load_seconds, 3)
        self.last_error = None
        self.adopted(worker)

    def adopted(self, worker: WorkerProcess) -> None:
        """A worker READY for this model (also one that loaded after all, only to be stopped)."""
        self.languages = worker.info.languages if worker.info else None
        if worker.info is not None and worker.info.footprint_mb:
            self.footprint_mb = worker.info.footprint_mb

    def released(self, worker: WorkerProcess | None) -> None:
        """A request ended: the worker's memory is sampled when its work has just peaked."""
        self.last_used = time.time()
        if worker is not None and (rss := worker.rss_bytes()):
            self.measured_mb = max(self.measured_mb, rss / 1_048_576)

    def ended(self, why: str) -> None:
        self.unloads[why] = self.unloads.get(why, 0) + 1


def snapshot(
    spec: ModelSpec,
    account: ModelAccount,
    worker: WorkerProcess | None,
    *,
    state: str,
    retiring: bool,
    ttl: int,
    ttl_remaining: float | None,
    in_flight: int,
    queued: int,
    retry_in: float | None,
) -> ModelSnapshot:
    """The model as every reader sees it, from its owner's state and its account."""
    info = worker.info if worker else None
    return ModelSnapshot(
        state=state,
        retiring=retiring,
        backend=spec.backend,
        source=spec.source,
        description=spec.description,
        pid=worker.pid if worker else None,
        device=info.device if info else None,
        compute_type=info.compute_type if info else None,
        concurrency=info.concurrency if info else None,
        slots=(info.slots or info.concurrency) if info else None,
        copies=info.copies if info else None,
        lane_weights=info.lane_weights if info else None,
        lanes_reason=info.lanes_reason or None if info else None,
        lanes_open=beat.lanes if worker and (beat := worker.last_heartbeat) else None,
        copy_mb=info.copy_mb or None if info else None,
        rss_mb=mb(worker.rss_bytes()) if worker else None,
        memory_mb=round(account.memory_mb(), 1),
        languages=account.languages,
        ttl=ttl,
        ttl_remaining=ttl_remaining,
        in_flight=in_flight,
        queued=queued,
        requests=account.requests,
        load_seconds=account.load_seconds,
        last_used=account.last_used,
        last_error=account.last_error,
        unloads=dict(account.unloads),
        retry_in=retry_in,
    )


def mb(size: int | None) -> float | None:
    return None if size is None else round(size / 1_048_576, 1)
