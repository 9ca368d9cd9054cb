"""`asrctl`: the administrator's command line, a thin client of the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from supervisor.interfaces.http.schemas import Health, LoadedModel, ModelList, UnloadResult
from supervisor.models.snapshot import ModelSnapshot

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Administer a running asr-supervisor.",
)
models_app = typer.Typer(no_args_is_help=True, help="Inspect the configured models.")
app.add_typer(models_app, name="models")
console = Console()

UrlOption = Annotated[str, typer.Option("--url", envvar="ASR_URL", help="the server's base URL")]
KeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="ASR_API_KEY", help="API or admin key, when the server has keys")
]
DEFAULT_URL = "http://127.0.0.1:5000"


def _request(method: str, url: str, path: str, api_key: str | None = None, **kwargs: Any) -> httpx.Response:
    """One call to the server; a down server or an API error is one line and exit code 1."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, timeout=kwargs.pop("timeout", 30), headers=headers, **kwargs
        )
    except httpx.TransportError as exc:
        typer.echo(f"asrctl: cannot reach asr-supervisor at {url}: {exc}", err=True)
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        _request_error(response)
    return response


def _request_error(response: httpx.Response) -> None:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text.strip()
    typer.echo(f"asrctl: {message} (HTTP {response.status_code})", err=True)
    raise typer.Exit(1)


def _health(url: str) -> Health:
    """`/health`, read into the same typed snapshot the server writes it from."""
    return Health.model_validate(_request("GET", url, "/health").json())


def _models_table(models: dict[str, ModelSnapshot], default: str) -> Table:
    table = Table(
        "model", "state", "pid", "device", "lanes", "rss MB", "ttl", "ttl left", "in flight", "requests", "note"
    )
    for name, m in models.items():
        table.add_row(
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
        )
    return table


def _lanes(m: ModelSnapshot) -> str:
    """ "2, 2 copies" or "2, shared": how many requests it decodes at once, and at what memory."""
    if m.concurrency is None:
        return ""
    if m.concurrency == 1:
        return "1"
    how = "shared" if m.lane_weights == "shared" else f"{m.copies or m.concurrency} copies"
    return f"{m.concurrency}, {how}"


@app.command()
def status(url: UrlOption = DEFAULT_URL) -> None:  # /health needs no key
    """The server's health and every model's state."""
    health = _health(url)
    console.print(f"asr-supervisor at {url}: [bold]{health.status}[/bold]")
    found = health.devices
    gpus = ", ".join(f"{g['name']} ({g['memory_total_mb']} MB)" for g in found.get("cuda", [])) or "none"
    cpu = found.get("cpu", {})
    console.print(
        f"devices: best {found.get('best')}; CUDA: {gpus}; CPU: {cpu.get('count')} cores"
        + ("; Apple MPS" if found.get("mps") else "")
    )
    limits = health.capacity
    if limits.max_loaded_models or limits.memory_budget_mb:
        console.print(
            f"capacity: max {limits.max_loaded_models or '∞'} models, "
            f"budget {limits.memory_budget_mb or '∞'} MB ({limits.memory_mb:.0f} MB counted, every model copy "
            f"included), loaded: {', '.join(limits.loaded) or 'none'}"
        )
    console.print(_models_table(health.models, health.default_model))


@models_app.command("list")
def models_list(
    available: Annotated[bool, typer.Option("--available", help="also list well-known models one can add")] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Configured models with their state (and, with --available, the catalogue)."""
    health = _health(url)
    console.print(_models_table(health.models, health.default_model))
    if available:
        from supervisor.models.catalog import CATALOG

        configured = {m.id for m in ModelList.model_validate(_request("GET", url, "/v1/models", api_key).json()).data}
        table = Table("name", "backend", "hub repo", "size MB", "languages", "configured", "description")
        for known in CATALOG.values():
            is_configured = "yes" if known.name in configured else ""
            table.add_row(
                known.name,
                known.backend,
                known.repo,
                str(known.size_mb),
                known.languages_label,
                is_configured,
                known.description,
            )
        console.print(table)
        console.print(
            'Add one to asr.toml as [models."NAME"] (source defaults to NAME; set backend when it is '
            "not the [defaults] one), or run with --model NAME."
        )


@models_app.command("download")
def models_download(
    name: Annotated[str, typer.Argument(help="configured model to download")],
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Fetch NAME's files into the server's model cache, with a progress bar."""
    import json

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    endpoint = url.rstrip("/") + "/v1/model/download"
    failed = False
    try:
        with (
            httpx.stream("POST", endpoint, params={"model": name}, headers=headers, timeout=None) as response,
            Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console
            ) as bar,
        ):
            if response.status_code >= 400:
                response.read()
                _request_error(response)
            task = bar.add_task(name, total=None)
            for line in response.iter_lines():
                event = json.loads(line)
                if event["event"] == "progress":
                    bar.update(task, completed=event["downloaded"], total=event["total"] or None)
                elif event["event"] == "done":
                    bar.update(task, completed=event["size"], total=event["size"])
                    bar.console.print(
                        f"{name}: {'already present' if event['cached'] else 'downloaded'} "
                        f"({event['size'] / 1_048_576:.0f} MB) at {event['path']}"
                    )
                elif event["event"] == "error":
                    failed = True
                    bar.console.print(f"[red]{name}: {event['message']}[/red]")
    except httpx.TransportError as exc:
        typer.echo(f"asrctl: cannot reach asr-supervisor at {url}: {exc}", err=True)
        raise typer.Exit(1) from None
    if failed:
        raise typer.Exit(1)


@models_app.command("load")
def models_load(
    name: Annotated[str, typer.Argument(help="model to load")],
    ttl: Annotated[int | None, typer.Option(help="new idle TTL in seconds (-1 never, 0 after each request)")] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Start NAME's worker now and wait until it is ready."""
    params: dict[str, Any] = {"model": name} | ({"ttl": ttl} if ttl is not None else {})
    m = LoadedModel.model_validate(_request("POST", url, "/v1/model/load", api_key, params=params, timeout=900).json())
    console.print(f"{name}: {m.state} (pid {m.pid}, {m.device}, {m.compute_type}, ttl {m.ttl})")


@models_app.command("unload")
def models_unload(
    name: Annotated[str | None, typer.Argument(help="model to unload")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="unload every model")] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """End NAME's worker (after its in-flight requests finish), freeing its memory."""
    if bool(name) == all_models:
        typer.echo("asrctl: name one model or pass --all", err=True)
        raise typer.Exit(2)
    params = {"all": "true"} if all_models else {"model": name}
    report = UnloadResult.model_validate(
        _request("POST", url, "/v1/model/unload", api_key, params=params, timeout=900).json()
    )
    if not report.unloaded:
        console.print(f"{name or 'no model'} was not loaded: nothing to free")
    for r in report.unloaded:
        if r.pid is None:  # stopped mid-load: no worker had been handed over yet
            console.print(f"{r.model}: {r.ended_by}")
        else:
            console.print(f"{r.model}: worker {r.pid} ended by {r.ended_by}, freed {r.freed_rss_mb} MB RSS")


@app.command()
def transcribe(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="audio file")],
    model: Annotated[str | None, typer.Option(help="model name; default: the server's default")] = None,
    language: Annotated[str | None, typer.Option(help="language code, e.g. en")] = None,
    format: Annotated[str, typer.Option("--format", help="json or text")] = "text",
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Transcribe FILE and print the result."""
    data = {k: v for k, v in {"model": model, "language": language, "response_format": format}.items() if v}
    with file.open("rb") as f:
        response = _request(
            "POST", url, "/v1/audio/transcriptions", api_key, files={"file": (file.name, f)}, data=data, timeout=600
        )
    typer.echo(response.text.rstrip("\n"))


def main() -> None:
    app(prog_name="asrctl")


if __name__ == "__main__":
    main()
