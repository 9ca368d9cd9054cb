"""The live engine: a stream's audio and decoder outputs in, live events out (plain code).

- `session`: `LiveSession`, the state machine of one stream (its docstring has the table);
- `utterance`, `cutter`, `finals`, `history`, `times`, `tuning`: its parts (the speech
  being heard, a job cut from it, the finals owed, what was said before, session time,
  the knobs);
- `jobs`: `DecodeJob`, what a session asks to have decoded;
- `vad`: `StreamingVad`, Silero run frame by frame with its state kept;
- `agreement`: LocalAgreement-2, what two passes agree on is committed;
- `guards`: hallucinations on silence and noise, dropped;
- `buffer`: the stream's recent audio, bounded.

No module here imports an ML library at import time: the Silero model is loaded on the
first `StreamingVad` that needs it, inside the worker.
"""

from __future__ import annotations

from worker.engine.live.jobs import DecodeJob
from worker.engine.live.session import LiveSession
from worker.engine.live.tuning import Tuning
from worker.engine.live.vad import StreamingVad

__all__ = ["DecodeJob", "LiveSession", "StreamingVad", "Tuning"]
