"""Well-known faster-whisper models: the names users type, mapped to hub repos.

Sizes are the approximate download (CTranslate2 weights as published); languages are
"en" for English-only models, else Whisper's 99. The same names work as `--model NAME`
and as `source = "NAME"`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KnownModel:
    name: str
    repo: str
    size_mb: int
    english_only: bool
    description: str


_ENTRIES = [
    ("tiny.en", "Systran/faster-whisper-tiny.en", 75, True, "Whisper tiny, English only (bundled offline)"),
    ("tiny", "Systran/faster-whisper-tiny", 75, False, "Whisper tiny, 99 languages"),
    ("base.en", "Systran/faster-whisper-base.en", 145, True, "Whisper base, English only"),
    ("base", "Systran/faster-whisper-base", 145, False, "Whisper base, 99 languages"),
    ("small.en", "Systran/faster-whisper-small.en", 484, True, "Whisper small, English only"),
    ("small", "Systran/faster-whisper-small", 484, False, "Whisper small, 99 languages"),
    ("medium.en", "Systran/faster-whisper-medium.en", 1530, True, "Whisper medium, English only"),
    ("medium", "Systran/faster-whisper-medium", 1530, False, "Whisper medium, 99 languages"),
    ("large-v2", "Systran/faster-whisper-large-v2", 3090, False, "Whisper large-v2, 99 languages"),
    ("large-v3", "Systran/faster-whisper-large-v3", 3090, False, "Whisper large-v3, 99 languages, most accurate"),
    ("large-v3-turbo", "mobiuslabsgmbh/faster-whisper-large-v3-turbo", 1620, False,
     "Whisper large-v3 turbo: near large-v3 accuracy, several times faster"),
    ("distil-large-v3", "Systran/faster-distil-whisper-large-v3", 1510, False,
     "Distil-Whisper large-v3: fast, English-focused"),
    ("distil-medium.en", "Systran/faster-distil-whisper-medium.en", 789, True, "Distil-Whisper medium, English only"),
    ("distil-small.en", "Systran/faster-distil-whisper-small.en", 336, True, "Distil-Whisper small, English only"),
]

CATALOG: dict[str, KnownModel] = {e[0]: KnownModel(*e) for e in _ENTRIES}
ALIASES = {"large": "large-v3", "turbo": "large-v3-turbo"}


def lookup(name: str) -> KnownModel | None:
    return CATALOG.get(ALIASES.get(name, name))
