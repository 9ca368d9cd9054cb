"""Live decodes use a shorter Whisper window: cheaper, and only on their own thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from faster_whisper import transcribe

from worker.backends.faster_whisper.window import encoder_window
from worker.engine.live.jobs import LIVE_WINDOW_SECONDS, live_window


def test_live_decodes_ask_for_their_length_plus_a_second_never_under_the_minimum() -> None:
    assert live_window(2.0) == LIVE_WINDOW_SECONDS
    assert live_window(20.2) == 22
    assert live_window(28.5) is None  # 30 s or more: Whisper's own window, no saving


def test_the_window_applies_to_its_own_thread_only() -> None:
    """Two lanes share faster-whisper's module: one decoding live audio with a 15 s window must
    not shorten what another lane, decoding a file, gives the encoder at the same moment."""
    features = np.zeros((80, 700), dtype=np.float32)
    inside = threading.Event()
    release = threading.Event()
    seen: dict[str, int] = {}

    def partial() -> None:
        with encoder_window(15):
            seen["partial"] = transcribe.pad_or_trim(features).shape[-1]
            inside.set()
            release.wait(10)

    lane = threading.Thread(target=partial)
    lane.start()
    assert inside.wait(10)
    seen["file"] = transcribe.pad_or_trim(features).shape[-1]  # meanwhile, on another thread
    release.set()
    lane.join()
    seen["after"] = transcribe.pad_or_trim(features).shape[-1]
    assert seen == {"partial": 1500, "file": 3000, "after": 3000}


@pytest.mark.parametrize("seconds", [None, 30])
def test_no_window_is_whispers_own(seconds: int | None) -> None:
    with encoder_window(seconds):
        assert transcribe.pad_or_trim(np.zeros((80, 10), dtype=np.float32)).shape[-1] == 3000
