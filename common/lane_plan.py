"""How many inference lanes a worker runs, and whether each lane has its own copy of the model.

A lane decodes one request at a time (`worker.engine.lanes`). Lanes beyond the first need a
model to run on, and the two ways trade memory for single-request speed:

- **copy**: every lane loads the model again. A lone request always takes lane 0, whose
  thread and copy stay warm: 0.90-1.02x in-process faster-whisper in full benchmark runs
  (2 cores, tiny.en). Each extra lane costs a full copy of the weights: about 56 MB for
  tiny.en int8, gigabytes for large-v3 on a CPU.
- **shared**: one model with CTranslate2 workers (`num_workers` = lanes). Workers on one
  device share the weights (CTranslate2's "parallel execution" docs); each request goes to
  whichever worker is free, so caches are colder, and lone requests measured 6-13 % slower
  than in-process. An extra lane then costs only its working buffers.

"auto" takes copies only while they fit both the room `memory_budget_mb` leaves this worker
(the budget minus the other loaded models, sent by the supervisor in LOAD) and a quarter of
the RAM available when the model loads: an extra copy must never be what pushes a machine
into swap or the OOM killer, which costs far more than 6-13 %. On CUDA auto shares: copies
would cost VRAM, which is scarcer than RAM and which RSS does not show.

Pure functions of plain numbers, so every branch is tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.protocol.options import LaneWeights

#: The share of the available RAM that extra model copies may take under lane_weights = "auto".
RAM_SHARE = 0.25


@dataclass(frozen=True, slots=True)
class LanePlan:
    lanes: int  # requests decoded side by side
    copies: int  # full copies of the weights in memory: `lanes` when copied, 1 when shared
    reason: str  # why, for /health and the log

    @property
    def weights(self) -> Literal["copy", "shared"]:
        """ "shared" when lanes run on one model's CTranslate2 workers; one lane counts as "copy"."""
        return "shared" if self.copies < self.lanes else "copy"


def requested_lanes(concurrency: int | str, device: str, cpu_count: int | None) -> int:
    """The lanes a worker runs: `concurrency`, or for "auto" (and the old 0) 2 on a multi-core
    CPU and 1 on CUDA.

    2 on a CPU: measured on 2 cores with tiny.en, two requests side by side served 1.2-1.7x
    the requests per second of one at a time, because beam search leaves intra-op threads
    idle. On CUDA one request keeps the GPU busy, and a second lane would cost VRAM.
    """
    if isinstance(concurrency, int) and concurrency > 0:
        return concurrency
    if device == "cuda":
        return 1
    return 2 if (cpu_count or 1) >= 2 else 1


def plan(
    lanes: int,
    weights: LaneWeights,
    device: str,
    copy_mb: float,
    base_mb: float,
    room_mb: float | None,
    available_mb: float | None,
) -> LanePlan:
    """Copies or shared weights for `lanes` lanes.

    `copy_mb`: what one copy of the weights costs in RAM (an estimate before loading);
    `base_mb`: the worker's RSS before it loads anything; `room_mb`: what memory_budget_mb
    leaves this whole worker (None: no budget); `available_mb`: the machine's available RAM
    now (None: unknown). An explicit "copy" or "shared" is obeyed whatever it costs.
    """
    if lanes <= 1:
        return LanePlan(1, 1, "one lane")
    if weights == "copy":
        return LanePlan(lanes, lanes, f'lane_weights = "copy": {lanes} copies of the model')
    if weights == "shared":
        return LanePlan(lanes, 1, f'lane_weights = "shared": {lanes} CTranslate2 workers share one copy')
    extra = (lanes - 1) * copy_mb
    more = f"{lanes - 1} more cop{'y' if lanes == 2 else 'ies'} ({extra:.0f} MB)"
    if device == "cuda":
        return LanePlan(lanes, 1, "on CUDA the lanes share one copy: a copy would cost its full size in VRAM")
    if room_mb is not None and base_mb + lanes * copy_mb > room_mb:
        left = max(0.0, room_mb - base_mb - copy_mb)
        return LanePlan(lanes, 1, f"shared: {more} would not fit memory_budget_mb ({left:.0f} MB left for them)")
    if available_mb is not None and extra > RAM_SHARE * available_mb:
        return LanePlan(
            lanes,
            1,
            f"shared: {more} would take over {RAM_SHARE:.0%} of the available RAM ({available_mb:.0f} MB)",
        )
    return LanePlan(lanes, lanes, f"copies: {more} fit the memory budget and {RAM_SHARE:.0%} of the available RAM")
