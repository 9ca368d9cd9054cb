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

    #: A name in `common.backends.DESCRIPTIONS` (config checks it, naming the key; so does the worker).
    backend: str = "faster-whisper"
    source: str = "bundled"
    device: Device = "auto"
    compute_type: str = "auto"
    cache_dir: str | None = None
    cpu_threads: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: Requests one worker decodes in parallel (its lanes); "auto" (or 0, the old spelling): the
    #: backend decides, 2 on a multi-core CPU and 1 on CUDA (see ReadyInfo.concurrency).
    concurrency: Annotated[int, msgspec.Meta(ge=0, le=64)] | Literal["auto"] = "auto"
    #: How lanes beyond the first get their model: "copy", a full copy each (the fastest lone
    #: request: lane 0's thread and copy stay warm); "shared", one model whose weights
    #: CTranslate2's workers share (a copy's memory saved per extra lane); "auto", copies
    #: only while they fit `memory_budget_mb` and a quarter of the available RAM
    #: (common.lane_plan).
    lane_weights: LaneWeights = "auto"
    beam_size: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    #: Text every decode is prompted with when its request brings no prompt of its own (all
    #: interfaces: Home Assistant sends none): names and spellings to expect. Whisper only.
    prompt: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    #: Words to bias every decode towards when its request brings none (faster-whisper's
    #: hotwords): device, room and people's names. Whisper only.
    hotwords: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    #: Windows of one long file decoded together (faster-whisper: worker.backends.faster_whisper.decoder);
    #: "auto": as many as a quarter of the available RAM (CPU, at most 8) or free VRAM (CUDA, at
    #: most 16) holds, each window costing beam_size x a quarter of the weights (engine.batch_size).
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=64)] | Literal["auto"] = "auto"
    #: The longest audio one request may hold, checked from the container before decoding and
    #: again while decoding. 3 h covers a long meeting, lecture or podcast. A limit on work,
    #: not on memory: uploads are decoded as a stream and read one section at a time.
    max_audio_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 10800.0


#: The option names, for config validation and the CLI.
OPTION_NAMES: tuple[str, ...] = ModelOptions.__struct_fields__
