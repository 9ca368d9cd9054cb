"""What must hold before models can serve, checked without a server and without an ML import.

`asrctl doctor` prints every check (`run`); the supervisor logs, at start-up, what would
keep a model off the CUDA device it asked for (`startup_warnings`). A check is one `Check`:
what was looked at, how it stands, the detail, and the fix in one line when it is not fine.
What needs CTranslate2 (the CUDA devices it sees, each device's compute types, whether its
CUDA libraries load) comes from the worker's side, `python -m worker.doctor`, run as a
subprocess (`device.probe`): the supervisor imports no ML library.

`device`: the GPUs, the driver, CUDA's libraries, compute types, memory. `setup`: the
configured models' files and the configured ports.
"""

from __future__ import annotations

from supervisor.config import Settings
from supervisor.preflight import device, setup
from supervisor.preflight.check import Check, Outcome

__all__ = ["Check", "Outcome", "failed", "run", "startup_warnings"]


def run(settings: Settings, inference: bool = True) -> list[Check]:
    """Every check, in the order a reader wants them: the machine, then the config's needs."""
    return [*device.checks(settings, device.probe(inference)), *setup.checks(settings)]


def failed(checks: list[Check]) -> bool:
    return any(check.outcome == "fail" for check in checks)


def startup_warnings(settings: Settings) -> list[str]:
    """Why a model asking for CUDA would not get it, found from files alone (nvidia-smi, and a
    look for the libraries; no subprocess of the worker's): one line each, with its fix."""
    return [
        f"{c.subject}: {c.detail} ({c.fix})"
        for c in device.cuda_library_checks(settings)
        if c.outcome in ("warn", "fail")
    ]
