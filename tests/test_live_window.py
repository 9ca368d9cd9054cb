"""Live partials ask for a Whisper window of their own length: cheaper, never under the minimum."""

from __future__ import annotations

from worker.engine.live.jobs import LIVE_WINDOW_SECONDS, live_window


def test_live_decodes_ask_for_their_length_plus_a_second_never_under_the_minimum() -> None:
    assert live_window(2.0) == LIVE_WINDOW_SECONDS
    assert live_window(20.2) == 22
    assert live_window(28.5) is None  # 30 s or more: Whisper's own window, no saving
