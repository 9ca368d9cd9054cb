"""The pace of a live session: its audio acknowledged as it is taken, held while finals are owed.

A client may send audio far faster than real time (a recording replayed, or a hostile
flood). The VAD takes it as it comes (each frame costs what it carries, on the loop, one
message at a time), but the decoder cannot keep up, and every utterance the VAD closes owes
a final that is never skipped. So each frame taken is acknowledged (SESSION_ACK, every
`ACK_STEP_S` of audio), and the supervisor sends a session no more than a few seconds of
audio past its last ack. While a session owes `MAX_OWED_FINALS` finals not yet decoded, its
acks are held back: the supervisor stops sending, and the session is paced to what the
decoder does (the client is slowed down or, over the WebSocket, refused once far ahead:
`supervisor.live_stream`). Once a final is back, what was taken is acknowledged at once. The
audio and finals held per session are bounded, and the loop keeps answering everyone
(heartbeats included).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Audio taken between two acks. The supervisor's window (`supervisor.workers.session`)
#: must be well above it, or a session would wait for an ack that is not due.
ACK_STEP_S = 0.5
#: A session that owes this many finals not yet decoded gets no ack until one is back.
MAX_OWED_FINALS = 2


@dataclass
class Acks:
    """What one session took, and how much of it the supervisor was told of."""

    taken_seq: int = -1  # the last frame the engine took
    acked_seq: int = -1  # the last frame acknowledged to the supervisor
    unacked_s: float = 0.0  # seconds of audio taken since that ack

    def take(self, seq: int, seconds: float) -> None:
        """Frame `seq`, `seconds` of audio, was taken by the engine."""
        self.taken_seq = seq
        self.unacked_s += seconds

    def due(self, owed_finals: int, *, now: bool = False) -> int | None:
        """The frame to acknowledge now, if an ack is due (it then counts as sent): every
        ACK_STEP_S of audio, or at once with `now`, but none while the session owes
        MAX_OWED_FINALS finals (`owed_finals`), so the supervisor stops sending."""
        if self.taken_seq == self.acked_seq:
            return None
        if owed_finals >= MAX_OWED_FINALS or not (now or self.unacked_s >= ACK_STEP_S):
            return None
        self.acked_seq, self.unacked_s = self.taken_seq, 0.0
        return self.acked_seq
