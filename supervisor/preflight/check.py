"""One finding of `asrctl doctor`: what was looked at, how it stands, and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: ok: fine; note: worth knowing, nothing to do; warn: works, but not as it could;
#: fail: something needed is missing (`asrctl doctor` exits 1).
Outcome = Literal["ok", "note", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    area: str  # "device", "CUDA", "model", "port", "memory"
    subject: str  # "cuBLAS 12", "tiny.en", "HTTP 127.0.0.1:5000"
    outcome: Outcome
    detail: str
    fix: str = ""  # one line, when the outcome is warn or fail
