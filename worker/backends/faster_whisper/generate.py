"""faster-whisper's temperature fallback, for a batch of windows: CTranslate2's generate (worker only).

faster-whisper decodes one window at a time (`generate_with_fallback`): greedy or beam at
temperature 0, and again at the next temperature while the result fails a check (it loops,
or the model is unsure of it) unless it is silence. Here a whole batch goes through
CTranslate2 at once, and only the windows that fail a check are encoded and decoded again,
together, at the next temperature. The calls and their arguments are faster-whisper's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.backends.faster_whisper.options import Options

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer


@dataclass
class Decoded:
    """One window's decode: its tokens and the figures the checks read."""

    tokens: list[int]
    avg_logprob: float
    temperature: float
    compression_ratio: float
    no_speech_prob: float
    #: Every decode tried for the window, this one included (the temperature fallback's).
    tried: list[Decoded] = field(default_factory=list)


class FallbackGenerator:
    """Decodes encoded windows with `model`, falling back to higher temperatures window by window."""

    def __init__(self, model: WhisperModel, tokenizer: Tokenizer, options: Options) -> None:
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        self._model = model
        self._tokenizer = tokenizer
        self._options = options
        self._suppress = get_suppressed_tokens(tokenizer, [-1])
        self._compression_ratio = get_compression_ratio

    def generate(self, encoded: Any, batch: np.ndarray, prompts: list[list[int]]) -> list[Decoded]:
        """faster-whisper's generate_with_fallback, for a batch: only the windows that fail a
        check are encoded and decoded again, together, at the next temperature."""
        options = self._options
        results: dict[int, Decoded] = {}
        tried: list[list[Decoded]] = [[] for _ in prompts]
        pending = list(range(len(prompts)))
        for temperature in options.temperatures:
            outputs = self._call(encoded, [prompts[i] for i in pending], temperature)
            still = []
            for i, out in zip(pending, outputs, strict=True):
                tried[i].append(out)
                if self._needs_fallback(out):
                    still.append(i)
                else:
                    results[i] = out
            if not still:
                break
            if len(still) < len(pending):
                encoded = self._model.encode(batch[still])
            pending = still
        else:
            for i in pending:  # every temperature failed: the likeliest text that is not a loop
                below = [d for d in tried[i] if d.compression_ratio <= options.compression_ratio_threshold]
                best = max(below or tried[i], key=lambda d: d.avg_logprob)
                results[i] = Decoded(
                    best.tokens, best.avg_logprob, temperature, best.compression_ratio, best.no_speech_prob
                )
        for i, result in results.items():
            result.tried = tried[i]
        return [results[i] for i in range(len(prompts))]

    def _call(self, encoded: Any, prompts: list[list[int]], temperature: float) -> list[Decoded]:
        """One generate call; a result's tokens begin with its forced start, if it has one
        (CTranslate2 returns what follows the task tokens), as if the model had written it."""
        options = self._options
        if temperature > 0:
            kwargs: dict[str, Any] = {
                "beam_size": 1,
                "num_hypotheses": options.best_of,
                "sampling_topk": 0,
                "sampling_temperature": temperature,
            }
        else:
            kwargs = {"beam_size": options.beam_size}
        max_length = self._model.max_length
        outputs = self._model.model.generate(
            encoded,
            prompts,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            max_initial_timestamp_index=round(options.max_initial_timestamp / self._model.time_precision),
            **kwargs,
        )
        decoded = []
        for out in outputs:
            tokens = list(out.sequences_ids[0])
            avg_logprob = out.scores[0] * len(tokens) / (len(tokens) + 1)
            text = self._tokenizer.decode(tokens).strip()
            decoded.append(Decoded(tokens, avg_logprob, temperature, self._compression_ratio(text), out.no_speech_prob))
        return decoded

    def _needs_fallback(self, d: Decoded) -> bool:
        options = self._options
        low_logprob = d.avg_logprob < options.log_prob_threshold
        if d.no_speech_prob > options.no_speech_threshold and low_logprob:
            return False  # silence: no other temperature will find words in it
        return d.compression_ratio > options.compression_ratio_threshold or low_logprob
