"""`asrctl doctor`: can this machine serve the configured models? Asked of the machine and the
config, as `asr-supervisor` reads it, not of a server: it works before one was ever started.

The checks are `supervisor.preflight`'s; this prints them, one row each, with the fix for
each that is not fine, and exits 1 when something needed is missing (2: the config itself
cannot be read).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from supervisor import preflight
from supervisor.config import ConfigError, Settings, find_config, load_settings
from supervisor.ctl.tables import console

_STYLES = {"ok": "green", "note": "cyan", "warn": "yellow", "fail": "bold red"}


def doctor(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="asr.toml to read (default: as asr-supervisor finds it: $ASR_CONFIG, ./asr.toml, "
            "/etc/asr-supervisor/asr.toml)",
        ),
    ] = None,
    no_inference: Annotated[
        bool, typer.Option("--no-inference", help="skip the throwaway inference of the bundled model on a CUDA device")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the checks as JSON, for scripts")] = False,
) -> None:
    """Check this machine against the config, no server needed: devices, driver, CUDA libraries,
    compute types, memory, models, ports. Exit 1 when something needed is missing."""
    try:
        settings = load_settings(find_config(config))
    except ConfigError as exc:
        typer.echo(f"asrctl: invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    with Console(stderr=True).status("asking CTranslate2 (python -m worker.doctor)…"):
        checks = preflight.run(settings, inference=not no_inference)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(check) for check in checks], indent=2))
    else:
        render(settings, checks)
    raise typer.Exit(1 if preflight.failed(checks) else 0)


def render(settings: Settings, checks: list[preflight.Check]) -> None:
    where = str(settings.config_path) if settings.config_path else "built-in defaults (no config file)"
    console.print(Text(f"asr-supervisor doctor, config: {where}"), soft_wrap=True)
    table = Table()
    table.add_column("check", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("finding, and its fix", overflow="fold")
    for check in checks:
        finding = Text(check.detail)  # Text: a model's name or a path is never read as markup
        if check.fix:
            finding.append(f"\nfix: {check.fix}", style="bold")
        table.add_row(Text(check.subject), Text(check.outcome, style=_STYLES[check.outcome]), finding)
    console.print(table)
    failures = [check for check in checks if check.outcome == "fail"]
    if failures:
        names = ", ".join(check.subject for check in failures)
        console.print(Text(f"{len(failures)} problem(s) to fix before serving: {names}", style="bold red"))
    else:
        console.print(Text("Nothing needed is missing.", style="green"))
