"""faster-whisper (CTranslate2 Whisper): its description. The implementation is
`worker.backends.faster_whisper.engine`.

This module is imported by the supervisor and must stay ML-free; only `engine` imports
faster-whisper. Sizes are the approximate download (CTranslate2 weights as published);
languages are "en" for English-only models, else Whisper's 99. The same names work as
`--model NAME` and as `source = "NAME"`, and are the names faster-whisper itself accepts.
"""

from __future__ import annotations

from common.backends.description import BackendDescription, Capabilities, KnownModel, ModelFiles

NAME = "faster-whisper"


def _model(name: str, repo: str, size_mb: int, english_only: bool, description: str) -> KnownModel:
    return KnownModel(
        name=name,
        backend=NAME,
        repo=repo,
        size_mb=size_mb,
        english_only=english_only,
        languages=1 if english_only else 99,
        description=description,
    )


DESCRIPTION = BackendDescription(
    name=NAME,
    implementation="worker.backends.faster_whisper.engine",
    capabilities=Capabilities(translate=True, word_timestamps=True, streaming=True),
    # What faster_whisper.utils.download_model fetches from a CTranslate2 Whisper repo;
    # model.bin (the weights) is what makes a directory a model.
    files=ModelFiles(
        required=("model.bin",),
        download=("config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"),
    ),
    catalog=(
        _model("tiny.en", "Systran/faster-whisper-tiny.en", 75, True, "Whisper tiny, English only (bundled offline)"),
        _model("tiny", "Systran/faster-whisper-tiny", 75, False, "Whisper tiny, 99 languages"),
        _model("base.en", "Systran/faster-whisper-base.en", 145, True, "Whisper base, English only"),
        _model("base", "Systran/faster-whisper-base", 145, False, "Whisper base, 99 languages"),
        _model("small.en", "Systran/faster-whisper-small.en", 484, True, "Whisper small, English only"),
        _model("small", "Systran/faster-whisper-small", 484, False, "Whisper small, 99 languages"),
        _model("medium.en", "Systran/faster-whisper-medium.en", 1530, True, "Whisper medium, English only"),
        _model("medium", "Systran/faster-whisper-medium", 1530, False, "Whisper medium, 99 languages"),
        _model("large-v1", "Systran/faster-whisper-large-v1", 3090, False, "Whisper large-v1, 99 languages"),
        _model("large-v2", "Systran/faster-whisper-large-v2", 3090, False, "Whisper large-v2, 99 languages"),
        _model(
            "large-v3", "Systran/faster-whisper-large-v3", 3090, False, "Whisper large-v3, 99 languages, most accurate"
        ),
        _model(
            "large-v3-turbo",
            "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
            1620,
            False,
            "Whisper large-v3 turbo: near large-v3 accuracy, several times faster",
        ),
        _model(
            "distil-large-v2",
            "Systran/faster-distil-whisper-large-v2",
            1510,
            False,
            "Distil-Whisper large-v2: fast, English-focused",
        ),
        _model(
            "distil-large-v3",
            "Systran/faster-distil-whisper-large-v3",
            1510,
            False,
            "Distil-Whisper large-v3: fast, English-focused",
        ),
        _model(
            "distil-large-v3.5",
            "distil-whisper/distil-large-v3.5-ct2",
            1510,
            False,
            "Distil-Whisper large-v3.5: fast, English-focused",
        ),
        _model(
            "distil-medium.en",
            "Systran/faster-distil-whisper-medium.en",
            789,
            True,
            "Distil-Whisper medium, English only",
        ),
        _model(
            "distil-small.en", "Systran/faster-distil-whisper-small.en", 336, True, "Distil-Whisper small, English only"
        ),
    ),
    aliases={"large": "large-v3", "turbo": "large-v3-turbo"},
    extra=None,
)
