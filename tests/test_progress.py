"""The worker logs how far a long file has got, driven here by a fake clock."""

from __future__ import annotations

import logging

import pytest

from worker.engine.progress import EVERY_SECONDS, Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_long_file_logs_its_progress_now_and_then(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    progress = Progress("req-1", clock)
    progress.total = 3600.0
    with caplog.at_level(logging.INFO, logger="worker"):
        progress.segment(12.0)  # too soon after the start
        clock.now += EVERY_SECONDS
        progress.segment(300.0)
        clock.now += 1
        progress.segment(320.0)  # too soon after the last line
        clock.now += EVERY_SECONDS
        progress.segment(3700.0)  # a segment past the declared length is shown as the end
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"request=req-1 progress: 300 of 3600 s of audio (8 %) in {EVERY_SECONDS:.0f} s",
        f"request=req-1 progress: 3600 of 3600 s of audio (100 %) in {2 * EVERY_SECONDS + 1:.0f} s",
    ]


def test_a_short_file_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    progress = Progress("req-2", clock)
    progress.total = 60.0
    with caplog.at_level(logging.INFO, logger="worker"):
        for end in range(5, 60, 5):
            clock.now += EVERY_SECONDS
            progress.segment(float(end))
    assert not caplog.records
