"""The old path of `supervisor.live_stream`, kept while `supervisor.service` imports it from here."""

from supervisor.live_stream import MAX_AHEAD_S, LiveStream, beyond

__all__ = ["MAX_AHEAD_S", "LiveStream", "beyond"]
