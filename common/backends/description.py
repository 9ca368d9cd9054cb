"""What the supervisor may know about a backend without importing it.

A backend is two modules: its description (an instance of `BackendDescription`, in its
module of `common.backends`) and its implementation (the module the description names, in
`worker.backends`, which imports the ML library and is only ever imported in a worker). Config validation,
the catalogue, downloads, "is this model installed?" and the spare pool all read the
description, so a backend's name, files and well-known models are written down once.
Nothing here may import an ML library or numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do beyond plain transcription, so callers can refuse early."""

    translate: bool  # task="translate": speech in any language to English text
    word_timestamps: bool
    streaming: bool  # segments sent as they are decoded, before the whole result


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """Which files make a model directory complete, and which to fetch from a hub repo.

    Both are glob patterns, relative to the model directory: `required` each match at
    least one file in a usable directory; `download` are the hub's allow patterns (a repo
    may hold other formats that the backend does not read, and that we should not fetch).
    A model that is one file (NeMo's `.nemo`: `one_file`) has one required pattern, and
    that file may also be given on its own, outside any directory.
    """

    required: tuple[str, ...]
    download: tuple[str, ...]
    one_file: bool = False

    def missing(self, directory: Path) -> list[str]:
        """The required patterns that match nothing in `directory`."""
        return [pattern for pattern in self.required if next(directory.glob(pattern), None) is None]

    def is_model_file(self, path: Path) -> bool:
        """Whether `path` is, by itself, a whole model: a file the sole required pattern names."""
        return self.one_file and path.is_file() and fnmatch(path.name, self.required[0])

    def complete(self, path: Path) -> bool:
        return (path.is_dir() and not self.missing(path)) or self.is_model_file(path)


@dataclass(frozen=True, slots=True, kw_only=True)
class KnownModel:
    """A well-known model: the name users type, the hub repo it means, and what to expect of it."""

    name: str
    backend: str
    repo: str
    size_mb: int  # approximate download, as published
    english_only: bool
    languages: int  # how many languages it transcribes (1 when English-only)
    description: str
    #: Its languages' ISO 639-1 codes, where the model's own files do not say (Whisper's do).
    language_codes: tuple[str, ...] = ()

    @property
    def languages_label(self) -> str:
        return "en" if self.english_only else str(self.languages)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendDescription:
    """Everything about one backend that can be known without importing its library."""

    name: str  # the `backend = "..."` value in asr.toml
    #: Module with `warm_up(inference)` and `create(options)` (see base.BackendModule);
    #: imported only in a worker.
    implementation: str
    capabilities: Capabilities
    files: ModelFiles
    catalog: tuple[KnownModel, ...] = ()
    #: Short names for catalogue entries (`large` → `large-v3`).
    aliases: Mapping[str, str] = field(default_factory=dict)
    #: The pip extra that installs the backend's libraries; None when the base install has them.
    extra: str | None = None
    #: What a worker holds besides its weights (interpreter, the ML library, buffers), in MB:
    #: counted for `memory_budget_mb` before a model has ever loaded.
    runtime_mb: float = 250.0

    @property
    def install_hint(self) -> str:
        if self.extra is None:
            return "it is part of the base install: reinstall asr-supervisor"
        return f"install it with: pip install 'asr-supervisor[{self.extra}]'"

    def lookup(self, name: str) -> KnownModel | None:
        """The catalogue entry `name` (or an alias of it) means; None if it is not a known name."""
        wanted = self.aliases.get(name, name)
        return next((known for known in self.catalog if known.name == wanted), None)

    def known_names(self) -> list[str]:
        return [known.name for known in self.catalog] + list(self.aliases)
