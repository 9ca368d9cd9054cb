"""Request metrics: counted and timed once, as each request ends (a `RequestObserver`).

The supervisor measures these itself: the service sees every request's arrival, its
lease and its result (`supervisor.observe.RequestFinished`). What only a worker knows (its
time in the model, the live latencies) comes from heartbeats instead (`collector`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from supervisor.observe import RequestFinished

#: Seconds: from a short command to a long file's decode on a CPU.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
#: Seconds of audio: a voice command, a sentence, a message, a meeting.
AUDIO_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0, 10800.0)
#: Arrival to a worker leased: nothing, a busy lane, a cold start, a capacity wait.
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Seconds of audio per second of decoding: below 1 is slower than real time.
SPEED_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0)


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "whisper_transcription_requests",
            "Transcription requests that ended, by model, interface (http, wyoming, stream) and status "
            "(ok, cancelled: the client went away, or the failure's kind: bad_audio, bad_parameter, too_large, "
            "unavailable, crashed, internal). A live stream counts as one request.",
            ["model", "interface", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "whisper_transcription_duration_seconds",
            "Time a successful file transcription took in the server, from its arrival at the service to its "
            "result (queueing and a cold start included). Live streams are not in it.",
            ["model", "interface"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.audio = Histogram(
            "whisper_audio_duration_seconds",
            "Seconds of audio in each successful request (a file's duration, a live stream's audio sent).",
            ["model", "interface"],
            buckets=AUDIO_BUCKETS,
            registry=registry,
        )
        self.wait = Histogram(
            "asr_request_wait_seconds",
            "From a request's arrival to a worker leased for it: queueing, a cold start, a capacity wait.",
            ["model", "interface"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.speed = Histogram(
            "asr_real_time_factor",
            "Seconds of audio transcribed per second of processing, per successful file request (its audio "
            "duration over the time from its worker's lease to its result); above 1 is faster than real time.",
            ["model", "interface"],
            buckets=SPEED_BUCKETS,
            registry=registry,
        )

    def request_finished(self, record: RequestFinished) -> None:
        labels = (record.model, record.interface)
        self.requests.labels(*labels, record.status).inc()
        if record.wait_seconds is not None:
            self.wait.labels(*labels).observe(record.wait_seconds)
        if record.status != "ok":
            return
        if record.audio_seconds is not None:
            self.audio.labels(*labels).observe(record.audio_seconds)
        if record.mode == "file":
            self.duration.labels(*labels).observe(record.total_seconds)
            if record.audio_seconds and record.decode_seconds:
                self.speed.labels(*labels).observe(record.audio_seconds / record.decode_seconds)
