"""`asrctl transcribe`, and its progress bar: audio seconds decoded, from the streamed answer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from common.protocol import Segment
from supervisor.ctl.client import (
    KeyOption,
    Target,
    UrlOption,
    auth_headers,
    error_message,
    request,
    resolve_target,
    unreachable_message,
)
from supervisor.interfaces.http import formats
from supervisor.interfaces.http.formats import ResponseFormat

if TYPE_CHECKING:
    from rich.progress import Progress

#: `transcribe` draws no bar for shorter audio: it is done before a bar would tell anyone anything.
PROGRESS_MIN_SECONDS = 30.0
#: Progress bars: stderr, so that stdout holds only what was asked for (`> out.txt` stays clean).
err_console = Console(stderr=True)


def transcribe(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="audio file")],
    model: Annotated[str | None, typer.Option(help="model name; default: the server's default")] = None,
    language: Annotated[str | None, typer.Option(help="language code, e.g. en")] = None,
    format: Annotated[
        ResponseFormat,
        typer.Option(
            "--format", help="text: the transcript; verbose_json: with segments and timings; srt, vtt: subtitles"
        ),
    ] = "text",
    no_progress: Annotated[
        bool,
        typer.Option(
            "--no-progress",
            help=f"no progress bar (otherwise drawn on stderr, when it is a terminal, for {PROGRESS_MIN_SECONDS:.0f} s "
            "of audio or more)",
        ),
    ] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Transcribe FILE and print the result."""
    target = resolve_target(ctx, url, api_key)
    data = {k: v for k, v in {"model": model, "language": language, "response_format": format}.items() if v}
    if not no_progress and err_console.is_terminal:
        seconds = _audio_seconds(file)
        if seconds is None or seconds >= PROGRESS_MIN_SECONDS:  # unknown: a bar that counts without a total
            typer.echo(_transcribe_with_progress(target, file, data, format, seconds).rstrip("\n"))
            return
    with file.open("rb") as f:
        response = request(
            "POST", target, "/v1/audio/transcriptions", files={"file": (file.name, f)}, data=data, timeout=600
        )
    typer.echo(response.text.rstrip("\n"))


class _Failed(Exception):
    """A request that failed, with its line for stderr: said once the bar has stopped."""


@dataclass(frozen=True, slots=True)
class StreamedTranscript:
    """What a transcription stream carried: the whole text, and each segment's times and text."""

    text: str
    segments: list[Segment]


def _audio_seconds(file: Path) -> float | None:
    """FILE's length as FFmpeg reads it from the container, or None (not audio, or no length)."""
    import av  # here: asrctl starts fast, and only a transcription that may draw a bar pays for it

    try:
        with av.open(str(file)) as container:
            if not container.streams.audio:
                return None
            if container.duration:
                return float(container.duration / av.time_base)
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except (av.FFmpegError, OSError, ValueError):
        pass  # the server is sent the file all the same, and says what is wrong with it
    return None


def _transcribe_with_progress(
    target: Target, file: Path, data: dict[str, str], format: str, seconds: float | None
) -> str:
    """The server's answer for `format`, read from its stream while a bar counts audio seconds.

    verbose_json's segments (tokens, log-probabilities) and language are not in the stream:
    it is asked for whole, under a bar that only says the file is being transcribed. As in
    `model_commands._follow_download`, a failure hides the bar and is said after the bar has stopped.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[audio]}"), TimeElapsedColumn())
    streamed = format != "verbose_json"
    try:
        with Progress(*columns, console=err_console) as progress:
            bar = _AudioBar(progress, file.name, seconds, counted=streamed)
            try:
                if streamed:
                    answer = _render(_post_streamed(target, file, data, bar.advance), format)
                else:
                    answer = _post_whole(target, file, data)
            except _Failed:
                bar.hide()
                raise
            bar.finish()
    except _Failed as exc:
        typer.echo(f"asrctl: {exc}", err=True)
        raise typer.Exit(1) from None
    return answer


class _AudioBar:
    """One task of a rich `Progress`: audio seconds decoded out of the file's `total` (None:
    unknown, it counts without one), or, not `counted`, a bar that only says it is working."""

    def __init__(self, progress: Progress, name: str, total: float | None, counted: bool) -> None:
        self._progress, self._total, self._counted, self._done = progress, total, counted, 0.0
        if counted:
            label = self._label()
        else:
            label = "" if total is None else f"{total:.0f} s of audio"
        self._task = progress.add_task(escape(name), total=total if counted else None, audio=label)

    def advance(self, done: float) -> None:
        self._done = min(done, self._total) if self._total is not None else done  # an end may pass the file's
        self._progress.update(self._task, completed=self._done, audio=self._label())

    def finish(self) -> None:
        end = self._total if self._total is not None else self._done
        if self._counted:
            self.advance(end)
        self._progress.update(self._task, total=end or 1, completed=end or 1)

    def hide(self) -> None:
        self._progress.update(self._task, visible=False)

    def _label(self) -> str:
        """ "12/44 s", or "12 s" while the total is unknown."""
        return f"{self._done:.0f} s" if self._total is None else f"{self._done:.0f}/{self._total:.0f} s"


def _post_whole(target: Target, file: Path, data: dict[str, str]) -> str:
    try:
        with file.open("rb") as f:
            response = httpx.post(
                target.url.rstrip("/") + "/v1/audio/transcriptions",
                files={"file": (file.name, f)},
                data=data,
                headers=auth_headers(target),
                timeout=600,
            )
    except httpx.TransportError as exc:
        raise _Failed(unreachable_message(target, exc)) from exc
    if response.status_code >= 400:
        raise _Failed(error_message(response))
    return response.text


def _post_streamed(
    target: Target, file: Path, data: dict[str, str], advance: Callable[[float], None]
) -> StreamedTranscript:
    # Any timed format: its stream sends each segment's times before its text.
    form = data | {"response_format": "verbose_json", "stream": "true"}
    endpoint = target.url.rstrip("/") + "/v1/audio/transcriptions"
    try:
        with (
            file.open("rb") as f,
            httpx.stream(
                "POST", endpoint, files={"file": (file.name, f)}, data=form, headers=auth_headers(target), timeout=600
            ) as response,
        ):
            if response.status_code >= 400:  # what failed before the first segment: the usual HTTP error
                response.read()
                raise _Failed(error_message(response))
            return _follow_transcript(_sse_events(response.iter_lines()), advance)
    except httpx.TransportError as exc:
        raise _Failed(unreachable_message(target, exc)) from exc


def _sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON of each `data:` line of a Server-Sent Events stream."""
    for line in lines:
        if line.startswith("data:"):
            yield json.loads(line.removeprefix("data:"))


def _follow_transcript(events: Iterator[dict[str, Any]], advance: Callable[[float], None]) -> StreamedTranscript:
    """Read OpenAI's transcription stream up to `transcript.text.done`, advancing to each
    segment's end; an error event (the decode failed after it had begun) raises `_Failed`."""
    segments: list[Segment] = []
    for event in events:
        kind = event.get("type")
        if kind == "transcript.text.segment":
            segments.append(Segment(id=len(segments), start=event["start"], end=event["end"], text=event["text"]))
            advance(event["end"])
        elif kind == "transcript.text.done":
            # The server strips the first delta only; the non-streamed text is stripped at both ends.
            return StreamedTranscript(event["text"].strip(), segments)
        elif "error" in event:
            error = event["error"]
            raise _Failed(f"{error.get('message')} (in the stream: {error.get('code') or error.get('type')})")
    raise _Failed("the server ended the transcript without a result")


def _render(transcript: StreamedTranscript, format: str) -> str:
    """What the server answers for `format`, made from the stream (the same functions make it there)."""
    if format == "json":  # as FastAPI's JSONResponse writes it
        return json.dumps({"text": transcript.text}, ensure_ascii=False, separators=(",", ":"))
    if format == "srt":
        return formats.srt(transcript.segments)
    if format == "vtt":
        return formats.vtt(transcript.segments)
    return transcript.text + "\n"
