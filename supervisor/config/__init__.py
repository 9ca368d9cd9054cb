"""Configuration: `asr.toml`, then CLI flags, validated once into one frozen `Settings`.

`tables`: the file's shape (`ServerTable` describes every server key); `overrides`: the
`serve` flags, one field each; `loading`: read, merge, validate; `settings`: the result.
"""

from supervisor.config.loading import find_config, load_settings, unconfigured_spec
from supervisor.config.overrides import NO_OVERRIDES, Flag, Overrides, flags
from supervisor.config.settings import ModelSpec, Settings, wyoming_uri
from supervisor.config.tables import (
    BUNDLED_SOURCE,
    DEFAULT_KEYS,
    DEFAULT_MODEL,
    MAX_TTL,
    MODEL_KEYS,
    OPENAI_ALIAS,
    PRIVATE_NETWORKS,
    SEARCH_PATHS,
    ConfigError,
    ConfigFile,
    ModelSettings,
    NonEmptyKey,
    ServerTable,
)

__all__ = [
    "BUNDLED_SOURCE",
    "DEFAULT_KEYS",
    "DEFAULT_MODEL",
    "MAX_TTL",
    "MODEL_KEYS",
    "NO_OVERRIDES",
    "OPENAI_ALIAS",
    "PRIVATE_NETWORKS",
    "SEARCH_PATHS",
    "ConfigError",
    "ConfigFile",
    "Flag",
    "ModelSettings",
    "ModelSpec",
    "NonEmptyKey",
    "Overrides",
    "ServerTable",
    "Settings",
    "find_config",
    "flags",
    "load_settings",
    "unconfigured_spec",
    "wyoming_uri",
]
