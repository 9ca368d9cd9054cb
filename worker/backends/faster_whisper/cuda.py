"""CTranslate2's CUDA libraries loaded before its first CUDA call, or a load error naming them.

CTranslate2 opens cuBLAS (and cuDNN, in the builds that use it) by name on its first CUDA
call, not at import: a spare that imported faster-whisper before it knew its device is still
in time when its LOAD says CUDA. `common.cuda_libs` finds the files (NVIDIA's wheels, from
`pip install 'asr-supervisor[cuda]'`, or the system's) and loads them; this module decides
what a missing one means for the device the model asked for.
"""

from __future__ import annotations

import logging
from functools import cache

from common import cuda_libs
from worker.backends.base import LoadError

log = logging.getLogger("worker")


def libraries_ready(asked: str) -> bool:
    """Whether CTranslate2 will find its CUDA libraries, now loaded into this process.

    `device = "cuda"` without them is a LoadError that names each missing file and its fix
    (CTranslate2's own error comes later, at the first decode, and names one file only);
    `"auto"` logs the same and runs on the CPU.
    """
    problem = _preload()
    if problem is None:
        return True
    if asked == "cuda":
        raise LoadError(f"CTranslate2 cannot use CUDA here: {problem}")
    log.warning('device "auto" found a CUDA device, but %s: running on the CPU', problem)
    return False


@cache  # once a process: a library loaded stays loaded
def _preload() -> str | None:
    result = cuda_libs.preload(cuda_libs.find())
    if result.loaded:
        log.info("CUDA libraries loaded: %s", ", ".join(result.loaded.values()))
    return result.problem()
