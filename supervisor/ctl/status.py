"""The server as a whole: `asrctl status` and `asrctl reload`."""

from __future__ import annotations

import typer
from rich.text import Text

from supervisor.ctl.client import KeyOption, UrlOption, fetch_health, request, resolve_target
from supervisor.ctl.tables import WideOption, console, print_models


def status(ctx: typer.Context, url: UrlOption = None, api_key: KeyOption = None, wide: WideOption = False) -> None:
    """The server's health and every model's state."""
    target = resolve_target(ctx, url, api_key)
    health = fetch_health(target)
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
    print_models(health.models, health.default_model, wide)


def reload_config(ctx: typer.Context, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Read the server's config file again and apply it, as `systemctl reload` does (an admin key)."""
    report = request("POST", resolve_target(ctx, url, api_key), "/v1/admin/reload", timeout=120).json()
    if not report["changed"]:
        console.print(Text(f"{report['config'] or 'built-in defaults'}: nothing changed"))
    for key, label in (("added", "added"), ("removed", "removed (after their requests)"), ("applied", "applied")):
        if report[key]:
            console.print(Text(f"{label}: {', '.join(report[key])}"))
    for name, how in report["changed_models"].items():
        console.print(Text(f"changed {name}: {how}"))
    if report["needs_restart"]:
        console.print(Text(f"needs a restart: {', '.join(report['needs_restart'])}", style="yellow"))
