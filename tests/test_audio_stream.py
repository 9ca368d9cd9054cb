"""`open_stream`: an upload decoded as 16 kHz blocks, in memory that does not grow with its length.

Worker-side units, no server: the joined blocks are exactly what `decode()` returns (it is
built on them), what can be refused before decoding is refused by `open_stream` itself, what
is found while decoding is raised by the iteration, and an hour is decoded in a few MB.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import ASSETS, claiming

from common.protocol import TranscribeParams
from worker.audio.decode import (
    BLOCK_SECONDS,
    SAMPLE_RATE,
    AudioError,
    AudioTooLong,
    DecodedAudio,
    decode,
    open_stream,
)

FILE = TranscribeParams()
BLOCK = BLOCK_SECONDS * SAMPLE_RATE
MB = 1 << 20
CLIPS = [
    "fox.wav",
    "fox.flac",
    "fox.mp3",
    "fox.ogg",
    "fox.opus",
    "fox.m4a",
    "fox.webm",
    "fox-22k.wav",
    "short-44k-stereo.wav",
    "weather-8k.wav",
]


def wav(rate: int, samples: np.ndarray, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()


def flac(rate: int, samples: np.ndarray, frame: int = 4096) -> bytes:
    """`samples` (channels × n, int16) as a FLAC file."""
    layout = {1: "mono", 2: "stereo"}[samples.shape[0]]
    out = io.BytesIO()
    with av.open(out, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout=layout)
        for i in range(0, samples.shape[1], frame):
            packed = np.ascontiguousarray(samples[:, i : i + frame].T).reshape(1, -1)
            piece = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
            piece.sample_rate, piece.pts = rate, i
            container.mux(stream.encode(piece))
        container.mux(stream.encode(None))
    return out.getvalue()


def noise(channels: int, count: int, level: float = 3000, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((channels, count)) * level).astype(np.int16)


def pcm(rate: int = 16000, width: int = 2, channels: int = 1) -> TranscribeParams:
    return TranscribeParams(audio_format="pcm", pcm_rate=rate, pcm_width=width, pcm_channels=channels)


def read_blocks(audio: DecodedAudio) -> list[np.ndarray]:
    """All of `audio`'s blocks, each checked as it comes."""
    blocks: list[np.ndarray] = []
    for block in audio:
        assert block.dtype == np.float32 and block.ndim == 1
        assert 0 < block.size <= BLOCK, block.size
        blocks.append(block)
        assert audio.seconds == sum(b.size for b in blocks) / SAMPLE_RATE
    return blocks


def assert_streams_as_decoded(data: bytes, params: TranscribeParams) -> list[np.ndarray]:
    with open_stream(data, params) as audio:
        blocks = read_blocks(audio)
    whole = decode(data, params)
    joined = np.concatenate(blocks)
    assert joined.dtype == whole.dtype and np.array_equal(joined, whole), (joined.size, whole.size)
    return blocks


@pytest.mark.parametrize("name", CLIPS)
def test_a_clips_blocks_join_to_what_decode_returns(name: str) -> None:
    data = (ASSETS / name).read_bytes()
    blocks = assert_streams_as_decoded(data, FILE)
    with open_stream(data, FILE) as audio:
        assert audio.seconds == 0.0
        assert audio.declared_seconds == pytest.approx(sum(b.size for b in blocks) / SAMPLE_RATE, abs=0.1)


@pytest.mark.parametrize(
    ("rate", "channels"), [(44100, 2), (16000, 1), (8000, 1), (1000, 1)], ids=["44k-stereo", "16k", "8k", "1k"]
)
def test_a_long_files_blocks_are_full_but_the_last(rate: int, channels: int) -> None:
    data = flac(rate, noise(channels, 25 * rate))
    blocks = assert_streams_as_decoded(data, FILE)
    assert [b.size for b in blocks[:-1]] == [BLOCK, BLOCK]
    assert sum(b.size for b in blocks) == pytest.approx(25 * SAMPLE_RATE, abs=64)


@pytest.mark.parametrize("name", ["fox.flac", "fox.mp3", "fox.ogg", "fox.webm", "fox.wav"])
def test_a_file_cut_short_streams_as_far_as_it_goes(name: str) -> None:
    data = (ASSETS / name).read_bytes()
    blocks = assert_streams_as_decoded(data[: len(data) * 6 // 10], FILE)
    assert 0 < sum(b.size for b in blocks) < decode(data, FILE).size


@pytest.mark.parametrize(
    ("rate", "width", "channels"),
    [(16000, 2, 1), (8000, 2, 1), (44100, 2, 2), (16000, 1, 1), (16000, 4, 1), (22050, 4, 2), (48000, 2, 3)],
    ids=["16k", "8k", "44k-stereo", "uint8", "int32", "int32-22k-stereo", "48k-3-channels"],
)
def test_raw_pcms_blocks_join_to_what_decode_returns(rate: int, width: int, channels: int) -> None:
    frames = 25 * rate + 123
    dtype = np.dtype({1: "u1", 2: "<i2", 4: "<i4"}[width])
    info = np.iinfo(dtype)
    samples = np.random.default_rng(width).integers(info.min, info.max, frames * channels, endpoint=True)
    data, params = samples.astype(dtype).tobytes(), pcm(rate, width, channels)
    blocks = assert_streams_as_decoded(data, params)
    assert len(blocks) == 3 and [b.size for b in blocks[:-1]] == [BLOCK, BLOCK]
    with open_stream(data, params) as audio:
        assert audio.declared_seconds == frames / rate


@pytest.mark.parametrize(
    ("data", "params", "max_seconds", "error", "message"),
    [
        (b"", FILE, 60, AudioError, "the audio file is empty"),
        (b"not audio", FILE, 60, AudioError, "could not decode the audio file"),
        (wav(8000, np.zeros(20 * 8000)), FILE, 5, AudioTooLong, "20 s of audio is over this model's limit of 5 s"),
        (flac(1, np.zeros((1, 3 * 3600), np.int16)), FILE, 600, AudioTooLong, "10800 s of audio is over"),
        (b"", pcm(), 60, AudioError, "no audio samples were sent"),
        (b"\0" * 3, pcm(), 60, AudioError, "not a whole number of 2-byte frames"),
        (b"\0" * 4, pcm(rate=500), 60, AudioError, "unsupported raw audio"),
        (b"\0" * 4, pcm(width=3), 60, AudioError, "unsupported raw audio"),
        (b"\0\0" * 16000 * 6, pcm(), 5, AudioTooLong, "6 s of audio is over"),
    ],
    ids=[
        "empty",
        "not-audio",
        "wav-declares-20s",
        "flac-declares-3h",
        "pcm-empty",
        "pcm-odd",
        "pcm-rate",
        "pcm-24bit",
        "pcm-6s",
    ],
)
def test_what_can_be_refused_before_decoding_is_refused_by_open_stream(
    data: bytes, params: TranscribeParams, max_seconds: float, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        open_stream(data, params, max_seconds)


def test_a_file_without_an_audio_stream_is_refused_by_open_stream() -> None:
    out = io.BytesIO()
    with av.open(out, "w", format="nut") as container:
        stream = container.add_stream("rawvideo", rate=1)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(AudioError, match="it has no audio stream"):
        open_stream(out.getvalue(), FILE)


def test_a_header_that_understates_is_caught_by_the_iteration_after_its_first_blocks() -> None:
    liar = claiming(flac(16000, noise(1, 25 * 16000, level=300)), 16000)  # 25 s that says 1 s
    audio = open_stream(liar, FILE, max_seconds=22)
    assert audio.declared_seconds == 1.0
    blocks: list[np.ndarray] = []
    with pytest.raises(AudioTooLong, match="longer than this model's limit of 22 s"):
        blocks.extend(audio)
    assert [b.size for b in blocks] == [BLOCK, BLOCK] and audio.seconds == 20.0
    assert next(audio, None) is None  # the error ended the iteration
    # Under a higher limit the same file is decoded whole, past what its header says.
    assert assert_streams_as_decoded(liar, FILE)[-1].size == 5 * 16000


def test_a_file_with_no_samples_is_refused_by_the_iteration() -> None:
    audio = open_stream(wav(16000, np.zeros(0)), FILE)
    with pytest.raises(AudioError, match="the audio file contains no audio samples"):
        next(audio)


def test_closing_midway_lets_go_of_the_callers_bytes() -> None:
    data = bytearray(flac(8000, noise(1, 25 * 8000)))
    view = memoryview(data)
    with open_stream(view, FILE) as audio:
        next(audio)
        del view
        with pytest.raises(BufferError):  # PyAV still reads from it
            data.extend(b"\0")
    data.extend(b"\0")  # released at `close()`, with no garbage collection needed
    assert next(audio, None) is None


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # the kernel's VmHWM := VmRSS now
    except OSError as exc:
        pytest.skip(f"cannot reset the peak RSS here: {exc}")


def test_an_hour_streams_in_a_few_mb_where_decode_takes_230() -> None:
    hour = flac(8000, np.zeros((1, 3600 * 8000), np.int16), frame=80000)  # silence: 0.6 MB, encoded in 0.4 s
    with open_stream(hour, FILE) as audio:
        assert audio.declared_seconds == 3600.0
        _reset_peak_rss()
        before, largest = _kib("VmRSS"), 0
        for block in audio:
            largest = max(largest, block.size)
        streamed_mb = (_kib("VmHWM") - before) / 1024
        assert audio.seconds == 3600.0 and largest == BLOCK
    assert streamed_mb < 60, f"streaming an hour grew the process by {streamed_mb:.0f} MB"

    # The same measure sees the whole array: it would catch a stream that held its blocks.
    _reset_peak_rss()
    before = _kib("VmRSS")
    whole = decode(hour, FILE)
    whole_mb = (_kib("VmHWM") - before) / 1024
    assert whole.size == 3600 * SAMPLE_RATE and whole_mb > 200, whole_mb
