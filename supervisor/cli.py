"""`asr-supervisor`: read the config, apply flags, serve HTTP until told to stop."""

from __future__ import annotations

import functools
import inspect
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from supervisor.config import (
    NO_OVERRIDES,
    ConfigError,
    Overrides,
    ServerTable,
    Settings,
    find_config,
    flags,
    load_settings,
)
from supervisor.models.sources import check_sources
from supervisor.preflight import startup_warnings

cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def takes_overrides(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with its `overrides` parameter spelt out as one typer option per `Overrides`
    field (`config.flags()`), which are gathered back into the `Overrides` it is called with."""
    names = [flag.name for flag in flags()]
    options = [
        inspect.Parameter(
            flag.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, *flag.decls, help=flag.help),
            annotation=flag.parses,
        )
        for flag in flags()
    ]

    @functools.wraps(command)
    def parsed(**values: Any) -> None:
        overrides = Overrides.from_flags({name: values.pop(name) for name in names})
        command(**values, overrides=overrides)

    own = inspect.signature(command, eval_str=True).parameters.values()
    spelt_out = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p.name != "overrides"]
    at = [p.name for p in own].index("overrides")
    parsed.__signature__ = inspect.Signature([*spelt_out[:at], *options, *spelt_out[at:]])  # type: ignore[attr-defined]
    return parsed


@cli.command()
@takes_overrides
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="asr.toml to read (default: $ASR_CONFIG, ./asr.toml, /etc/asr-supervisor/asr.toml)"
        ),
    ] = None,
    overrides: Overrides = NO_OVERRIDES,
    download_only: Annotated[
        bool, typer.Option("--download-only", help="download every configured model, then exit")
    ] = False,
) -> None:
    # SIGHUP means "reload": until the reloader's handler is installed (once the app has
    # started), one must not kill the server, which is SIGHUP's default action.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        settings = load_settings(find_config(config), overrides)
        source_warnings = check_sources(settings) + startup_warnings(settings)
        check_certificate(settings.server)
    except ConfigError as exc:
        typer.echo(f"asr-supervisor: invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(download_all(settings) if download_only else run(settings, source_warnings))


def run(settings: Settings, source_warnings: list[str]) -> int:
    """Serve until told to stop; 1 when the server could not start (the reason on stderr)."""
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
        return 1
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
        return 1
    return 0


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
