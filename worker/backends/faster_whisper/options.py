"""faster-whisper's transcription options, as the batched seek loop and its fallback read them (worker only)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    """faster-whisper's transcription options, as this loop reads them."""

    beam_size: int = 5
    best_of: int = 5
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float = 2.4
    log_prob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    prompt_reset_on_temperature: float = 0.5
    #: The client's prompt, as tokens: every section starts from it.
    initial_tokens: tuple[int, ...] = ()
    hotwords: str | None = None
    word_timestamps: bool = False
    max_initial_timestamp: float = 1.0
    prepend_punctuations: str = "\"'“¿([{-"
    append_punctuations: str = "\"'.。,，!！?？:：”)]}、"

    def generate_key(self) -> tuple[object, ...]:
        """The options CTranslate2's generate and the temperature fallback read: windows whose
        options agree on these may share one call (worker.backends.faster_whisper.passes)."""
        return (
            self.beam_size,
            self.best_of,
            self.temperatures,
            self.compression_ratio_threshold,
            self.log_prob_threshold,
            self.no_speech_threshold,
            self.max_initial_timestamp,
        )
