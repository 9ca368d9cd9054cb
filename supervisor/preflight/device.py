"""The machine: NVIDIA GPUs and their driver, CTranslate2's CUDA libraries and compute types, memory.

The GPUs come from `nvidia-smi` (`common.nvidia_smi`); CTranslate2's view (the devices it
sees, their compute types, the libraries loaded, one throwaway inference) from the worker's
side in a subprocess, `python -m worker.doctor`; the libraries' lookup alone, which the
start-up check uses, from `common.cuda_libs`, which loads nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import psutil

from common import cuda_libs, nvidia_smi
from supervisor.config import Settings
from supervisor.preflight.check import Check, Outcome

#: The backend whose CUDA libraries `common.cuda_libs` looks for (CTranslate2's). NeMo's torch
#: brings its own.
CTRANSLATE2_BACKEND = "faster-whisper"
#: `python -m worker.doctor`: imports CTranslate2, and on a GPU loads the bundled model once.
PROBE_TIMEOUT_S = 120
_QUERY = ["--query-gpu=index,name,driver_version,memory.total,memory.free", "--format=csv,noheader,nounits"]
_MB = 1_048_576


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    name: str
    driver: str
    total_mb: int
    free_mb: int


@dataclass(frozen=True, slots=True)
class CudaWants:
    """The faster-whisper models that ask for CUDA: by name (`device = "cuda"`), or take it when there is one ("auto")."""

    explicit: list[str]
    auto: list[str]


def gpus() -> list[Gpu] | None:
    """The GPUs nvidia-smi lists; None when there is no nvidia-smi (no NVIDIA driver)."""
    rows = nvidia_smi.query(_QUERY)
    if rows is None:
        return None
    listed = []
    for row in rows:
        try:
            listed.append(Gpu(int(row[0]), row[1], row[2], int(float(row[3])), int(float(row[4]))))
        except (IndexError, ValueError):
            continue
    return listed


def probe(inference: bool) -> dict[str, Any]:
    """`python -m worker.doctor`'s report; {"error": ...} when it gave none."""
    command = [sys.executable, "-m", "worker.doctor", *([] if inference else ["--no-inference"])]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"python -m worker.doctor gave no answer in {PROBE_TIMEOUT_S} s"}
    except OSError as exc:
        return {"error": f"python -m worker.doctor could not start: {exc}"}
    try:
        report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        said = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"python -m worker.doctor failed (exit {done.returncode}): {said[0]}"}
    return report


def wants(settings: Settings) -> CudaWants:
    models = [s for s in settings.models.values() if s.backend == CTRANSLATE2_BACKEND]
    return CudaWants(
        [s.name for s in models if s.options.device == "cuda"], [s.name for s in models if s.options.device == "auto"]
    )


def checks(settings: Settings, found: dict[str, Any]) -> list[Check]:
    """The device rows of `asrctl doctor`, from nvidia-smi and the worker's report `found`."""
    listed = gpus()
    want = wants(settings)
    seen = found.get("cuda_devices")
    has_gpu = bool(listed) and seen != 0
    rows = gpu_checks(listed, seen, settings)
    if "error" in found:
        needed = any(s.backend == CTRANSLATE2_BACKEND for s in settings.models.values())
        rows.append(
            Check(
                "device",
                "CTranslate2",
                "fail" if needed else "warn",
                found["error"],
                "pip install --force-reinstall ctranslate2",
            )
        )
    else:
        rows.append(Check("device", "CTranslate2", "ok", f"{found['ctranslate2']}, sees {seen} CUDA device(s)"))
    rows += library_checks(found.get("libraries", []), found.get("ctranslate2_library"), has_gpu, want)
    for where, types in found.get("compute_types", {}).items():
        auto = "int8" if where == "cpu" else "float16"  # what compute_type = "auto" takes there
        rows.append(Check("device", f"compute types, {where}", "ok", f"{', '.join(types)} (auto: {auto})"))
    if (ran := found.get("inference")) is not None:
        if "error" in ran:
            rows.append(
                Check(
                    "CUDA",
                    "test inference",
                    "fail",
                    f"{ran['device']}, {ran['compute_type']}: {ran['error']}",
                    "see the error; asrctl doctor lists the libraries above",
                )
            )
        else:
            rows.append(
                Check(
                    "CUDA",
                    "test inference",
                    "ok",
                    f"the bundled model ran on {ran['device']} in {ran['compute_type']} ({ran['seconds']} s, its load included)",
                )
            )
    memory = psutil.virtual_memory()
    rows.append(Check("memory", "RAM", "ok", f"{memory.available // _MB} of {memory.total // _MB} MB available"))
    return rows


def gpu_checks(listed: list[Gpu] | None, seen: int | None, settings: Settings) -> list[Check]:
    """One row per GPU (its driver, its free VRAM), or one saying there is none and whether that matters."""
    on_cuda = [s.name for s in settings.models.values() if s.options.device == "cuda"]
    if not listed:
        why = "nvidia-smi not found (no NVIDIA driver)" if listed is None else "nvidia-smi lists no GPU"
        if on_cuda:
            fix = (
                f'set device = "auto" or "cpu" for {", ".join(on_cuda)}, or serve them on a machine with an NVIDIA GPU'
            )
            return [Check("device", "CUDA device", "fail", f"none: {why}; {', '.join(on_cuda)} ask for CUDA", fix)]
        return [Check("device", "CUDA device", "note", f"none: {why}. Models run on the CPU: fine for CPU serving")]
    rows = [
        Check(
            "device", f"GPU {g.index}", "ok", f"{g.name}, driver {g.driver}, VRAM {g.free_mb} of {g.total_mb} MB free"
        )
        for g in listed
    ]
    if seen == 0:
        outcome: Outcome = "fail" if on_cuda else "warn"
        rows.append(
            Check(
                "device",
                "CUDA for CTranslate2",
                outcome,
                f"nvidia-smi lists {len(listed)} GPU(s) but CTranslate2 sees none: models run on the CPU",
                "update the NVIDIA driver (CUDA 12 needs 525 or newer), and check CUDA_VISIBLE_DEVICES",
            )
        )
    return rows


def library_checks(libraries: list[dict[str, Any]], binary: str | None, has_gpu: bool, want: CudaWants) -> list[Check]:
    """One row per CUDA library CTranslate2 loads: found (and loaded) where, or missing with its fix."""
    rows = []
    for library in libraries:
        name, fix = library["name"], library["fix"]
        bad = library["missing"] or library["failed"]
        if not bad:
            where = sorted({path.rsplit("/", 1)[0] for path in library["found"].values()})
            rows.append(Check("CUDA", name, "ok", f"found in {', '.join(where)}"))
            continue
        what = (
            f"not found ({', '.join(library['missing'])})"
            if library["missing"]
            else "found but not loadable (" + "; ".join(f"{s}: {why}" for s, why in library["failed"].items()) + ")"
        )
        if not has_gpu:
            rows.append(Check("CUDA", name, "note", f"{what}; needed only on a CUDA device", fix))
        elif want.explicit:
            rows.append(Check("CUDA", name, "fail", f"{what}: {', '.join(want.explicit)} cannot load on CUDA", fix))
        elif want.auto:
            rows.append(Check("CUDA", name, "warn", f"{what}: {', '.join(want.auto)} run on the CPU instead", fix))
        else:
            rows.append(Check("CUDA", name, "note", f"{what}; no model asks for CUDA", fix))
    if binary is not None and not any(lib["name"].startswith("cuDNN") for lib in libraries):
        rows.append(Check("CUDA", "cuDNN", "note", "not needed: this CTranslate2 loads no cuDNN"))
    return rows


def cuda_library_checks(settings: Settings) -> list[Check]:
    """The library rows for models that would use CUDA, without the worker's probe: for start-up.

    Nothing to check (no lookup at all) unless a faster-whisper model asks for CUDA, or takes
    it ("auto") on a machine whose nvidia-smi lists a GPU.
    """
    want = wants(settings)
    if not want.explicit and not (want.auto and gpus()):
        return []
    lookup = cuda_libs.find()
    binary = str(lookup.ctranslate2) if lookup.ctranslate2 else None
    return library_checks(cuda_libs.report(lookup), binary, has_gpu=True, want=want)
