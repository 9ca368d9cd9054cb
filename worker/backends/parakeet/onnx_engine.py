"""parakeet-onnx: a Parakeet ONNX export run by onnx-asr and onnxruntime (worker only).

A small fraction of NeMo's libraries, for CPU boxes. onnxruntime's sessions may be run
from several threads at once, so the lanes share one model (one copy of the weights,
whatever `lane_weights` says). Published exports hold float32 and int8 graphs side by
side: int8 is the CPU default, as it is for faster-whisper.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from common import lane_plan
from common.backends.parakeet import ONNX
from common.protocol import ModelOptions, ReadyInfo
from worker.backends.base import LoadError
from worker.backends.parakeet import sources, windows
from worker.backends.parakeet.backend import ParakeetBackend

log = logging.getLogger("worker")
_MB = 1_048_576
#: One encoder frame: 10 ms features, 8x subsampling. A token's time is its frame's start.
_FRAME_SECONDS = 0.08
_DEFAULT_TYPE = "nemo-conformer-tdt"


def warm_up(inference: bool) -> None:
    """Import onnx-asr (and onnxruntime with it): there is no bundled model to run."""
    import onnx_asr  # noqa: F401


def create(options: ModelOptions) -> OnnxBackend:
    return OnnxBackend(options)


class OnnxBackend(ParakeetBackend):
    def __init__(self, options: ModelOptions) -> None:
        super().__init__(options)
        self._model: Any = None

    def load(self, room_mb: float | None = None) -> ReadyInfo:
        started = time.perf_counter()
        try:
            import onnx_asr
            import onnxruntime
        except ImportError as exc:
            raise LoadError(f"parakeet-onnx needs onnx-asr and onnxruntime ({exc}); {ONNX.install_hint}") from exc
        path = sources.resolve(self._options.source, self._options.cache_dir, ONNX)
        if path.is_file():
            path = path.parent
        device, providers = _providers(self._options.device, onnxruntime.get_available_providers())
        quantization = _quantization(self._options.compute_type, path)
        session = onnxruntime.SessionOptions()
        if self._options.cpu_threads:
            session.intra_op_num_threads = self._options.cpu_threads
        lanes = lane_plan.requested_lanes(self._options.concurrency, device, os.cpu_count())
        process = psutil.Process()
        base = process.memory_info().rss / _MB
        try:
            model = onnx_asr.load_model(
                _model_type(path), path, quantization=quantization, sess_options=session, providers=providers
            )
        except Exception as exc:  # onnx-asr and onnxruntime raise many types: the message is what helps
            raise LoadError(f"onnx-asr could not load {path}: {type(exc).__name__}: {exc}") from exc
        self._model = model.with_timestamps()
        rss = process.memory_info().rss / _MB
        return self._ready(
            model=self._model,
            backend=ONNX.name,
            languages=sources.languages(self._options.source, ONNX),
            device=device,
            compute_type=quantization or "float32",
            started=started,
            lanes=lanes,
            lane_weights="shared",
            reason="onnxruntime sessions run from several threads at once: the lanes share one model",
            copy_mb=rss - base,
            rss_mb=rss,
        )

    def decode_batch(self, model: Any, stretches: list[np.ndarray]) -> list[list[windows.TimedWord]]:
        results = model.recognize(stretches, sample_rate=16000)
        return [words_of(list(r.tokens or []), list(r.timestamps or []), list(r.logprobs or [])) for r in results]


def words_of(tokens: list[str], times: list[float], logprobs: list[float]) -> list[windows.TimedWord]:
    """SentencePiece tokens (a leading space starts a word) joined into timed words."""
    grouped: list[tuple[str, float, float, list[float]]] = []  # text, start, last token's time, logprobs
    for i, token in enumerate(tokens):
        time_ = float(times[i]) if i < len(times) else (grouped[-1][2] if grouped else 0.0)
        score = [float(logprobs[i])] if i < len(logprobs) else []
        if not grouped or token.startswith(" "):
            grouped.append((token.strip(), time_, time_, score))
        else:
            text, start, _, scores = grouped[-1]
            grouped[-1] = (text + token, start, time_, scores + score)
    out = []
    for i, (text, start, last, scores) in enumerate(grouped):
        if not text:
            continue
        end = last + _FRAME_SECONDS
        if i + 1 < len(grouped):
            end = min(end, grouped[i + 1][1])
        out.append(windows.TimedWord(text, start, max(end, start), sum(scores) / len(scores) if scores else None))
    return out


def _providers(device: str, available: list[str]) -> tuple[str, list[str]]:
    cuda = "CUDAExecutionProvider" in available
    if device == "auto":
        device = "cuda" if cuda else "cpu"
    if device == "cuda":
        if not cuda:
            raise LoadError(
                "device 'cuda' was asked for but this onnxruntime has no CUDA provider "
                '(pip install onnxruntime-gpu, or set device = "cpu" or "auto")'
            )
        return device, ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device != "cpu":
        raise LoadError(f"parakeet-onnx runs on 'cpu' or 'cuda', not {device!r}")
    return device, ["CPUExecutionProvider"]


def _quantization(compute_type: str, path: Path) -> str | None:
    """onnx-asr's `quantization` (the graphs' file suffix): int8 when the export has it, on "auto"."""
    if compute_type in ("auto", "default"):
        return "int8" if next(path.glob("encoder-model.int8.onnx"), None) else None
    if compute_type == "float32":
        return None
    if next(path.glob(f"encoder-model.{compute_type}.onnx"), None) is None:
        raise LoadError(f"{path} has no encoder-model.{compute_type}.onnx: compute_type {compute_type!r} is not there")
    return compute_type


def _model_type(path: Path) -> str:
    """The export's model type, from its config.json (onnx-asr's own convention)."""
    config = path / "config.json"
    if not config.is_file():
        return _DEFAULT_TYPE
    try:
        return str(json.loads(config.read_text()).get("model_type", _DEFAULT_TYPE))
    except (OSError, ValueError, AttributeError):
        return _DEFAULT_TYPE
