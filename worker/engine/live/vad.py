"""Voice activity, decided as audio arrives: Silero VAD run frame by frame with its state kept.

faster-whisper's own `get_speech_timestamps` re-runs the model over a whole buffer; a live
stream cannot afford that (the cost would grow with the session). Here each 512-sample
frame (32 ms at 16 kHz) is scored once: the model's recurrent state (h, c) and the 64
samples of context it reads before a frame are carried from one push to the next, and the
samples that do not fill a frame wait for the next push. The ONNX model itself is loaded
once per process and shared; a `StreamingVad` holds only its own state, so one per live
session is cheap.

Speech is decided with hysteresis, as Silero's reference code does: it starts once frames
score above `threshold` (then stay above `neg_threshold`) for `min_speech_ms`; it pauses at
the first frame below `neg_threshold`; a frame above `threshold` resumes it; a pause that
lasts `end_silence_ms` ends it. The session reads the pause as "ending" (it decodes a
speculative final there) and the end as the utterance's end.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

SAMPLE_RATE = 16000
FRAME = 512  # samples per Silero frame at 16 kHz
CONTEXT = 64  # samples of the previous frame the model reads before each frame

Phase = Literal["silence", "candidate", "speech", "pause"]


class FrameScorer(Protocol):
    """Speech probabilities of consecutive frames, state carried from call to call."""

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """`frames` (k, FRAME) float32, the next k frames of the stream: k probabilities in [0, 1]."""
        ...


_model_lock = threading.Lock()
_model: Any = None


def _shared_model() -> Any:
    """The Silero ONNX session, loaded on first use and shared by every stream of the process.

    ML imports stay here, inside the function: this package is imported by code that must
    not pay for onnxruntime (the worker owns ML imports). An InferenceSession's `run` is
    thread-safe, so sessions decoded on different threads can share it.
    """
    global _model
    with _model_lock:
        if _model is None:
            import os

            import onnxruntime
            from faster_whisper.utils import get_assets_path

            opts = onnxruntime.SessionOptions()
            # A 32 ms frame is far too small to gain from threads; one keeps the cores for decoding.
            opts.inter_op_num_threads = 1
            opts.intra_op_num_threads = 1
            opts.enable_cpu_mem_arena = False
            opts.log_severity_level = 4
            path = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
            _model = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)
        return _model


class SileroScorer:
    """faster-whisper's Silero VAD (v6) over a stream: h, c and the context kept between calls.

    The model takes a batch of frames, each prefixed with the last CONTEXT samples of the frame
    before it, and runs its LSTM through the batch in order; so scoring a stream in pieces
    gives the same probabilities as scoring it whole, as long as the state moves on with it.
    """

    def __init__(self) -> None:
        self._session = _shared_model()
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        k = frames.shape[0]
        batch = np.empty((k, CONTEXT + FRAME), dtype=np.float32)
        batch[:, CONTEXT:] = frames
        batch[0, :CONTEXT] = self._context
        batch[1:, :CONTEXT] = frames[:-1, -CONTEXT:]
        out, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = frames[-1, -CONTEXT:].copy()
        return np.asarray(out, dtype=np.float32).reshape(k)


@dataclass(frozen=True)
class VadEvent:
    """`kind` happened at `sample` (samples of stream counted from the first).

    start: speech began (the first frame of the run that confirmed it);
    pause: speech fell silent (the first silent frame): the end, unless it resumes;
    resume: speech came back before the pause became an end;
    end: the pause at `sample` lasted the end-of-speech silence: speech ended there.
    """

    kind: Literal["start", "pause", "resume", "end"]
    sample: int


class StreamingVad:
    """Speech start, pause, resume and end, decided frame by frame as samples are pushed."""

    def __init__(
        self,
        *,
        end_silence_ms: int = 500,
        threshold: float = 0.5,
        neg_threshold: float = 0.35,
        min_speech_ms: int = 90,
        scorer: FrameScorer | None = None,
    ) -> None:
        self.end_silence_ms = end_silence_ms
        self._threshold = threshold
        self._neg_threshold = neg_threshold
        self._min_frames = max(1, math.ceil(min_speech_ms * SAMPLE_RATE / 1000 / FRAME))
        self._end_samples = end_silence_ms * SAMPLE_RATE // 1000
        self._scorer: FrameScorer = scorer if scorer is not None else SileroScorer()
        self._leftover = np.zeros(FRAME, dtype=np.float32)  # samples that do not fill a frame yet
        self._leftover_n = 0
        self.processed = 0  # samples scored so far; events are never later than this
        self.phase: Phase = "silence"
        self._run_start = 0  # candidate: where the run began; pause: where the silence began
        self._run_frames = 0

    @property
    def received(self) -> int:
        """Samples pushed so far (scored ones and the few waiting to fill a frame)."""
        return self.processed + self._leftover_n

    @property
    def pending_from(self) -> int:
        """The earliest sample a later `start` event can name: what a caller must still keep."""
        return self._run_start if self.phase == "candidate" else self.processed

    @property
    def pause_at(self) -> int | None:
        """Where the current pause began; None unless the phase is "pause"."""
        return self._run_start if self.phase == "pause" else None

    def push(self, samples: np.ndarray) -> list[VadEvent]:
        """Score the whole frames `samples` completes; the rest waits for the next push."""
        frames = self._frames(np.asarray(samples, dtype=np.float32).reshape(-1))
        if frames is None:
            return []
        probabilities = self._scorer(frames)
        events: list[VadEvent] = []
        for p in probabilities:
            event = self._step(float(p), self.processed)
            self.processed += FRAME
            if event is not None:
                events.append(event)
        return events

    def _frames(self, samples: np.ndarray) -> np.ndarray | None:
        """The whole frames that the leftover plus `samples` make (k, FRAME), or None; keeps the rest."""
        n = self._leftover_n
        if n + samples.size < FRAME:
            self._leftover[n : n + samples.size] = samples
            self._leftover_n += samples.size
            return None
        head = samples[: FRAME - n] if n else samples[:0]
        rest = samples[head.size :]
        whole = rest.size // FRAME * FRAME
        parts = [rest[:whole].reshape(-1, FRAME)]
        if n:
            self._leftover[n:] = head
            parts.insert(0, self._leftover[None, :].copy())
        tail = rest[whole:]
        self._leftover[: tail.size] = tail
        self._leftover_n = tail.size
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _step(self, p: float, at: int) -> VadEvent | None:
        """One frame's probability `p`, the frame starting at sample `at`: the phase's next move."""
        if self.phase == "silence":
            if p >= self._threshold:
                self.phase, self._run_start, self._run_frames = "candidate", at, 0
                return self._step(p, at)
        elif self.phase == "candidate":
            if p < self._neg_threshold:
                self.phase = "silence"
                return None
            self._run_frames += 1
            if self._run_frames >= self._min_frames:
                self.phase = "speech"
                return VadEvent("start", self._run_start)
        elif self.phase == "speech":
            if p < self._neg_threshold:
                self.phase, self._run_start = "pause", at
                return VadEvent("pause", at)
        elif p >= self._threshold:  # pause
            self.phase = "speech"
            return VadEvent("resume", at)
        elif at + FRAME - self._run_start >= self._end_samples:
            self.phase = "silence"
            return VadEvent("end", self._run_start)
        return None
