"""The three ways of transcribing a clip, each timed the same way: in-process, HTTP, Wyoming."""

from __future__ import annotations

import asyncio
import gc
import io
import time
from typing import Any

import httpx
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient

from bench.clips import RATE, Clip

MODEL = "tiny.en"
BEAM_SIZE = 5


class InProcess:
    """faster-whisper in this process, set up as the worker sets itself up.

    Same model directory, device, compute type, thread count and beam size; one replica,
    which is all a single request uses (the worker keeps a second for a concurrent request);
    the audio is decoded from a BytesIO of the WAV bytes, which is what the worker does
    with an upload.
    """

    def __init__(self, model_dir: str, cpu_threads: int) -> None:
        from faster_whisper import WhisperModel  # imported here so that load timings exclude it

        self._model_dir = model_dir
        self._cpu_threads = cpu_threads
        self._cls = WhisperModel
        self.model = self._load()

    def _load(self) -> Any:
        return self._cls(
            self._model_dir, device="cpu", compute_type="int8", cpu_threads=self._cpu_threads, num_workers=1
        )

    def transcribe(self, clip: Clip, model: Any = None) -> tuple[float, str]:
        """Seconds to decode and fully transcribe the clip (the segment generator is lazy)."""
        started = time.perf_counter()
        options = {} if clip.temperature is None else {"temperature": clip.temperature}
        segments, _info = (model or self.model).transcribe(io.BytesIO(clip.data), beam_size=BEAM_SIZE, **options)
        text = "".join(s.text for s in segments).strip()
        return time.perf_counter() - started, text

    def load_and_transcribe(self, clip: Clip) -> float:
        """What a cold start costs in-process once the libraries are imported: load, then transcribe."""
        started = time.perf_counter()
        model = self._load()
        self.transcribe(clip, model)
        elapsed = time.perf_counter() - started
        del model
        gc.collect()
        return elapsed


def _form(clip: Clip) -> dict[str, Any]:
    """The multipart request an OpenAI client sends: the file and the model (and a temperature if set)."""
    data = {"model": MODEL} | ({} if clip.temperature is None else {"temperature": str(clip.temperature)})
    return {"files": {"file": (f"{clip.name}.wav", clip.data, "audio/wav")}, "data": data}


def http_transcribe(client: httpx.Client, clip: Clip) -> tuple[float, str]:
    """Seconds for one POST /v1/audio/transcriptions, upload to parsed reply."""
    started = time.perf_counter()
    r = client.post("/v1/audio/transcriptions", **_form(clip))
    elapsed = time.perf_counter() - started
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
    return elapsed, r.json()["text"].strip()


async def _http_loop(client: httpx.AsyncClient, clip: Clip, n: int) -> None:
    for _ in range(n):
        r = await client.post("/v1/audio/transcriptions", **_form(clip))
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")


async def http_throughput(url: str, clip: Clip, clients: int, per_client: int) -> float:
    """Wall seconds for `clients` concurrent clients to finish `per_client` requests each."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(_http_loop(client, clip, per_client) for _ in range(clients)))
        return time.perf_counter() - started


async def wyoming_transcribe(
    port: int, clip: Clip, chunk_samples: int = 1024, settle: float = 0.0
) -> tuple[float, str]:
    """Seconds from audio-stop to the first `transcript`, in Home Assistant's event order.

    A fresh connection per utterance, as Home Assistant opens one. `settle` waits after the
    last chunk before audio-stop: with live audio, a server has read every chunk by the
    time the client's VAD decides the speaker stopped, so the timed part is only the work
    that audio-stop triggers, not draining a burst of chunks sent faster than real time.
    """
    client = AsyncTcpClient("127.0.0.1", port)
    await client.connect()
    try:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        step = chunk_samples * 2
        for offset in range(0, len(clip.pcm), step):
            await client.write_event(
                AudioChunk(rate=RATE, width=2, channels=1, audio=clip.pcm[offset : offset + step]).event()
            )
        if settle:
            await asyncio.sleep(settle)
        started = time.perf_counter()
        await client.write_event(AudioStop().event())
        while True:
            event = await client.read_event()
            if event is None:
                raise RuntimeError(f"server on port {port} closed the connection before a transcript")
            if Transcript.is_type(event.type):
                return time.perf_counter() - started, Transcript.from_event(event).text.strip()
            if event.type == "error":
                raise RuntimeError(f"server on port {port} answered error: {event.data}")
    finally:
        await client.disconnect()


async def _wyoming_loop(port: int, clip: Clip, n: int) -> None:
    for _ in range(n):
        await wyoming_transcribe(port, clip)


async def wyoming_throughput(port: int, clip: Clip, clients: int, per_client: int) -> float:
    """Wall seconds for `clients` concurrent Wyoming clients to finish `per_client` utterances each."""
    started = time.perf_counter()
    await asyncio.gather(*(_wyoming_loop(port, clip, per_client) for _ in range(clients)))
    return time.perf_counter() - started
