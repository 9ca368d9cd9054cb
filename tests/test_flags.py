"""`serve`'s flags are the `Overrides` fields, and a server key is described once, in `ServerTable`."""

from __future__ import annotations

import typer.main
from typer.core import TyperOption

from supervisor.cli import cli
from supervisor.config import MODEL_KEYS, Overrides, ServerTable, flags, load_settings


def test_every_server_key_has_a_description() -> None:
    """The config reference is generated from these: a key without one would be a blank row."""
    assert [name for name, f in ServerTable.model_fields.items() if not f.description] == []


def test_every_flag_overrides_a_key_by_its_name() -> None:
    """The name is the whole wiring: a field that names no key would be a flag that does nothing."""
    keys = {*ServerTable.model_fields, *MODEL_KEYS}
    assert [flag.name for flag in flags() if flag.name not in keys and flag.name != "models"] == []


def test_serve_has_one_option_per_flag_with_the_keys_description() -> None:
    command = typer.main.get_command(cli)
    options = {p.name: p for p in command.params if isinstance(p, TyperOption)}
    assert set(options) == {"config", "download_only", *(flag.name for flag in flags())}
    assert options["port"].help == ServerTable.model_fields["port"].description
    warm_spare = options["warm_spare"]
    assert (warm_spare.opts, warm_spare.secondary_opts) == (["--warm-spare"], ["--no-warm-spare"])
    assert options["models"].opts == ["--model", "-m"] and options["models"].multiple


def test_parsed_flags_become_overrides_and_none_is_not_given() -> None:
    parsed = Overrides.from_flags({"models": ["a", "b"], "ttl": 5, "warm_spare": False, "port": None})
    assert parsed == Overrides(models=("a", "b"), ttl=5, warm_spare=False)
    assert Overrides.from_flags({}) == Overrides()


def test_warm_spare_overrides_take_what_the_key_takes() -> None:
    assert load_settings(None, Overrides(warm_spare=False)).server.warm_spare is False
    assert load_settings(None, Overrides(warm_spare=("faster-whisper",))).server.warm_spare == ["faster-whisper"]
