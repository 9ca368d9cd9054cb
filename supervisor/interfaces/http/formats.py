"""Render a transcription in each OpenAI `response_format`: pure functions of the result."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from common.protocol import Segment, TranscribeResult

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
FORMATS: tuple[str, ...] = ("json", "text", "srt", "verbose_json", "vtt")
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


def verbose_json(result: TranscribeResult, task: str, with_segments: bool, with_words: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": task,
        "language": result.language,
        "duration": result.duration,
        "text": result.text,
    }
    if with_segments:
        body["segments"] = [_segment_json(s) for s in result.segments]
    if with_words:
        body["words"] = [
            {"word": w.word, "start": w.start, "end": w.end, "probability": w.probability}
            for s in result.segments
            for w in (s.words or [])
        ]
    return body


def _segment_json(segment: Segment) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(segment)
    data.pop("words")
    return data


def srt(segments: list[Segment]) -> str:
    cues = [
        f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def vtt(segments: list[Segment]) -> str:
    cues = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"
