"""A model's options, declared once: `asr.toml` → `ModelSpec.options` → LOAD → backend.

The supervisor validates these at the edge (config) with the same type the worker
decodes from LOAD, so an option is added in exactly one place: a field here. ML-free.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Device = Literal["auto", "cpu", "cuda", "mps"]
LaneWeights = Literal["auto", "copy", "shared"]


class ModelOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a worker needs to load one model; every `[defaults]`/`[models.NAME]` key a backend reads."""

    #: The engine that runs the model: "faster-whisper", "parakeet-nemo" or "parakeet-onnx".
    backend: str = "faster-whisper"
    #: Where the weights come from: "bundled" (the embedded tiny.en), a model directory, or a
    #: hub name or repo id (downloaded once into `cache_dir`; the model's own name when unset).
    source: str = "bundled"
    #: "auto": CUDA when the backend finds a GPU, else the CPU.
    device: Device = "auto"
    #: The weights' number type: "auto" is float16 on CUDA and int8 on a CPU; or any type the
    #: backend takes (CTranslate2: int8, int8_float16, float16, float32 ...).
    compute_type: str = "auto"
    #: Where hub models are downloaded to; unset: the Hugging Face cache.
    cache_dir: str | None = None
    #: CPU threads one decode uses; 0: the library's default.
    cpu_threads: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: Requests one worker decodes in parallel (its lanes); "auto" (or 0, the old spelling): the
    #: backend decides, 2 on a multi-core CPU and 1 on CUDA.
    concurrency: Annotated[int, msgspec.Meta(ge=0, le=64)] | Literal["auto"] = "auto"
    #: How lanes beyond the first get their model: "copy", a full copy each (the fastest lone
    #: request: lane 0's thread and copy stay warm); "shared", one model whose weights
    #: CTranslate2's workers share (a copy's memory saved per extra lane); "auto", copies
    #: only while they fit `memory_budget_mb` and a quarter of the available RAM.
    lane_weights: LaneWeights = "auto"
    #: Hypotheses the decoder keeps: higher is a little more accurate and slower; 1 is greedy.
    beam_size: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    #: Text every decode is prompted with when its request brings no prompt of its own (all
    #: interfaces: Home Assistant sends none): names and spellings to expect. Whisper only.
    prompt: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    #: Words to bias every decode towards when its request brings none (faster-whisper's
    #: hotwords): device, room and people's names. Whisper only.
    hotwords: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    #: 30-second windows of one long file decoded together (faster-whisper): faster, at the cost
    #: of memory while it runs; 1 decodes one window at a time. "auto": as many as a quarter of
    #: the available RAM (CPU, at most 8) or the free VRAM (CUDA, at most 16) holds.
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=64)] | Literal["auto"] = "auto"
    #: The longest audio one request may hold, checked from the container before decoding and
    #: again while decoding. 3 h covers a long meeting, lecture or podcast. A limit on work,
    #: not on memory: uploads are decoded as a stream and read one section at a time.
    max_audio_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 10800.0


#: The option names, for config validation and the CLI.
OPTION_NAMES: tuple[str, ...] = ModelOptions.__struct_fields__
