"""Whisper's windows in shared passes: what a window is, which windows share a call, and the call.

The seek loop (worker.backends.faster_whisper.decoder) hands each step's windows to the
model's `Batcher` (worker.engine.batcher), which runs them on a free compute lane beside
the windows of other requests and live sessions that can share the call. A pass encodes
its windows and decodes them with the temperature fallback (`generate`), in one
CTranslate2 call each.

What windows must share to go in one call (`Window.key`): the generate options, the
window's length (the encoder's input), where the prompt's `<|startoftranscript|>` sits
(after as many tokens of earlier text) and how many task tokens follow it: CTranslate2's
rule for a batch. A forced start after those may differ in length.

On a CPU two passes side by side on two lanes beat one twice as wide, so a lone long file's
sections split over both lanes decode about 1.2x faster than in one pass, with the same
words (docs/measurements.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.backends.faster_whisper.generate import Decoded, FallbackGenerator
from worker.backends.faster_whisper.options import Options
from worker.engine.batcher import FILE, Batcher

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer


@dataclass(frozen=True)
class Outcome:
    """One window's decode, and its encoder output where the caller asked to keep it (None:
    encode it again, as on CUDA, where the output stays on the device)."""

    decoded: Decoded
    encoded: np.ndarray | None


@dataclass(eq=False)
class Window:
    """One window to decode: its features (mel frames, already padded to the window) and prompt."""

    features: np.ndarray
    prompt: list[int]
    options: Options
    tokenizer: Tokenizer
    urgency: int = FILE
    keep_encoded: bool = False

    @property
    def key(self) -> tuple[object, ...]:
        """What windows in one call share: CTranslate2 requires `<|startoftranscript|>` at one
        position, and as many task tokens after it; what follows (a forced start) may differ."""
        tokenizer, prompt = self.tokenizer, self.prompt
        sot = prompt.index(tokenizer.sot) if tokenizer.sot in prompt else -1
        end = sot + 1
        while end < len(prompt) and tokenizer.sot <= prompt[end] <= tokenizer.no_timestamps:
            end += 1
        return (self.options.generate_key(), self.features.shape[-1], sot, end)


SharedPasses = Batcher[Window, Outcome]


def shared_passes(batch_size: int) -> SharedPasses:
    """The compute lanes of one Whisper model; each lane's model is added with `add_lane`."""
    generators: dict[tuple[int, object], FallbackGenerator] = {}

    def run_pass(model: WhisperModel, windows: list[Window]) -> list[Outcome]:
        first = windows[0]
        key = (id(model), first.options.generate_key())
        generator = generators.get(key)  # one lane's thread at a time per model: no lock needed
        if generator is None:
            generator = generators[key] = FallbackGenerator(model, first.tokenizer, first.options)
        batch = np.stack([w.features for w in windows])
        encoded: Any = model.encode(batch)
        kept = np.array(encoded) if any(w.keep_encoded for w in windows) and encoded.device == "cpu" else None
        decoded = generator.generate(encoded, batch, [w.prompt for w in windows])
        return [
            Outcome(d, kept[i] if kept is not None and w.keep_encoded else None)
            for i, (w, d) in enumerate(zip(windows, decoded, strict=True))
        ]

    return Batcher(run_pass, batch_size)
