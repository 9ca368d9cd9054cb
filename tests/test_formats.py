"""The response formats, as pure functions of a result (no server): what a subtitle player or SDK parses."""

from __future__ import annotations

from common.protocol import Segment, TranscribeResult, Word
from supervisor.interfaces.http import formats
from supervisor.interfaces.http.schemas import VerboseTranscriptionJSON

RESULT = TranscribeResult(
    text="Hello there. General Kenobi.",
    language="en",
    duration=3725.5,
    segments=[
        Segment(
            id=0,
            start=0.0,
            end=1.25,
            text=" Hello there.",
            words=[Word(0.0, 0.5, " Hello", 0.9), Word(0.5, 1.25, " there.", 0.8)],
        ),
        Segment(
            id=1, start=3723.456, end=3725.5, text=" General Kenobi.", words=[Word(3723.456, 3725.5, " General", 0.7)]
        ),
    ],
)


def test_srt_numbers_cues_and_uses_commas() -> None:
    assert formats.srt(RESULT.segments) == (
        "1\n00:00:00,000 --> 00:00:01,250\nHello there.\n\n2\n01:02:03,456 --> 01:02:05,500\nGeneral Kenobi.\n"
    )


def test_vtt_has_its_header_and_uses_dots() -> None:
    assert formats.vtt(RESULT.segments) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nHello there.\n\n01:02:03.456 --> 01:02:05.500\nGeneral Kenobi.\n"
    )


def test_no_segments_is_an_empty_but_valid_file() -> None:
    assert formats.srt([]) == "" and formats.vtt([]) == "WEBVTT\n\n"


def test_verbose_json_matches_its_documented_schema() -> None:
    both = formats.verbose_json(RESULT, "transcribe", with_segments=True, with_words=True)
    parsed = VerboseTranscriptionJSON.model_validate(both)
    assert parsed.segments is not None and [s.text for s in parsed.segments] == [" Hello there.", " General Kenobi."]
    assert parsed.words is not None and [w.word for w in parsed.words] == [" Hello", " there.", " General"]
    assert "words" not in both["segments"][0]  # words are listed once, at the top level

    plain = formats.verbose_json(RESULT, "translate", with_segments=False, with_words=False)
    assert plain == {"task": "translate", "language": "en", "duration": 3725.5, "text": RESULT.text}
