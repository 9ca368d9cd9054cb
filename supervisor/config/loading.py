"""Loading: `asr.toml`, then CLI flags, validated once into one frozen `Settings`.

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
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from pydantic import ValidationError

from common.backends import DESCRIPTIONS
from common.protocol.options import OPTION_NAMES, ModelOptions
from supervisor.config.overrides import NO_OVERRIDES, Overrides
from supervisor.config.settings import ModelSpec, Settings
from supervisor.config.tables import (
    BUNDLED_SOURCE,
    DEFAULT_KEYS,
    DEFAULT_MODEL,
    MODEL_KEYS,
    SEARCH_PATHS,
    ConfigError,
    ConfigFile,
    ModelSettings,
    ServerTable,
)
from supervisor.models import catalog


def find_config(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    if env := os.environ.get("ASR_CONFIG"):
        return Path(env)
    return next((p for p in SEARCH_PATHS if p.is_file()), None)


def load_settings(path: Path | None, overrides: Overrides = NO_OVERRIDES) -> Settings:
    """Read, merge and validate; raise ConfigError with a one-line message on any problem."""
    raw = _read_toml(path) if path is not None else {}
    where = str(path) if path is not None else "built-in defaults"
    server_raw = dict(raw.get("server", {}))
    server_raw.update(overrides.given(ServerTable.model_fields))
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
        model_defaults={**parsed.defaults, **overrides.given(MODEL_KEYS)},
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
        return _resolve(name, table, settings.model_defaults, NO_OVERRIDES)
    except _KeyProblem as exc:
        raise ConfigError(str(exc)) from None


class _KeyProblem(ValueError):
    """One bad key, already named as the user wrote it (`models.x.ttl`, `--device`)."""


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
        (cli.given(MODEL_KEYS), "--"),
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
