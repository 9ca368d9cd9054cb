"""The CUDA libraries CTranslate2 loads by name: which, where they are, and loading them first.

CTranslate2's PyPI wheels carry no CUDA library. On their first CUDA call they `dlopen`
cuBLAS (and, in the releases built with cuDNN, cuDNN) by soname, and the dynamic loader
looks for a soname in LD_LIBRARY_PATH and its cache, never in site-packages, where NVIDIA's
wheels (`pip install 'asr-supervisor[cuda]'`) put them: `nvidia/cublas/lib/libcublas.so.12`.
Hence faster-whisper's most common failure, "Library libcublas.so.12 is not found" or
"Could not load library libcudnn_ops.so.9", and the LD_LIBRARY_PATH every guide has users
set. A library already loaded in the process answers a `dlopen` of its soname, though: a
worker that loads the wheels' files by path first, RTLD_GLOBAL (as torch does for the same
wheels), needs no LD_LIBRARY_PATH.

Which libraries are needed is read from the installed CTranslate2 itself, the sonames its
library names: recent wheels load cuBLAS only, earlier ones cuDNN as well, and a build for
another CUDA major names other files. Standard library only, and `find()` loads nothing:
the supervisor's start-up check and `asrctl doctor` read it; a CUDA worker calls `preload()`.
"""

from __future__ import annotations

import mmap
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

#: What `pip install 'asr-supervisor[cuda]'` brings (pyproject.toml): a fix names the extra
#: when it covers the library, else the wheel itself.
EXTRA = "asr-supervisor[cuda]"
EXTRA_PACKAGES = frozenset({"nvidia-cublas-cu12", "nvidia-cudnn-cu12==9.*"})
#: What a CTranslate2 is assumed to load when its library cannot be found and read: what
#: faster-whisper's README asks for.
ASSUMED = frozenset({("cublas", 12), ("cudnn", 9)})
#: cuDNN's parts a convolution needs beside libcudnn itself, by major version (the files of
#: the well-known errors). The others in the same folder are loaded when they can be.
_CUDNN_PARTS = {9: ("ops", "cnn"), 8: ("ops_infer", "cnn_infer")}
_ELF = b"\x7fELF"


@dataclass(frozen=True, slots=True)
class Library:
    """One library CTranslate2 loads, as the files that must load (dependencies first) and its wheel."""

    name: str  # "cuBLAS 12"
    sonames: tuple[str, ...]
    family: str  # the prefix of its files: siblings in its folder are loaded with it
    major: int
    package: str  # the pip requirement that installs it

    @property
    def fix(self) -> str:
        return f"pip install '{EXTRA if self.package in EXTRA_PACKAGES else self.package}'"


@dataclass(frozen=True, slots=True)
class Status:
    """Where each of one library's files was found: a wheel's file, or the system's."""

    library: Library
    found: dict[str, str]

    @property
    def missing(self) -> list[str]:
        return [soname for soname in self.library.sonames if soname not in self.found]

    @property
    def ok(self) -> bool:
        return not self.missing


@dataclass(frozen=True, slots=True)
class Lookup:
    """The libraries this CTranslate2 loads on CUDA, and where each was found (nothing loaded)."""

    ctranslate2: Path | None  # its shared library; None: not found, ASSUMED is what it needs
    libraries: list[Status]

    @property
    def missing(self) -> list[Status]:
        return [status for status in self.libraries if not status.ok]

    def problem(self) -> str | None:
        """What is missing, each library named with its files and its fix; None if nothing is."""
        if not self.missing:
            return None
        return "; ".join(f"{s.library.name} not found ({', '.join(s.missing)}): {s.library.fix}" for s in self.missing)


@dataclass(frozen=True, slots=True)
class Preloaded:
    """What `preload()` did: each required file loaded, or why not."""

    lookup: Lookup
    loaded: dict[str, str] = field(default_factory=dict)  # soname → the file loaded
    failed: dict[str, str] = field(default_factory=dict)  # soname → why it could not be loaded

    def problem(self) -> str | None:
        """What keeps CTranslate2 from CUDA: files missing or unloadable, by name; None if nothing."""
        problems = [problem] if (problem := self.lookup.problem()) else []
        for status in self.lookup.libraries:
            if bad := [s for s in status.library.sonames if s in self.failed]:
                why = "; ".join(f"{s}: {self.failed[s]}" for s in bad)
                problems.append(f"{status.library.name} found but not loadable ({why}): {status.library.fix}")
        return "; ".join(problems) or None


def ctranslate2_library(paths: Sequence[str]) -> Path | None:
    """CTranslate2's shared library, from its distribution's list of files (nothing imported)."""
    for dist in metadata.distributions(name="ctranslate2", path=list(paths)):
        for file in dist.files or ():
            if file.name.startswith("libctranslate2") and ".so" in file.name:
                return Path(str(dist.locate_file(file)))
    return None


def references(binary: Path) -> set[tuple[str, int]]:
    """The CUDA libraries `binary` names, as (`cublas` or `cudnn`, major version) pairs.

    A plain byte search of the file, mapped (tens of milliseconds): the sonames CTranslate2
    passes to `dlopen` are strings in it, as are those it links to.
    """
    found: set[tuple[str, int]] = set()
    with binary.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for kind in ("cublas", "cudnn"):
            prefix = f"lib{kind}.so.".encode()
            at = data.find(prefix)
            while at != -1:
                if digits := re.match(rb"\d+", data[at + len(prefix) : at + len(prefix) + 4]):
                    found.add((kind, int(digits[0])))
                at = data.find(prefix, at + 1)
    return found


def libraries(referenced: set[tuple[str, int]] | frozenset[tuple[str, int]]) -> list[Library]:
    """The libraries behind (`cublas`/`cudnn`, major) references, with their files and wheels."""
    cuda = max((major for kind, major in referenced if kind == "cublas"), default=12)
    needed = []
    for kind, major in sorted(referenced):
        if kind == "cublas":
            sonames: tuple[str, ...] = (f"libcublasLt.so.{major}", f"libcublas.so.{major}")
            needed.append(Library(f"cuBLAS {major}", sonames, "libcublas", major, f"nvidia-cublas-cu{major}"))
        else:
            sonames = (*(f"libcudnn_{part}.so.{major}" for part in _CUDNN_PARTS.get(major, ())), f"libcudnn.so.{major}")
            needed.append(Library(f"cuDNN {major}", sonames, "libcudnn", major, f"nvidia-cudnn-cu{cuda}=={major}.*"))
    return needed


def wheel_files(paths: Sequence[str]) -> dict[str, Path]:
    """Every library file in NVIDIA's wheels on `paths` (`nvidia/<name>/lib/`), by file name;
    the first on the path wins, as an import would."""
    found: dict[str, Path] = {}
    for entry in paths:
        for file in sorted(Path(entry or ".").glob("nvidia/*/lib/lib*.so*")):
            found.setdefault(file.name, file)
    return found


def system_files() -> dict[str, str]:
    """The libraries the dynamic loader finds by itself: LD_LIBRARY_PATH's folders, then its cache."""
    found: dict[str, str] = {}
    for folder in filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)):
        for file in sorted(Path(folder).glob("lib*.so*")):
            found.setdefault(file.name, str(file))
    ldconfig = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), None
    )
    if ldconfig is None:
        return found
    try:
        cache = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return found
    for line in cache.splitlines():  # "\tlibcublas.so.12 (libc6,x86-64) => /usr/local/cuda/lib64/libcublas.so.12"
        name, arrow, path = line.strip().partition(" => ")
        if arrow:
            found.setdefault(name.split(" ", 1)[0], path.strip())
    return found


def find(paths: Sequence[str] | None = None, system: bool = True) -> Lookup:
    """The libraries the installed CTranslate2 loads on CUDA, each looked for in NVIDIA's wheels
    on `paths` (default: sys.path), then (with `system`) where the loader looks by itself."""
    search = list(sys.path if paths is None else paths)
    binary = ctranslate2_library(search)
    referenced = references(binary) if binary is not None and binary.is_file() else ASSUMED
    wheels = wheel_files(search)
    known: dict[str, str] | None = None
    statuses = []
    for library in libraries(referenced):
        found: dict[str, str] = {}
        for soname in library.sonames:
            if soname in wheels:
                found[soname] = str(wheels[soname])
                continue
            if system and known is None:
                known = system_files()
            if soname in (known or {}):
                found[soname] = (known or {})[soname]
        statuses.append(Status(library, found))
    return Lookup(binary if binary is not None and binary.is_file() else None, statuses)


#: Every library this process loaded, kept: CTranslate2's later `dlopen` finds them loaded.
_held: dict[str, object] = {}


def preload(lookup: Lookup) -> Preloaded:
    """Load every file `lookup` found, RTLD_GLOBAL, before CTranslate2 asks for them by name.

    Files are tried in rounds until a round loads nothing more, so a library whose dependency
    comes later in the list loads in the next round. A library's siblings in its wheel folder
    (cuDNN's engines) are loaded too where they can be: cuDNN opens them by name as well. A
    file that is not a shared library is refused unread, and nothing here raises: what could
    not be loaded is in the result, for the caller to say.
    """
    import ctypes  # only where libraries are loaded (a worker): the supervisor's lookups need none

    required: dict[str, str] = {}
    optional: dict[str, str] = {}
    for status in lookup.libraries:
        required.update(status.found)
        for folder in {Path(path).parent for path in status.found.values()}:
            for sibling in sorted(folder.glob(f"{status.library.family}*.so.{status.library.major}")):
                optional.setdefault(sibling.name, str(sibling))
    pending = {**optional, **required}
    failed: dict[str, str] = {}
    for soname, path in list(pending.items()):
        if soname in _held:
            del pending[soname]
        elif not _is_shared_library(path):
            failed[soname] = "not a shared library (no ELF header)"
            del pending[soname]
    progress = True
    while pending and progress:
        progress = False
        for soname, path in list(pending.items()):
            try:
                _held[soname] = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError as exc:
                failed[soname] = str(exc)
                continue
            del pending[soname]
            failed.pop(soname, None)
            progress = True
    loaded = {soname: path for soname, path in required.items() if soname in _held}
    return Preloaded(lookup, loaded, {s: why for s, why in failed.items() if s in required})


def _is_shared_library(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == _ELF
    except OSError:
        return False


def report(lookup: Lookup, failed: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Each library as plain data (JSON): its files, those found (where) and missing, those that
    would not load (why), and its fix; what `python -m worker.doctor` prints and doctor reads."""
    return [
        {
            "name": status.library.name,
            "sonames": list(status.library.sonames),
            "found": status.found,
            "missing": status.missing,
            "failed": {s: why for s, why in (failed or {}).items() if s in status.library.sonames},
            "fix": status.library.fix,
        }
        for status in lookup.libraries
    ]
