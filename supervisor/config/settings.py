"""What loading produces: one frozen `Settings`, handed down from the CLI, and each `ModelSpec`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.protocol.options import ModelOptions
from supervisor.config.overrides import Overrides
from supervisor.config.tables import ServerTable


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One configured model, fully resolved: the supervisor's keys, and the options its worker loads."""

    name: str
    ttl: int
    preload: bool
    description: str
    options: ModelOptions

    @property
    def backend(self) -> str:
        return self.options.backend

    @property
    def source(self) -> str:
        return self.options.source


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerTable
    models: dict[str, ModelSpec]
    default_model: str
    #: Other names clients may use for a model; `whisper-1`, unless listed, means the default model.
    aliases: dict[str, str]
    api_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()
    config_path: Path | None = None
    #: `[defaults]` with the model flags (`--device` ...) over it: what a model without a table gets.
    model_defaults: dict[str, Any] = field(default_factory=dict)
    #: The flags these settings were made with: a reload reads `config_path` again with them.
    overrides: Overrides = field(default_factory=Overrides)


def wyoming_uri(server: ServerTable) -> str:
    return server.wyoming_uri or f"tcp://{server.host}:{server.wyoming_port}"
