"""The HTTP API's response bodies, typed, so `/openapi.json` documents what clients get."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from supervisor.models.snapshot import ModelSnapshot


class TranscriptionJSON(BaseModel):
    """`response_format=json` (OpenAI's shape)."""

    text: str


class WordJSON(BaseModel):
    word: str
    start: float
    end: float
    probability: float


class SegmentJSON(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class VerboseTranscriptionJSON(BaseModel):
    """`response_format=verbose_json`: `segments` and/or `words` as `timestamp_granularities[]` asks."""

    task: str
    language: str | None
    duration: float
    text: str
    segments: list[SegmentJSON] | None = None
    words: list[WordJSON] | None = None


class ModelObject(BaseModel):
    """OpenAI's model object plus what a self-hoster wants to know."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "asr-supervisor"
    ready: bool
    loaded: bool
    state: str
    default: bool
    backend: str
    source: str
    description: str
    languages: list[str] | None
    installed: bool
    approx_size_mb: int | None = Field(description="the catalogue's download size, for well-known models")
    size: int | None = Field(description="bytes on disk, when installed")
    aliases: list[str]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class DefaultModelChoice(BaseModel):
    status: Literal["success"] = "success"
    model: str


class CapacityInfo(BaseModel):
    max_loaded_models: int
    memory_budget_mb: float
    loaded: list[str]
    memory_mb: float = Field(
        0.0, description="what memory_budget_mb counts now: the memory_mb of every model holding a worker"
    )


class Health(BaseModel):
    """The sidecar contract (`status`, `current_model`, `device`) plus every model's detail."""

    status: Literal["healthy"] = "healthy"
    default_model: str
    current_model: str
    device: str | None
    devices: dict[str, Any] = Field(description="CUDA GPUs, Apple MPS and CPU found on this machine")
    spare_pid: int | None = Field(description="the default backend's warm spare worker, when there is one")
    spare_pids: dict[str, int] = Field(description="every warm spare worker, by backend")
    capacity: CapacityInfo
    models: dict[str, ModelSnapshot]


class LoadedModel(ModelSnapshot):
    model: str


class UnloadReport(BaseModel):
    model: str
    pid: int | None
    ended_by: str = Field(description="shutdown, sigterm, sigkill, crashed, already exited or not loaded")
    freed_rss_mb: float | None


class UnloadResult(BaseModel):
    unloaded: list[UnloadReport]
    freed_rss_mb: float
