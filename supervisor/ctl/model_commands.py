"""`asrctl models`: list (with the catalogue), download with a progress bar, load, unload."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.text import Text

from supervisor.ctl.client import (
    KeyOption,
    UrlOption,
    auth_headers,
    exit_unreachable,
    exit_with_error,
    fetch_health,
    request,
    resolve_target,
)
from supervisor.ctl.tables import Column, WideOption, console, left_out_note, print_models, print_table
from supervisor.interfaces.http.schemas import LoadedModel, ModelList, UnloadResult

models_app = typer.Typer(no_args_is_help=True, help="Inspect, load, unload and download models.")

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
    target = resolve_target(ctx, url, api_key)
    health = fetch_health(target)
    print_models(health.models, health.default_model, wide)
    if available:
        from supervisor.models.catalog import CATALOG

        configured = {m.id for m in ModelList.model_validate(request("GET", target, "/v1/models").json()).data}
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
        left_out_note(CATALOGUE_COLUMNS, print_table(CATALOGUE_COLUMNS, rows, wide))
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
    target = resolve_target(ctx, url, api_key)
    headers = auth_headers(target)
    endpoint = target.url.rstrip("/") + "/v1/model/download"
    try:
        with httpx.stream("POST", endpoint, params={"model": name}, headers=headers, timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                exit_with_error(response)
            outcome = _follow_download(name, (json.loads(line) for line in response.iter_lines() if line))
    except httpx.TransportError as exc:
        exit_unreachable(target, exc)
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
    target = resolve_target(ctx, url, api_key)
    params: dict[str, Any] = {"model": name} | ({"ttl": ttl} if ttl is not None else {})
    m = LoadedModel.model_validate(request("POST", target, "/v1/model/load", params=params, timeout=900).json())
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
    target = resolve_target(ctx, url, api_key)
    params = {"all": "true"} if all_models else {"model": name}
    report = UnloadResult.model_validate(request("POST", target, "/v1/model/unload", params=params, timeout=900).json())
    if not report.unloaded:
        console.print(Text("no model was loaded" if all_models else f"{name} was not loaded") + ": nothing to free")
    for r in report.unloaded:
        if r.pid is None:  # stopped mid-load: no worker had been handed over yet
            console.print(Text(f"{r.model}: {r.ended_by}"))
        else:
            console.print(Text(f"{r.model}: worker {r.pid} ended by {r.ended_by}, freed {r.freed_rss_mb} MB RSS"))
