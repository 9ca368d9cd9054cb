"""How many windows of a long file a faster-whisper worker decodes at once: pure arithmetic."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from worker.backends.faster_whisper import engine

MB = 1_048_576


@pytest.fixture
def ram(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    free = {"mb": 16_000.0}
    monkeypatch.setattr(engine.psutil, "virtual_memory", lambda: SimpleNamespace(available=free["mb"] * MB))
    return free


def test_a_number_is_taken_as_it_is(ram: dict[str, float]) -> None:
    ram["mb"] = 10.0
    assert engine.batch_size(3, "cpu", "int8", 3000, 5) == 3


def test_auto_on_a_cpu_fits_a_quarter_of_the_ram(ram: dict[str, float]) -> None:
    # tiny.en (72 MB of weights), beam 5: 90 MB a window; 16 GB free holds the most, 8.
    assert engine.batch_size("auto", "cpu", "int8", 72, 5) == engine.CPU_MAX_BATCH
    # large-v3 (3 GB): 3.8 GB a window at beam 5; a quarter of 16 GB holds one.
    assert engine.batch_size("auto", "cpu", "int8", 3090, 5) == 1
    ram["mb"] = 1_500.0  # a small box: 375 MB for the batch, 4 windows of tiny.en
    assert engine.batch_size("auto", "cpu", "int8", 72, 5) == 4


def test_auto_stays_within_what_the_memory_budget_leaves(ram: dict[str, float]) -> None:
    # tiny.en at beam 5: 90 MB a window. 200 MB left by memory_budget_mb after the copies: 2.
    assert engine.batch_size("auto", "cpu", "int8", 72, 5, room_mb=200) == 2
    assert engine.batch_size("auto", "cpu", "int8", 72, 5, room_mb=10) == 1  # never none
    assert engine.batch_size("auto", "cpu", "int8", 72, 5, room_mb=None) == engine.CPU_MAX_BATCH  # no budget
    assert engine.batch_size(6, "cpu", "int8", 72, 5, room_mb=10) == 6  # a number is obeyed


def test_auto_on_cuda_reads_the_free_vram(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_cuda_free_mb", lambda: 40_000.0)
    # large-v3 in float16: 1.9 GB a window at beam 5; 10 GB holds 5.
    assert engine.batch_size("auto", "cuda", "float16", 3090, 5) == 5
    monkeypatch.setattr(engine, "_cuda_free_mb", lambda: None)  # no nvidia-smi: no guess
    assert engine.batch_size("auto", "cuda", "float16", 3090, 5) == 1
