"""What one model looks like from outside: one typed snapshot for every reader.

`/health`, `/v1/models`, Wyoming's `describe` and `asrctl` all read this, so a field is
named and typed once. It is advisory: true when taken, and nothing may act on it
(acting goes through the owner's inbox).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ModelSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True)

    state: str = Field(description="unloaded, starting, ready, stopping or failed")
    retiring: bool = Field(
        False, description="removed by a reload: serves the requests it had, then its worker ends and it goes"
    )
    backend: str
    source: str
    description: str
    pid: int | None = Field(description="the worker process, while there is one")
    device: str | None = Field(description="cpu or cuda, once loaded")
    compute_type: str | None
    concurrency: int | None = Field(description="model calls the worker runs side by side (its lanes)")
    slots: int | None = Field(
        None, description="requests and live decodes it takes at once; beyond its lanes they share batched passes"
    )
    copies: int | None = Field(None, description="full copies of the model's weights the worker holds for its lanes")
    lane_weights: str | None = Field(
        None, description="copy: a model copy per lane; shared: the lanes share one copy (CTranslate2 workers)"
    )
    lanes_reason: str | None = Field(None, description="why the worker took that many copies")
    lanes_open: int | None = Field(
        None, description="lanes taking requests now, by the last heartbeat: fewer while copies still load"
    )
    copy_mb: float | None = Field(None, description="the RAM one copy of the model costs")
    rss_mb: float | None = Field(description="the worker's resident memory now, every copy included")
    memory_mb: float = Field(
        0.0,
        description="what memory_budget_mb counts for this model: its worker's largest RSS or the footprint its "
        "READY announced (every copy), else an estimate from its files",
    )
    vram_mb: float | None = Field(None, description="the worker's GPU memory (CUDA only)")
    languages: list[str] | None = Field(description="known once the model has loaded")
    ttl: int = Field(description="idle seconds before the worker ends; -1 never")
    ttl_remaining: float | None = Field(description="seconds until the TTL fires; null while busy")
    in_flight: int
    queued: int = Field(description="requests waiting for this model's worker to start")
    requests: int = Field(description="requests served since the supervisor started")
    load_seconds: float | None
    last_used: float | None = Field(description="unix time the last request ended")
    last_error: str | None
    unloads: dict[str, int] = Field(
        description="worker ends by reason: ttl, unload, evicted, crash, hung, shutdown, reload, removed"
    )
    retry_in: float | None = Field(description="seconds until a failed model may be tried again")
