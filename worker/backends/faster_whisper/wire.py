"""faster-whisper's segments (dicts on the recording's clock) as the wire protocol's `Segment` (worker only)."""

from __future__ import annotations

from typing import Any

from common.protocol import Segment, Word


def segment(index: int, s: dict[str, Any]) -> Segment:
    """Our wire segment for one of `BatchDecoder.run`'s (or faster-whisper's, as a dict on the
    recording's clock)."""
    return Segment(
        id=index,
        start=round(float(s["start"]), 3),
        end=round(float(s["end"]), 3),
        text=s["text"],
        seek=int(s["seek"]),
        tokens=[int(t) for t in s["tokens"]],
        temperature=float(s["temperature"]),
        avg_logprob=float(s["avg_logprob"]),
        compression_ratio=float(s["compression_ratio"]),
        no_speech_prob=float(s["no_speech_prob"]),
        words=None
        if s["words"] is None
        else [
            Word(
                start=round(float(w["start"]), 3),
                end=round(float(w["end"]), 3),
                word=w["word"],
                probability=round(float(w["probability"]), 4),
            )
            for w in s["words"]
        ],
    )
