"""`asr-supervisor serve`'s flags, declared once: the `Overrides` fields.

A field is a flag: its name is the option (`default_model` → `--default-model`) and the key
it overrides (a `ServerTable` field, or a model key for every model), its type what the key
takes, and its `flag(...)` says only what the field cannot (other spellings, help). The CLI
builds its typer options from `flags()`; the loader reads `Overrides.given(keys)`. Adding a
flag is adding a field here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, TypeVar, get_type_hints

from supervisor.config.tables import ServerTable

_T = TypeVar("_T")


def flag(default: _T, *decls: str, help: str | None = None, parses: object = None) -> _T:
    """An `Overrides` field with what the CLI needs beyond its name and type.

    `decls`: the option's names when not `--the-name` (`--the-name/--no-the-name` for a switch);
    `help`: None when the `ServerTable` field's description says it (so it is written once);
    `parses`: what typer reads, when it cannot read the field's own type.
    """
    return field(default=default, metadata={"flag": (decls, help, parses)})


@dataclass(frozen=True, slots=True)
class Overrides:
    """CLI flags; None means "not given", so the file's value stands."""

    # The one flag that is not a key: the models to serve, instead of every configured one.
    models: tuple[str, ...] = flag(
        (),
        "--model",
        "-m",
        help="serve this model (repeatable); default: every model in the config",
        parses=list[str] | None,
    )
    default_model: str | None = flag(None)
    device: str | None = flag(None, help="auto, cpu or cuda, for every model")
    compute_type: str | None = flag(None, help="auto, int8, float16, ... for every model")
    cache_dir: str | None = flag(None, help="where hub models are downloaded")
    ttl: int | None = flag(None, help="idle seconds before a model's worker ends (-1 never, 0 after each request)")
    preload: bool | None = flag(None, help="load models at start-up")
    host: str | None = flag(None)
    port: int | None = flag(None)
    log_level: str | None = flag(None)
    log_format: str | None = flag(None)
    metrics: bool | None = flag(None)
    ui: bool | None = flag(None)
    ssl_certfile: str | None = flag(None)
    ssl_keyfile: str | None = flag(None)
    wyoming: bool | None = flag(None)
    wyoming_port: int | None = flag(None)
    wyoming_uri: str | None = flag(None)
    zeroconf: bool | None = flag(None)
    # The key also takes a list of backends (a tuple here, as this is frozen); the flag is a
    # switch (every backend or none), and only the file or a caller names backends.
    warm_spare: bool | tuple[str, ...] | None = flag(
        None,
        help="keep a worker with libraries imported for fast first requests (one per backend with models)",
        parses=bool | None,
    )

    @classmethod
    def from_flags(cls, values: Mapping[str, object]) -> Overrides:
        """The flags as typer hands them over: None is "not given", a repeated flag's list a tuple."""
        given: dict[str, Any] = {
            name: tuple(value) if isinstance(value, list) else value
            for name, value in values.items()
            if value is not None
        }
        return cls(**given)

    def given(self, keys: Iterable[str]) -> dict[str, Any]:
        """The flags among `keys` that were given on the command line."""
        wanted = set(keys)
        return {
            f.name: value for f in fields(self) if f.name in wanted and (value := getattr(self, f.name)) is not None
        }


#: No flag given: the file's values (or the built-in defaults) stand.
NO_OVERRIDES = Overrides()


@dataclass(frozen=True, slots=True)
class Flag:
    """One `Overrides` field as a command-line option."""

    name: str
    decls: tuple[str, ...]
    help: str
    #: The type typer parses the option into.
    parses: object


@cache
def flags() -> tuple[Flag, ...]:
    """Every `Overrides` field as an option, in the fields' order (the order `--help` lists them)."""
    types = get_type_hints(Overrides)
    found = []
    for f in fields(Overrides):
        decls, help, parses = f.metadata["flag"]
        parses = parses or types[f.name]
        option = "--" + f.name.replace("_", "-")
        switch = parses == bool | None
        found.append(
            Flag(
                name=f.name,
                decls=decls or ((f"{option}/--no-{option[2:]}",) if switch else (option,)),
                help=help or _description(f.name),
                parses=parses,
            )
        )
    return tuple(found)


def _description(key: str) -> str:
    described = ServerTable.model_fields[key].description
    if described is None:
        raise TypeError(f"ServerTable.{key} has no description for --{key.replace('_', '-')}'s help")
    return described
