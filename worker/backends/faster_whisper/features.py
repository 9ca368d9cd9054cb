"""Whisper's log-mel features of a section, computed a chunk at a time (worker only).

faster-whisper's FeatureExtractor takes the STFT of its whole input in one go, and its
intermediates (the framed samples, the complex spectrum in double and then single
precision, the magnitudes) are many times the samples' own size, held only for the call
but paid for every section; the features themselves are far smaller. This computes the
same features (bit for bit) a chunk at a time, so the peak is one chunk's intermediates;
the one step that needs the whole input, the floor at 8 below the loudest value, is
applied at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Frames computed at once (10 s): the peak is this chunk's intermediates, not the section's
#: (tests/test_long_recordings.py measures both).
CHUNK_FRAMES = 1000


def log_mel(extractor: Any, waveform: np.ndarray, chunk_frames: int = CHUNK_FRAMES) -> np.ndarray:
    """`extractor(waveform)` (faster-whisper's FeatureExtractor, default padding), in chunks."""
    n_fft, hop = extractor.n_fft, extractor.hop_length
    samples = np.pad(waveform.astype(np.float32, copy=False), (0, hop))  # the extractor's padding
    samples = np.pad(samples, n_fft // 2, mode="reflect")  # the STFT's centring
    frames = 1 + (samples.size - n_fft) // hop - 1  # the last frame is dropped, as Whisper does
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    out = np.empty((extractor.mel_filters.shape[0], max(frames, 0)), dtype=np.float32)
    step = samples.strides[0]
    for first in range(0, frames, chunk_frames):
        count = min(chunk_frames, frames - first)
        piece = samples[first * hop : (first + count - 1) * hop + n_fft]
        framed = np.lib.stride_tricks.as_strided(piece, (count, n_fft), (hop * step, step)) * window
        spectrum = np.fft.rfft(framed, n=n_fft, axis=-1).astype(np.complex64).T
        mel = extractor.mel_filters @ (np.abs(spectrum) ** 2)
        out[:, first : first + count] = np.log10(np.clip(mel, 1e-10, None))
    if out.size:
        np.maximum(out, out.max() - 8.0, out=out)
    out += 4.0
    out /= 4.0
    return out
