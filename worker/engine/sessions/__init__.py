"""The worker's live sessions: their audio in, their events out, their decodes on the lanes.

One `LiveSession` (the engine, `worker.engine.live`) per session id, each with its own
StreamingVad and its own `PcmStream` (s16le at the client's rate → 16 kHz float32, the
resampler's state kept across frames). Everything here runs on the event loop, except the
decodes, which run on the worker's inference lanes, shared with file requests. Four jobs,
one module each:

- `table`: `SessionTable`, the sessions open now. It takes the supervisor's session
  messages, keeps each session's life (`Phase`: open, closing, over) and sends its events;
  the server hands it every session message and nothing else.
- `acks`: the pace. What a session took is acknowledged as it goes, held back while the
  session owes finals, so a client faster than the decoder is slowed down, not buffered.
- `scheduler`: `LaneScheduler`, whose decode runs on the next free lane (finals first,
  partials round-robin, fair with file requests). The lanes are handed in by the server:
  the same `Lanes` the file requests run on.
- `latency`: `LatencyObserver`, the waits a speaker sees (speech start → first words,
  speech end → final), for the heartbeat's tally.
"""

from __future__ import annotations

from worker.engine.sessions.acks import ACK_STEP_S, MAX_OWED_FINALS
from worker.engine.sessions.table import SessionTable

__all__ = ["ACK_STEP_S", "MAX_OWED_FINALS", "SessionTable"]
