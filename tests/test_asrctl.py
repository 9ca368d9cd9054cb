"""`asrctl` against a live server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest
from conftest import ASSETS, Server, free_port

#: Variables that make rich take stderr for a terminal (or not): the test decides, not the shell.
TERMINAL_ENV = ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "NO_COLOR")
#: rich's answer to TTY_COMPATIBLE=1: stderr is a terminal, so `transcribe` may draw its bar.
ON_A_TERMINAL = {"TTY_COMPATIBLE": "1"}


def asrctl(
    *args: str, url: str | None, columns: int = 200, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`asrctl ARGS` with $ASR_URL set to `url` (unset when None), in a terminal `columns` wide."""
    base = {k: v for k, v in os.environ.items() if k not in ("ASR_URL", "ASR_API_KEY", *TERMINAL_ENV)}
    env = base | {"COLUMNS": str(columns)} | ({"ASR_URL": url} if url is not None else {}) | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "supervisor.ctl", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_transcribe_and_status(shared_server: Server) -> None:
    out = asrctl("transcribe", str(ASSETS / "fox.wav"), url=shared_server.url)
    assert out.returncode == 0, out.stderr
    assert "fox" in out.stdout.lower() and "{" not in out.stdout

    out = asrctl("status", url=shared_server.url)
    assert out.returncode == 0, out.stderr
    assert "healthy" in out.stdout
    assert "devices: best cpu; CUDA: none" in out.stdout
    assert "tiny.en (default)" in out.stdout and "ready" in out.stdout
    assert str(shared_server.model()["pid"]) in out.stdout

    out = asrctl("models", "list", url=shared_server.url)
    assert out.returncode == 0 and "tiny.en" in out.stdout


def test_errors_are_one_line_and_nonzero(shared_server: Server) -> None:
    out = asrctl("transcribe", str(ASSETS / "fox.wav"), "--model", "nope", url=shared_server.url)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "nope" in out.stderr and "404" in out.stderr

    out = asrctl("status", url=f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 1 and "cannot reach" in out.stderr and out.stderr.strip().count("\n") == 0


def test_load_and_unload_by_hand(make_server) -> None:  # type: ignore[no-untyped-def]
    import psutil
    from conftest import worker_pids

    server: Server = make_server("""
    [server]
    admin_keys = ["boss"]
    [models."tiny.en"]
    source = "bundled"
    ttl = 300
    [models."large-v3"]
    source = "bundled"
    ttl = -1
    """)
    out = asrctl("models", "load", "large-v3", url=server.url)
    assert out.returncode == 1 and "API key" in out.stderr  # admin routes need the admin key

    out = asrctl("models", "load", "large-v3", "--ttl", "600", "--api-key", "boss", url=server.url)
    assert out.returncode == 0, out.stderr
    model = server.model("large-v3")
    assert model["state"] == "ready" and model["ttl"] == 600 and model["rss_mb"] > 20
    pid = model["pid"]
    assert "ready" in out.stdout and str(pid) in out.stdout

    out = asrctl("models", "unload", "large-v3", "--api-key", "boss", url=server.url)
    assert out.returncode == 0, out.stderr
    assert f"worker {pid} ended by shutdown" in out.stdout and "freed" in out.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert server.model("large-v3")["state"] == "unloaded"

    out = asrctl("models", "unload", "large-v3", "--api-key", "boss", url=server.url)
    assert out.returncode == 0 and "was not loaded" in out.stdout

    assert server.transcribe("short.wav").status_code == 200  # /v1 audio needs no key: only admin keys are set
    out = asrctl("--api-key", "boss", "models", "unload", "--all", url=server.url)  # the key before the command
    assert out.returncode == 0 and "tiny.en: worker" in out.stdout
    assert worker_pids(server.pid) == []

    out = asrctl("models", "unload", "nope", "--api-key", "boss", url=server.url)
    assert out.returncode == 1 and "nope" in out.stderr


def test_seed_unload_path_waits_for_in_flight_work(shared_server: Server, tmp_path: Path) -> None:
    from conftest import make_long_clip

    server = shared_server
    clip = make_long_clip(tmp_path, repeats=1)
    with server.request_in_flight(clip) as busy:
        report = server.client.post("/v1/model/unload", params={"model": "tiny.en"}).json()
        response = busy.result()
    assert response.status_code == 200 and "weather" in response.json()["text"].lower()  # not cut off
    assert report["unloaded"][0]["ended_by"] == "shutdown" and report["freed_rss_mb"] > 20
    assert server.model()["state"] == "unloaded"
    r = server.client.post("/v1/model/unload")
    assert r.status_code == 400


def test_url_and_key_go_before_or_after_the_command_and_help_names_them(shared_server: Server) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for args in (["--url", shared_server.url, "status"], ["status", "--url", shared_server.url]):
        out = asrctl(*args, url=None)
        assert out.returncode == 0 and "healthy" in out.stdout, (args, out.stderr)
    out = asrctl("--url", shared_server.url, "status", url=dead)  # the flag wins over $ASR_URL
    assert out.returncode == 0 and "healthy" in out.stdout, out.stderr
    out = asrctl("--url", dead, "status", "--url", shared_server.url, url=None)  # after the command wins
    assert out.returncode == 0, out.stderr

    top = asrctl("--help", url=None, columns=80).stdout
    assert all(word in top for word in ("--url", "ASR_URL", "--api-key", "ASR_API_KEY"))
    help_text = asrctl("transcribe", "--help", url=None, columns=80).stdout
    assert all(fmt in help_text for fmt in ("json", "text", "srt", "vtt", "verbose_json"))
    out = asrctl("transcribe", str(ASSETS / "fox.wav"), "--format", "srt", url=shared_server.url)
    assert out.returncode == 0 and "00:00:00,000 -->" in out.stdout
    out = asrctl("transcribe", str(ASSETS / "fox.wav"), "--format", "yaml", url=shared_server.url)
    assert out.returncode == 2 and "verbose_json" in out.stderr  # refused before any request, naming the choices


def test_tables_fit_80_columns_without_cutting_names_or_eating_brackets(make_server) -> None:  # type: ignore[no-untyped-def]
    long_name = "meeting-notes-english-tiny"
    server: Server = make_server(f"""
    [models."tiny.en"]
    source = "bundled"
    description = 'copy of [models."tiny.en"] [bold]'
    [models."{long_name}"]
    source = "bundled"
    """)
    status = asrctl("status", url=server.url, columns=80)
    listing = asrctl("models", "list", "--available", url=server.url, columns=80)
    for out in (status, listing):
        assert out.returncode == 0, out.stderr
        assert "…" not in out.stdout
        assert max(len(line) for line in out.stdout.splitlines()) <= 80, out.stdout
        assert "tiny.en (default)" in out.stdout and long_name in out.stdout
        assert 'copy of [models."tiny.en"] [bold]' in out.stdout  # rich markup would eat both
        assert "--wide" in out.stdout  # says that columns were left out, and how to see them
    for name in ("distil-large-v3.5", "distil-medium.en", "large-v3-turbo"):
        assert f" {name} " in listing.stdout
    assert '[models."NAME"]' in listing.stdout

    wide = asrctl("models", "list", "--available", "--wide", url=server.url, columns=80)
    for header in ("lanes", "in flight", "requests", "note", "hub repo", "backend"):
        assert header in wide.stdout
    assert "Systran/faster-distil-whisper-large-v3" in wide.stdout

    out = asrctl("models", "unload", "--all", url=server.url)
    assert out.returncode == 0 and out.stdout.strip() == "no model was loaded: nothing to free"


# -- transcribe's progress bar ----------------------------------------------------------------


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """34.5 s of speech: weather, fox and short, twice, each followed by 1 s of silence.

    Longer than the bar's 30 s, and decoded the same way every time: with three rounds, or
    0.5 s pauses, a 30 s window repeats enough text to pass tiny.en's compression-ratio
    limit (2.4), and its temperature fallback samples a different transcript each run.
    """
    pieces = []
    for name in ("weather", "fox", "short") * 2:
        with wave.open(str(ASSETS / f"{name}.wav"), "rb") as src:
            params = src.getparams()
            pieces.append(src.readframes(src.getnframes()) + b"\0\0" * params.framerate)
    out = tmp_path_factory.mktemp("audio") / "two-rounds.wav"
    with wave.open(str(out), "wb") as dst:
        dst.setparams(params)
        dst.writeframes(b"".join(pieces))
    return out


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as f:
        return f.getnframes() / f.getframerate()


def screen(stderr: str) -> str:
    """What a terminal would have shown: the text without rich's escape sequences."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stderr)


def test_transcribe_prints_the_same_with_the_progress_bar(shared_server: Server, long_clip: Path) -> None:
    total = f"{wav_seconds(long_clip):.0f}"
    # Every way the output is built: from the streamed text (text; json alike), from the streamed
    # segments (srt; vtt goes through the same server formatter), or sent whole (verbose_json).
    for fmt in ("text", "srt", "verbose_json"):  # json is built as text is
        plain = asrctl("transcribe", str(long_clip), "--format", fmt, url=shared_server.url)
        barred = asrctl("transcribe", str(long_clip), "--format", fmt, url=shared_server.url, env=ON_A_TERMINAL)
        assert plain.returncode == 0 and barred.returncode == 0, (fmt, plain.stderr, barred.stderr)
        assert plain.stderr == ""  # stderr is no terminal: no bar
        assert barred.stdout == plain.stdout, fmt
        assert "weather" in plain.stdout.lower(), plain.stdout
        shown = screen(barred.stderr)
        assert long_clip.name in shown
        if fmt == "verbose_json":  # sent whole: its stream lacks the segments' tokens and scores
            assert f"{total} s of audio" in shown, shown
        else:  # streamed, and the bar reached the file's end
            assert f"{total}/{total} s" in shown, shown


def test_no_progress_and_short_files_draw_no_bar(shared_server: Server, long_clip: Path) -> None:
    out = asrctl("transcribe", str(long_clip), "--no-progress", url=shared_server.url, env=ON_A_TERMINAL)
    assert out.returncode == 0 and out.stderr == "" and "weather" in out.stdout.lower()
    out = asrctl("transcribe", str(ASSETS / "fox.wav"), url=shared_server.url, env=ON_A_TERMINAL)
    assert out.returncode == 0 and out.stderr == "" and "fox" in out.stdout.lower()


def test_errors_with_the_bar_are_the_same_line(shared_server: Server, long_clip: Path) -> None:
    """Refused before the stream begins: the same line and exit code, and no bar left after it."""
    dead = f"http://127.0.0.1:{free_port()}"
    cases = [
        (str(long_clip), "--model", "nope", shared_server.url),  # 404
        (str(ASSETS / "fox.txt"), shared_server.url),  # not audio: no length, so a bar without a total; 400
        (str(long_clip), dead),  # nobody there
    ]
    for *args, url in cases:
        plain = asrctl("transcribe", *args, url=url)
        barred = asrctl("transcribe", *args, url=url, env=ON_A_TERMINAL)
        assert plain.returncode == barred.returncode == 1, (args, plain.stderr, barred.stderr)
        assert plain.stderr.count("\n") == 1 and plain.stdout == barred.stdout == ""
        assert screen(barred.stderr).strip().splitlines()[-1] == plain.stderr.strip(), (args, barred.stderr)


def test_the_bar_follows_each_segment_end_and_an_error_event_fails() -> None:
    """The stream's reader alone, on recorded events: no server, no terminal."""
    from supervisor.ctl.transcribe import _Failed, _follow_transcript

    def segment(start: float, end: float, text: str) -> dict[str, object]:
        return {"type": "transcript.text.segment", "id": "seg_0", "start": start, "end": end, "text": text}

    events = [
        segment(0.0, 6.0, "Good morning."),
        {"type": "transcript.text.delta", "delta": "Good morning."},
        segment(6.0, 9.5, "Turn on the lights."),
        {"type": "transcript.text.delta", "delta": " Turn on the lights. "},
        {"type": "transcript.text.done", "text": "Good morning. Turn on the lights. "},
    ]
    reached: list[float] = []
    transcript = _follow_transcript(iter(events), reached.append)
    assert reached == [6.0, 9.5]
    assert transcript.text == "Good morning. Turn on the lights."  # stripped, as the whole answer's is
    assert [(s.start, s.end, s.text) for s in transcript.segments] == [
        (0.0, 6.0, "Good morning."),
        (6.0, 9.5, "Turn on the lights."),
    ]

    crash = {"error": {"message": "worker 42 crashed", "type": "server_error", "param": None, "code": "worker_crashed"}}
    with pytest.raises(_Failed, match=r"^worker 42 crashed \(in the stream: worker_crashed\)$"):
        _follow_transcript(iter([*events[:2], crash]), reached.append)
    with pytest.raises(_Failed, match="without a result"):
        _follow_transcript(iter(events[:2]), reached.append)


def test_the_length_is_read_locally_and_av_only_when_needed(long_clip: Path) -> None:
    from supervisor.ctl.transcribe import _audio_seconds

    assert _audio_seconds(long_clip) == pytest.approx(wav_seconds(long_clip), abs=0.01)
    assert _audio_seconds(ASSETS / "fox.mp3") == pytest.approx(3.4, abs=0.3)
    assert _audio_seconds(ASSETS / "fox.txt") is None  # not audio: the server says so
    started = subprocess.run(
        [sys.executable, "-c", "import sys, supervisor.ctl; print('av' in sys.modules)"], capture_output=True, text=True
    )
    assert started.stdout.strip() == "False", started.stderr
