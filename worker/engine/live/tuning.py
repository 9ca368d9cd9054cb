"""The live engine's knobs in one frozen record: what each trades is said here, by how much
is the live benchmark's (`python -m bench --live`) to measure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tuning:
    """The engine's knobs; the defaults are the product's."""

    partial_step_s: float = 0.3  # new audio needed before the next partial
    speculate_ms: int = 250  # into a pause, the final is started; its audio ends there
    preroll_ms: int = 300  # audio kept before speech starts
    cut_after_s: float = 25.0  # an utterance this long is cut at its last committed word
    max_utterance_s: float = 30.0  # ... and never grows past this (Whisper's window)
    hold_back_s: float = 0.3  # a word ending this close to the audio's edge is not committed yet
    #: The newest pass's probability for a word, at least, for it to be committed (the words
    #: after it wait). The final is made to begin with the committed words, so a wrong one
    #: stays: a higher threshold commits fewer words, later, and the finals read better.
    #: Forcing every agreed word reads worst; leaving the finals free of them reads best but
    #: lets a final contradict words already shown. The lower of the two passes'
    #: probabilities instead commits fewer words for the same accuracy.
    commit_probability: float = 0.7
    prompt_chars: int = 200  # of what was said, given as the prompt
    #: Speech heard this long before an utterance is decoded with it (its audio, and the text
    #: its finals gave), within the job's window: all of it for finals, what fits in the
    #: shortest live window for partials.
    context_s: float = 20.0
