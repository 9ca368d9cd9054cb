"""parakeet-nemo: a `.nemo` Parakeet model run by NeMo and torch (worker only).

NeMo's `transcribe()` sets the model up for each call (a data loader, the decoding's
timestamp mode) and keeps that state on the model, so two threads may not share one:
this backend has one lane. The gigabytes torch and NeMo take are why a Parakeet worker's
end matters: the TTL ends the process, and all of it goes back.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from common.backends.parakeet import NEMO
from common.protocol import ModelOptions, ReadyInfo
from worker.backends.base import LoadError
from worker.backends.parakeet import sources, windows
from worker.backends.parakeet.backend import ParakeetBackend

log = logging.getLogger("worker")
_MB = 1_048_576


def warm_up(inference: bool) -> None:
    """Import NeMo's ASR collection, the slowest part of a start, which a spare pays before any request.

    No throwaway inference: there is no bundled Parakeet model to run one with.
    """
    _quiet_nemo()
    import nemo.collections.asr  # noqa: F401

    _quiet_nemo()


def create(options: ModelOptions) -> NemoBackend:
    return NemoBackend(options)


class NemoBackend(ParakeetBackend):
    def __init__(self, options: ModelOptions) -> None:
        super().__init__(options)
        self._model: Any = None
        self._device = "cpu"
        self._dtype: Any = None  # autocast's type on CUDA; None runs in float32

    def load(self, room_mb: float | None = None) -> ReadyInfo:
        started = time.perf_counter()
        _quiet_nemo()
        try:
            import torch
            from nemo.collections.asr.models import ASRModel
        except ImportError as exc:
            raise LoadError(f"parakeet-nemo needs NeMo and torch ({exc}); {NEMO.install_hint}") from exc
        _quiet_nemo()
        path = _nemo_file(sources.resolve(self._options.source, self._options.cache_dir, NEMO))
        self._device = _device(self._options.device, torch)
        compute_type = _compute_type(self._options.compute_type, self._device, torch)
        self._dtype = getattr(torch, compute_type) if compute_type != "float32" else None
        if self._device == "cpu" and self._options.cpu_threads:
            torch.set_num_threads(self._options.cpu_threads)
        process = psutil.Process()
        base = process.memory_info().rss / _MB
        try:
            model = ASRModel.restore_from(str(path), map_location=torch.device(self._device))
        except Exception as exc:  # NeMo raises anything from a bad archive: the message is what helps
            raise LoadError(f"NeMo could not load {path}: {type(exc).__name__}: {exc}") from exc
        model.eval()
        self._model = model
        if self._options.concurrency not in ("auto", 0, 1):
            log.warning(
                "parakeet-nemo decodes one request at a time: concurrency = %s ignored", self._options.concurrency
            )
        rss = process.memory_info().rss / _MB
        return self._ready(
            model=self._model,
            backend=NEMO.name,
            languages=sources.languages(self._options.source, NEMO),
            device=self._device,
            compute_type=compute_type,
            started=started,
            lanes=1,
            lane_weights="copy",
            reason="NeMo's transcribe() keeps per-call state on the model: one lane",
            copy_mb=max(rss - base, path.stat().st_size / _MB),
            rss_mb=rss,
        )

    def decode_batch(self, model: Any, stretches: list[np.ndarray]) -> list[list[windows.TimedWord]]:
        import torch

        autocast = (
            torch.autocast(device_type=self._device, dtype=self._dtype)
            if self._dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            out = model.transcribe(stretches, batch_size=len(stretches), timestamps=True, verbose=False)
        hypotheses = out[0] if isinstance(out, tuple) else out  # RNNT models once returned (best, all)
        return [_words(h, samples.size / 16000) for h, samples in zip(hypotheses, stretches, strict=True)]


def _words(hypothesis: Any, seconds: float) -> list[windows.TimedWord]:
    stamps = (getattr(hypothesis, "timestamp", None) or {}).get("word") or []
    if stamps:
        return [windows.TimedWord(str(w["word"]), float(w["start"]), float(w["end"])) for w in stamps]
    # No word timings (a model without them): the words, spread over the audio.
    text = str(getattr(hypothesis, "text", hypothesis))
    return _spread(text.split(), seconds)


def _spread(words: list[str], seconds: float) -> list[windows.TimedWord]:
    step = seconds / max(len(words), 1)
    return [windows.TimedWord(w, i * step, (i + 1) * step) for i, w in enumerate(words)]


def _nemo_file(path: Path) -> Path:
    """The `.nemo` archive itself, when `path` is the directory (a hub snapshot) holding it."""
    if path.is_file():
        return path
    found = sorted(path.glob("*.nemo"))
    if not found:
        raise LoadError(f"{path} holds no .nemo file")
    return found[0]


def _device(device: str, torch: Any) -> str:
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if device == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if device == "cuda" and not cuda:
        raise LoadError('device \'cuda\' was asked for but torch sees no CUDA device (set device = "cpu" or "auto")')
    if device == "mps" and not mps:
        raise LoadError('device \'mps\' was asked for but torch has no Apple MPS here (set device = "cpu" or "auto")')
    return device


def _compute_type(compute_type: str, device: str, torch: Any) -> str:
    """float32 on CPU and MPS; on CUDA bfloat16 where the card has it, else float16 (autocast)."""
    if compute_type in ("auto", "default"):
        if device != "cuda":
            return "float32"
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if compute_type not in ("float32", "float16", "bfloat16"):
        raise LoadError(f"parakeet-nemo computes in float32, float16 or bfloat16, not {compute_type!r}")
    if compute_type != "float32" and device != "cuda":
        raise LoadError(f"compute_type {compute_type!r} needs CUDA; on {device} use float32 (or auto)")
    return compute_type


def _quiet_nemo() -> None:
    """NeMo logs every restore and call at INFO, and its telemetry warns at import that it is
    off: the worker's log is not for that. Called before the import and again after it."""
    logging.getLogger("nv_one_logger").setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        from nemo.utils import logging as nemo_logging

        nemo_logging.setLevel(logging.WARNING)
