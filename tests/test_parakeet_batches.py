"""Parakeet stretches of concurrent requests decoded in one call, with the words each gets alone.

Both backends, in this process, on the tiny random Parakeet (tests/tiny_parakeet.py): its
words are nonsense, but the same nonsense alone or batched is what is asserted. A solo job
holds the compute lane while the requests' stretches gather, so what shares a call is
decided by the code, not by timing.
"""

from __future__ import annotations

import io
import os
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import tiny_parakeet
from conftest import ASSETS, make_long_clip, wait_for

from common.protocol import ModelOptions, TranscribeParams

if (why := tiny_parakeet.stack_missing()) is not None:
    if os.environ.get(tiny_parakeet.SKIP_ENV) == "1":
        pytest.skip(f"{why} ({tiny_parakeet.SKIP_ENV}=1)", allow_module_level=True)
    raise RuntimeError(f"{why}; or set {tiny_parakeet.SKIP_ENV}=1 to skip the Parakeet tests")

CLIPS = ["weather", "fox", "siobhan", "sonos"]


def _clip(name: str) -> np.ndarray:
    with wave.open(str(ASSETS / f"{name}.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768


@pytest.fixture(scope="module")
def model() -> tiny_parakeet.TinyParakeet:
    return tiny_parakeet.cached()


def _backend(kind: str, model: tiny_parakeet.TinyParakeet, batch_size: int = 4) -> Any:
    if kind == "onnx":
        from worker.backends.parakeet import onnx_engine as engine

        source = str(model.onnx)
    else:
        from worker.backends.parakeet import nemo_engine as engine  # type: ignore[no-redef]

        source = str(model.nemo)
    backend = engine.create(ModelOptions(source=source, device="cpu", concurrency=1, batch_size=batch_size))
    backend.load()
    return backend


@pytest.mark.parametrize("kind", ["onnx", "nemo"])
def test_concurrent_stretches_share_one_call_and_keep_their_words(kind: str, model: tiny_parakeet.TinyParakeet) -> None:
    backend = _backend(kind, model)
    batcher = backend.batcher
    clips = {name: _clip(name) for name in CLIPS}

    def transcribe(audio: np.ndarray) -> str:
        return str(backend.transcribe(audio, TranscribeParams(), lambda _s: True).text)

    alone = {name: transcribe(audio) for name, audio in clips.items()}
    assert any(alone.values()), alone  # nonsense, but words
    before = (batcher.passes, batcher.items)

    gate = threading.Event()
    with ThreadPoolExecutor(len(CLIPS) + 1) as pool:
        pool.submit(batcher.solo, lambda _model: gate.wait(30))
        wait_for(lambda: batcher.busy == 1, timeout=30, what="the lane held")
        together = {name: pool.submit(transcribe, audio) for name, audio in clips.items()}
        wait_for(lambda: batcher.waiting == len(CLIPS), timeout=30, what="every request's stretch waiting")
        gate.set()
        texts = {name: f.result(timeout=120) for name, f in together.items()}

    assert texts == alone
    assert (batcher.passes - before[0], batcher.items - before[1]) == (1, len(CLIPS))  # one call held all four


def test_a_long_files_windows_are_decoded_in_batches_with_the_same_segments(
    model: tiny_parakeet.TinyParakeet, tmp_path: Any
) -> None:
    with wave.open(io.BytesIO(make_long_clip(tmp_path, 20))) as w:  # 294 s: three 2-minute windows or more
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    results = {}
    for batch in (1, 4):
        backend = _backend("onnx", model, batch_size=batch)
        result = backend.transcribe(audio, TranscribeParams(word_timestamps=True), lambda _s: True)
        results[batch] = (result, backend.batcher.passes, backend.batcher.items)
    (one, passes_one, windows), (four, passes_four, windows_four) = results[1], results[4]
    assert windows == windows_four >= 3
    assert passes_one == windows and passes_four == -(-windows // 4)  # a pass for every four windows
    assert [(s.start, s.end, s.text) for s in four.segments] == [(s.start, s.end, s.text) for s in one.segments]
    assert four.segments[-1].end > 240  # the clock runs on through the windows
