"""`asr-supervisor`: read the config, apply flags, serve HTTP until told to stop."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from supervisor.config import ConfigError, Overrides, ServerTable, Settings, find_config, load_settings
from supervisor.models.sources import check_sources

cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@cli.command()
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="asr.toml to read (default: $ASR_CONFIG, ./asr.toml, /etc/asr-supervisor/asr.toml)"
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="serve this model (repeatable); default: every model in the config"),
    ] = None,
    default_model: Annotated[str | None, typer.Option(help="model used when a request names none")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda, for every model")] = None,
    compute_type: Annotated[str | None, typer.Option(help="auto, int8, float16, ... for every model")] = None,
    cache_dir: Annotated[str | None, typer.Option(help="where hub models are downloaded")] = None,
    ttl: Annotated[
        int | None, typer.Option(help="idle seconds before a model's worker ends (-1 never, 0 after each request)")
    ] = None,
    preload: Annotated[bool | None, typer.Option("--preload/--no-preload", help="load models at start-up")] = None,
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error")] = None,
    log_format: Annotated[str | None, typer.Option(help="text, or json for one JSON object per line")] = None,
    metrics: Annotated[
        bool | None, typer.Option("--metrics/--no-metrics", help="serve Prometheus metrics at /metrics")
    ] = None,
    ui: Annotated[
        bool | None, typer.Option("--ui/--no-ui", help="serve the web page (dictation, files, models) at /")
    ] = None,
    ssl_certfile: Annotated[
        str | None, typer.Option(help="serve HTTPS with this PEM certificate (browsers give the mic only to https)")
    ] = None,
    ssl_keyfile: Annotated[str | None, typer.Option(help="the certificate's private key, PEM")] = None,
    wyoming: Annotated[
        bool | None, typer.Option("--wyoming/--no-wyoming", help="serve Home Assistant's Wyoming protocol")
    ] = None,
    wyoming_port: Annotated[int | None, typer.Option(help="Wyoming TCP port (default 10300)")] = None,
    wyoming_uri: Annotated[
        str | None, typer.Option(help="Wyoming listen URI, e.g. unix:///run/asr/wyoming.sock")
    ] = None,
    zeroconf: Annotated[
        bool | None,
        typer.Option("--zeroconf/--no-zeroconf", help="announce Wyoming on the LAN (mDNS) for Home Assistant"),
    ] = None,
    warm_spare: Annotated[
        bool | None,
        typer.Option(
            "--warm-spare/--no-warm-spare", help="keep a worker with libraries imported for fast first requests"
        ),
    ] = None,
    download_only: Annotated[
        bool, typer.Option("--download-only", help="download every configured model, then exit")
    ] = False,
) -> None:
    # SIGHUP means "reload": until the reloader's handler is installed (once the app has
    # started), one must not kill the server, which is SIGHUP's default action.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    overrides = Overrides(
        models=tuple(model or ()),
        default_model=default_model,
        device=device,
        compute_type=compute_type,
        cache_dir=cache_dir,
        ttl=ttl,
        preload=preload,
        host=host,
        port=port,
        log_level=log_level,
        log_format=log_format,
        metrics=metrics,
        ui=ui,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        wyoming=wyoming,
        wyoming_port=wyoming_port,
        wyoming_uri=wyoming_uri,
        zeroconf=zeroconf,
        warm_spare=warm_spare,
    )
    try:
        settings = load_settings(find_config(config), overrides)
        source_warnings = check_sources(settings)
        check_certificate(settings.server)
    except ConfigError as exc:
        typer.echo(f"asr-supervisor: invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None

    if download_only:
        raise typer.Exit(download_all(settings))

    import uvicorn

    from common import logs
    from supervisor.interfaces.http.app import create_app
    from supervisor.interfaces.http.protocol import protocol_class
    from supervisor.interfaces.http.server import Server
    from supervisor.interfaces.http.startup import StartupError, listen

    level = settings.server.log_level.upper()
    logs.configure(level, settings.server.log_format, role="supervisor")
    logging.getLogger("asr").setLevel(level)
    for warning in source_warnings:
        logging.getLogger("asr").warning("%s", warning)
    server_settings = settings.server
    try:
        sock = listen(server_settings.host, server_settings.port)
    except StartupError as exc:
        typer.echo(f"asr-supervisor: {exc}", err=True)
        raise typer.Exit(1) from None
    app = create_app(settings)
    server = Server(
        uvicorn.Config(
            app,
            host=server_settings.host,
            port=server_settings.port,
            # Pinned, not "auto": the limits live in this protocol class, and installing
            # httptools later must not silently swap them out.
            http=protocol_class(server_settings),
            ssl_certfile=server_settings.ssl_certfile or None,
            ssl_keyfile=server_settings.ssl_keyfile or None,
            timeout_keep_alive=server_settings.http_keepalive_timeout,  # type: ignore[arg-type]  # a float works
            log_level=server_settings.log_level,
            log_config=None,  # uvicorn's lines go through our handler, in server.log_format
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=server_settings.drain_timeout,  # type: ignore[arg-type]  # a float works
        ),
        app,
    )
    try:
        server.run(sockets=[sock])
    except SystemExit:
        pass  # uvicorn's way to end a failed start-up; the reason is below, or in its log
    if not server.started:
        reason = getattr(app.state, "startup_error", "start-up failed (see the log above)")
        typer.echo(f"asr-supervisor: {reason}", err=True)
        raise typer.Exit(1)


def check_certificate(server: ServerTable) -> None:
    """Load the HTTPS certificate and key once now: uvicorn would fail on them after the
    socket is bound, with a traceback instead of a line naming the key."""
    if not server.ssl_certfile or not server.ssl_keyfile:
        return
    import ssl

    for key, path in (("ssl_certfile", server.ssl_certfile), ("ssl_keyfile", server.ssl_keyfile)):
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"server.{key} = {path!r}: cannot read it: {exc.strerror or exc}") from None
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(server.ssl_certfile, server.ssl_keyfile)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"server.ssl_certfile = {server.ssl_certfile!r}, server.ssl_keyfile = {server.ssl_keyfile!r}: "
            f"not a PEM certificate and its private key ({exc.reason or exc})"
        ) from None


def download_all(settings: Settings) -> int:
    """Fetch every configured model's files with a progress bar; 0 if all are present after."""
    import asyncio

    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    from rich.text import Text

    from supervisor.models.downloads import download

    async def run() -> int:
        failures = 0
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn()) as bar:
            for spec in settings.models.values():
                task = bar.add_task(escape(spec.name), total=None)
                async for event in download(spec):
                    if event["event"] == "progress":
                        bar.update(task, completed=event["downloaded"], total=event["total"] or None)
                    elif event["event"] == "done":
                        bar.update(task, completed=event["size"], total=event["size"])
                        note = "already present" if event["cached"] else "downloaded"
                        bar.console.print(Text(f"{spec.name}: {note} at {event['path']}"), soft_wrap=True)
                    elif event["event"] == "error":
                        failures += 1
                        bar.update(task, visible=False)  # a failed bar is not drawn again under its error
                        bar.console.print(Text(f"{spec.name}: {event['message']}", style="red"), soft_wrap=True)
        return 1 if failures else 0

    return asyncio.run(run())


def main() -> None:
    cli()
