"""`asrctl`: the administrator's command line, a thin client of the HTTP API.

Everything it prints that came from the server or the user (model names, descriptions,
errors) is plain text, never rich markup: `[models."NAME"]` in a hint must print as written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import httpx
import typer
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from common.protocol import Segment
from supervisor.interfaces.http import formats
from supervisor.interfaces.http.formats import ResponseFormat
from supervisor.interfaces.http.schemas import Health, LoadedModel, ModelList, UnloadResult
from supervisor.models.snapshot import ModelSnapshot

if TYPE_CHECKING:
    from rich.progress import Progress

DEFAULT_URL = "http://127.0.0.1:5000"
#: `transcribe` draws no bar for shorter audio: it is done before a bar would tell anyone anything.
PROGRESS_MIN_SECONDS = 30.0

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help=(
        "Administer a running asr-supervisor.\n\n"
        f"The server is --url, else $ASR_URL, else {DEFAULT_URL}; the key is --api-key, else $ASR_API_KEY. "
        "Both may come before the command (asrctl --url URL status) or after it."
    ),
)
models_app = typer.Typer(no_args_is_help=True, help="Inspect, load, unload and download models.")
app.add_typer(models_app, name="models")
console = Console()
#: Progress bars: stderr, so that stdout holds only what was asked for (`> out.txt` stays clean).
err_console = Console(stderr=True)


@dataclass(frozen=True, slots=True)
class Target:
    url: str = DEFAULT_URL
    api_key: str | None = None


@app.callback()
def _options(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", envvar="ASR_URL", help="the server's base URL")] = DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="ASR_API_KEY", help="API or admin key, when the server has keys"),
    ] = None,
) -> None:
    ctx.obj = Target(url, api_key)


# The same options after the command; given there, they win over those before it (and $ASR_URL).
UrlOption = Annotated[str | None, typer.Option("--url", help="the server's base URL (default: $ASR_URL)")]
KeyOption = Annotated[str | None, typer.Option("--api-key", help="API or admin key (default: $ASR_API_KEY)")]
WideOption = Annotated[bool, typer.Option("--wide", help="every column, however wide the terminal")]


def _target(ctx: typer.Context, url: str | None, api_key: str | None) -> Target:
    before: Target = ctx.find_root().obj or Target()
    return Target(url or before.url, api_key or before.api_key)


def _headers(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}


def _request(method: str, target: Target, path: str, **kwargs: Any) -> httpx.Response:
    """One call to the server; a down server or an API error is one line and exit code 1."""
    headers = _headers(target)
    try:
        response = httpx.request(
            method, target.url.rstrip("/") + path, timeout=kwargs.pop("timeout", 30), headers=headers, **kwargs
        )
    except httpx.TransportError as exc:
        _unreachable(target, exc)
    if response.status_code >= 400:
        _request_error(response)
    return response


def _unreachable(target: Target, exc: Exception) -> NoReturn:
    typer.echo(f"asrctl: {_unreachable_message(target, exc)}", err=True)
    raise typer.Exit(1)


def _unreachable_message(target: Target, exc: Exception) -> str:
    return f"cannot reach asr-supervisor at {target.url}: {exc}"


def _request_error(response: httpx.Response) -> NoReturn:
    typer.echo(f"asrctl: {_error_message(response)}", err=True)
    raise typer.Exit(1)


def _error_message(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text.strip()
    return f"{message} (HTTP {response.status_code})"


def _health(target: Target) -> Health:
    """`/health`, read into the same typed snapshot the server writes it from."""
    return Health.model_validate(_request("GET", target, "/health").json())


# -- tables that fit the terminal ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    #: 0: always shown; else the order in which columns are left out when the table is too
    #: wide (the highest first).
    drop: int = 0
    #: Long text that wraps (counted at `min_width`, and at most `max_width` wide with --wide);
    #: other columns are never wrapped or cut.
    wraps: bool = False
    justify: str = "left"
    min_width: int = 20
    max_width: int = 60

    def width(self, cells: list[str], wide: bool) -> int:
        """Its width on one line: its longest cell, or for wrapping text its min or max width."""
        longest = max([cell_len(self.header), *map(cell_len, cells)])
        return min(longest, self.max_width if wide else self.min_width) if self.wraps else longest


def _fit(columns: list[Column], rows: list[list[str]], width: int, wide: bool) -> list[int]:
    """The columns to show: all with `--wide`, else as many as fit `width`, dropping by `drop`."""
    shown = list(range(len(columns)))
    if wide:
        return shown
    while _table_width(columns, rows, shown, wide) > width:
        droppable = [i for i in shown if columns[i].drop]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: columns[i].drop))
    return shown


def _table_width(columns: list[Column], rows: list[list[str]], shown: list[int], wide: bool) -> int:
    """A table's width: its columns' and, per column, a space each side and a rule."""
    return sum(columns[i].width([row[i] for row in rows], wide) + 3 for i in shown) + 1


def _print_table(columns: list[Column], rows: list[list[str]], wide: bool) -> list[int]:
    """Print the rows with the columns that fit; return the indices of those left out."""
    shown = _fit(columns, rows, console.width, wide)
    table = Table()
    for i in shown:
        c = columns[i]
        table.add_column(
            c.header,
            justify=c.justify,  # type: ignore[arg-type]  # one of rich's JustifyMethod literals
            no_wrap=not c.wraps,
            overflow="fold",
            min_width=None if c.wraps else c.width([row[i] for row in rows], wide),
            max_width=c.max_width if c.wraps and wide else None,
        )
    for row in rows:
        table.add_row(*(Text(row[i]) for i in shown))  # Text: a cell is never read as markup
    # With --wide, lines longer than the terminal are printed whole (it wraps them), not cut.
    needed = _table_width(columns, rows, shown, wide)
    (Console(width=needed) if wide and needed > console.width else console).print(table, crop=not wide)
    return [i for i in range(len(columns)) if i not in shown]


def _left_out_note(columns: list[Column], left_out: list[int]) -> None:
    if left_out:
        names = ", ".join(columns[i].header for i in left_out)
        console.print(Text(f"(--wide for every column: {names})"))


STATUS_COLUMNS = [
    Column("model"),
    Column("state"),
    Column("pid", drop=3, justify="right"),
    Column("device", drop=5),
    Column("lanes", drop=8),
    Column("rss MB", drop=4, justify="right"),
    Column("ttl", drop=7, justify="right"),
    Column("ttl left", drop=2, justify="right"),
    Column("in flight", drop=6, justify="right"),
    Column("requests", drop=7, justify="right"),
    Column("note", drop=9, wraps=True),
]
_NOTE = len(STATUS_COLUMNS) - 1


def _print_models(models: dict[str, ModelSnapshot], default: str, wide: bool) -> None:
    rows = [
        [
            f"{name} (default)" if name == default else name,
            m.state,
            str(m.pid or ""),
            m.device or "",
            _lanes(m),
            "" if m.rss_mb is None else f"{m.rss_mb:.0f}",
            str(m.ttl),
            "" if m.ttl_remaining is None else f"{m.ttl_remaining:.0f}s",
            str(m.in_flight),
            str(m.requests),
            m.last_error or m.description or "",
        ]
        for name, m in models.items()
    ]
    left_out = _print_table(STATUS_COLUMNS, rows, wide)
    if _NOTE in left_out:  # notes (a failed model's error above all) go under the table instead
        left_out.remove(_NOTE)
        for name, row in zip(models, rows, strict=True):
            if row[_NOTE]:
                console.print(Text(f"{name}: {row[_NOTE]}"))
    _left_out_note(STATUS_COLUMNS, left_out)


def _lanes(m: ModelSnapshot) -> str:
    """ "2, 2 copies" or "2, shared": how many requests it decodes at once, and at what memory."""
    if m.concurrency is None:
        return ""
    if m.concurrency == 1:
        return "1"
    how = "shared" if m.lane_weights == "shared" else f"{m.copies or m.concurrency} copies"
    return f"{m.concurrency}, {how}"


# -- commands -------------------------------------------------------------------------------


@app.command()
def status(ctx: typer.Context, url: UrlOption = None, api_key: KeyOption = None, wide: WideOption = False) -> None:
    """The server's health and every model's state."""
    target = _target(ctx, url, api_key)
    health = _health(target)
    console.print(Text.assemble(f"asr-supervisor at {target.url}: ", (health.status, "bold")))
    found = health.devices
    gpus = ", ".join(f"{g['name']} ({g['memory_total_mb']} MB)" for g in found.get("cuda", [])) or "none"
    cpu = found.get("cpu", {})
    console.print(
        Text(
            f"devices: best {found.get('best')}; CUDA: {gpus}; CPU: {cpu.get('count')} cores"
            + ("; Apple MPS" if found.get("mps") else "")
        )
    )
    limits = health.capacity
    if limits.max_loaded_models or limits.memory_budget_mb:
        console.print(
            Text(
                f"capacity: max {limits.max_loaded_models or '∞'} models, "
                f"budget {limits.memory_budget_mb or '∞'} MB ({limits.memory_mb:.0f} MB counted, every model "
                f"copy included), loaded: {', '.join(limits.loaded) or 'none'}"
            )
        )
    _print_models(health.models, health.default_model, wide)


CATALOGUE_COLUMNS = [
    Column("name"),
    Column("backend", drop=5),
    Column("hub repo", drop=4),
    Column("size MB", justify="right", drop=1),
    Column("languages", drop=1),
    Column("configured", drop=2),
    Column("description", wraps=True, drop=3),
]


@models_app.command("list")
def models_list(
    ctx: typer.Context,
    available: Annotated[bool, typer.Option("--available", help="also list well-known models one can add")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    wide: WideOption = False,
) -> None:
    """Configured models with their state (and, with --available, the catalogue)."""
    target = _target(ctx, url, api_key)
    health = _health(target)
    _print_models(health.models, health.default_model, wide)
    if available:
        from supervisor.models.catalog import CATALOG

        configured = {m.id for m in ModelList.model_validate(_request("GET", target, "/v1/models").json()).data}
        rows = [
            [
                known.name,
                known.backend,
                known.repo,
                str(known.size_mb),
                known.languages_label,
                "yes" if known.name in configured else "",
                known.description,
            ]
            for known in CATALOG.values()
        ]
        _left_out_note(CATALOGUE_COLUMNS, _print_table(CATALOGUE_COLUMNS, rows, wide))
        console.print(
            Text(
                'Serve one with asr-supervisor --model NAME, or add it to asr.toml as [models."NAME"] (source '
                "defaults to NAME; set backend when it is not the [defaults] one). "
                "asrctl models download NAME fetches it beforehand."
            )
        )


@models_app.command("download")
def models_download(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="a configured model, or any name from models list --available")],
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Fetch NAME's files into the server's model cache, with a progress bar."""
    target = _target(ctx, url, api_key)
    headers = _headers(target)
    endpoint = target.url.rstrip("/") + "/v1/model/download"
    try:
        with httpx.stream("POST", endpoint, params={"model": name}, headers=headers, timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                _request_error(response)
            outcome = _follow_download(name, (json.loads(line) for line in response.iter_lines() if line))
    except httpx.TransportError as exc:
        _unreachable(target, exc)
    if "message" in outcome:
        typer.echo(f"asrctl: {name}: {outcome['message']}", err=True)
        raise typer.Exit(1)
    where = f"({outcome['size'] / 1_048_576:.0f} MB) at {outcome['path']}"
    # soft_wrap: a path or a command is never broken across lines (the terminal wraps them).
    console.print(Text(f"{name}: {'already present' if outcome['cached'] else 'downloaded'} {where}"), soft_wrap=True)
    if outcome.get("configured") is False:
        console.print(
            Text(
                f"{name} is not configured on this server: serve it with asr-supervisor --model {name}, "
                f'or add [models."{name}"] to asr.toml (it will be found in the cache).'
            ),
            soft_wrap=True,
        )


def _follow_download(name: str, events: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """Draw the progress bar until the `done` or `error` event, which is returned.

    The bar is hidden before an error leaves the loop, and everything is said after the
    bar has stopped: a bar's last frame is drawn when it stops, and it once came after the
    error it had just printed.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    outcome: dict[str, Any] = {"message": "the server ended the download without a result"}
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(escape(name), total=None)  # the column reads markup
        for event in events:
            if event.get("event") == "progress":
                bar.update(task, completed=event["downloaded"], total=event["total"] or None)
            elif event.get("event") == "done":
                bar.update(task, completed=event["size"], total=event["size"])
                outcome = event
                break
            elif event.get("event") == "error":
                outcome = {"message": str(event.get("message", "download failed"))}
                break
        if "message" in outcome:
            bar.update(task, visible=False)
    return outcome


@models_app.command("load")
def models_load(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="model to load")],
    ttl: Annotated[int | None, typer.Option(help="new idle TTL in seconds (-1 never, 0 after each request)")] = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Start NAME's worker now and wait until it is ready."""
    target = _target(ctx, url, api_key)
    params: dict[str, Any] = {"model": name} | ({"ttl": ttl} if ttl is not None else {})
    m = LoadedModel.model_validate(_request("POST", target, "/v1/model/load", params=params, timeout=900).json())
    console.print(Text(f"{name}: {m.state} (pid {m.pid}, {m.device}, {m.compute_type}, ttl {m.ttl})"))


@models_app.command("unload")
def models_unload(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="model to unload")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="unload every model")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """End NAME's worker (after its in-flight requests finish), freeing its memory."""
    if bool(name) == all_models:
        typer.echo("asrctl: name one model or pass --all", err=True)
        raise typer.Exit(2)
    target = _target(ctx, url, api_key)
    params = {"all": "true"} if all_models else {"model": name}
    report = UnloadResult.model_validate(
        _request("POST", target, "/v1/model/unload", params=params, timeout=900).json()
    )
    if not report.unloaded:
        console.print(Text("no model was loaded" if all_models else f"{name} was not loaded") + ": nothing to free")
    for r in report.unloaded:
        if r.pid is None:  # stopped mid-load: no worker had been handed over yet
            console.print(Text(f"{r.model}: {r.ended_by}"))
        else:
            console.print(Text(f"{r.model}: worker {r.pid} ended by {r.ended_by}, freed {r.freed_rss_mb} MB RSS"))


@app.command("reload")
def reload_config(ctx: typer.Context, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Read the server's config file again and apply it, as `systemctl reload` does (an admin key)."""
    report = _request("POST", _target(ctx, url, api_key), "/v1/admin/reload", timeout=120).json()
    if not report["changed"]:
        console.print(Text(f"{report['config'] or 'built-in defaults'}: nothing changed"))
    for key, label in (("added", "added"), ("removed", "removed (after their requests)"), ("applied", "applied")):
        if report[key]:
            console.print(Text(f"{label}: {', '.join(report[key])}"))
    for name, how in report["changed_models"].items():
        console.print(Text(f"changed {name}: {how}"))
    if report["needs_restart"]:
        console.print(Text(f"needs a restart: {', '.join(report['needs_restart'])}", style="yellow"))


@app.command()
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
    target = _target(ctx, url, api_key)
    data = {k: v for k, v in {"model": model, "language": language, "response_format": format}.items() if v}
    if not no_progress and err_console.is_terminal:
        seconds = _audio_seconds(file)
        if seconds is None or seconds >= PROGRESS_MIN_SECONDS:  # unknown: a bar that counts without a total
            typer.echo(_transcribe_with_progress(target, file, data, format, seconds).rstrip("\n"))
            return
    with file.open("rb") as f:
        response = _request(
            "POST", target, "/v1/audio/transcriptions", files={"file": (file.name, f)}, data=data, timeout=600
        )
    typer.echo(response.text.rstrip("\n"))


# -- transcribe's progress bar --------------------------------------------------------------


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
    `_follow_download`, a failure hides the bar and is said after the bar has stopped.
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
                headers=_headers(target),
                timeout=600,
            )
    except httpx.TransportError as exc:
        raise _Failed(_unreachable_message(target, exc)) from exc
    if response.status_code >= 400:
        raise _Failed(_error_message(response))
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
                "POST", endpoint, files={"file": (file.name, f)}, data=form, headers=_headers(target), timeout=600
            ) as response,
        ):
            if response.status_code >= 400:  # what failed before the first segment: the usual HTTP error
                response.read()
                raise _Failed(_error_message(response))
            return _follow_transcript(_sse_events(response.iter_lines()), advance)
    except httpx.TransportError as exc:
        raise _Failed(_unreachable_message(target, exc)) from exc


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


def main() -> None:
    app(prog_name="asrctl")


if __name__ == "__main__":
    main()
