"""Reloading `asr.toml` while serving: SIGHUP (`systemctl reload`), or `POST /v1/admin/reload`.

The file is read again with the flags the server started with, and validated as at
start-up (the same `load_settings` and source checks). An invalid file changes nothing:
the reason is logged in one line (and answered to the admin route), and the server goes on
with the configuration it had.

A valid one is applied through the registry, which swaps the set of models in one step and
tells each owner what changed through its inbox: an added model gets an owner (preloaded
if `preload`); a removed one takes no new request (its name is unknown from then on) and
its owner ends once its in-flight requests are done; a changed one gets its new keys, and
its worker, if the worker's options changed, is replaced once idle: requests in flight
finish on the old worker, new ones wait for the new one. Nothing in flight fails.

Server keys are applied live where their readers look them up per use (keys, aliases, the
default model, capacity, timeouts of workers started from now on, log level); the rest
(listeners, middleware limits, the runtime directory ...) are logged as needing a restart
and kept at their running values, so `app.state.settings` always says what is in force.

Reloads are serialized, and coalesce: asks that come while one is applied are answered by
the next reload, which reads the file after all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from supervisor.config import ConfigError, ModelSpec, ServerTable, Settings, load_settings
from supervisor.models.registry import ModelRegistry
from supervisor.models.sources import check_sources

log = logging.getLogger("asr.reload")

#: Server keys a reload applies at once: each is read where it is used, per request, per
#: connection, per worker start or per capacity decision. Every other `ServerTable` key
#: needs a restart.
LIVE_SERVER_KEYS = frozenset(
    {
        "default_model",
        "log_level",
        "api_keys",
        "admin_keys",
        "max_loaded_models",
        "memory_budget_mb",
        "capacity_wait",
        "warm_spare",
        "ready_timeout",  # workers started from now on
        "stop_timeout",
        "heartbeat_interval",
        "heartbeat_timeout",
        "session_drain_timeout",
        "session_idle_timeout",  # live sessions opened from now on
        "max_session_seconds",
    }
)
RESTART_SERVER_KEYS = tuple(key for key in ServerTable.model_fields if key not in LIVE_SERVER_KEYS)


class ReloadFailed(Exception):
    """The new configuration was refused; the running one stays. The message says why."""


class ReloadReport(BaseModel):
    """What a reload changed (the answer of `POST /v1/admin/reload`)."""

    config: str | None = Field(description="the file read; null: built-in defaults")
    changed: bool = Field(description="whether anything at all changed")
    added: list[str] = Field(description="models added")
    removed: list[str] = Field(description="models removed: they finish their in-flight requests, then stop")
    changed_models: dict[str, str] = Field(
        description="changed models and what happens to each: applied (no worker to replace, or only the "
        "supervisor's keys changed), replacing (its idle worker now), replaced once idle (after its in-flight "
        "requests)"
    )
    applied: list[str] = Field(description="other settings now in force: server keys, aliases, default_model, keys")
    needs_restart: list[str] = Field(description="server keys changed in the file that apply only after a restart")
    warnings: list[str] = Field(description="sources that cannot be checked offline (as at start-up)")
    seconds: float = Field(description="how long the reload took (the new set in force; workers start after)")


@dataclasses.dataclass(frozen=True, slots=True)
class Diff:
    """Old settings against new, as names of what differs (pure: no registry, no I/O)."""

    added: list[str]
    removed: list[str]
    changed: dict[str, list[str]]  # model → the keys that differ
    applied: list[str]
    needs_restart: list[str]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.applied or self.needs_restart)


def diff(old: Settings, new: Settings) -> Diff:
    changed = {
        name: keys
        for name, spec in new.models.items()
        if name in old.models and (keys := _spec_keys_differing(old.models[name], spec))
    }
    server = _server_keys_differing(old.server, new.server)
    applied = [key for key in server if key in LIVE_SERVER_KEYS and key not in ("api_keys", "admin_keys")]
    if old.aliases != new.aliases:
        applied.append("aliases")
    # Keys may come from the environment too ($ASR_API_KEYS): compare what is in force.
    applied += [key for key in ("api_keys", "admin_keys") if getattr(old, key) != getattr(new, key)]
    return Diff(
        added=[name for name in new.models if name not in old.models],
        removed=[name for name in old.models if name not in new.models],
        changed=changed,
        applied=applied,
        needs_restart=[key for key in server if key not in LIVE_SERVER_KEYS],
    )


def in_force(old: Settings, new: Settings) -> Settings:
    """`new`, with the server keys that need a restart put back to their running values."""
    kept = {key: getattr(old.server, key) for key in RESTART_SERVER_KEYS}
    return dataclasses.replace(new, server=new.server.model_copy(update=kept))


def _spec_keys_differing(old: ModelSpec, new: ModelSpec) -> list[str]:
    keys = [key for key in ("ttl", "preload", "description") if getattr(old, key) != getattr(new, key)]
    return keys + [
        key for key in old.options.__struct_fields__ if getattr(old.options, key) != getattr(new.options, key)
    ]


def _server_keys_differing(old: ServerTable, new: ServerTable) -> list[str]:
    return [key for key in ServerTable.model_fields if getattr(old, key) != getattr(new, key)]


class Reloader:
    """Reads, validates and applies the configuration again; one reload at a time."""

    def __init__(self, app: FastAPI, registry: ModelRegistry) -> None:
        self._app = app
        self._registry = registry
        self._lock = asyncio.Lock()
        self._asked = 0  # reloads asked for so far
        self._covered = 0  # asks answered by the reload that last read the file
        self._last: ReloadReport | ReloadFailed | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._signal_installed = False
        self._closed = False

    async def reload(self) -> ReloadReport:
        """Reload, or join the next reload if one is being applied; ReloadFailed if refused."""
        self._asked += 1
        ticket = self._asked
        async with self._lock:
            if ticket > self._covered:  # no reload has read the file since this ask
                self._covered = self._asked
                self._last = await self._reload_once()
        outcome = self._last
        if isinstance(outcome, ReloadFailed):
            raise ReloadFailed(str(outcome))
        assert outcome is not None
        return outcome

    def install_signal_handler(self) -> None:
        """SIGHUP reloads (what `systemctl reload` sends, through the unit's ExecReload)."""
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (ValueError, RuntimeError, NotImplementedError) as exc:  # not the main thread (an embedding)
            log.debug("no SIGHUP reload here: %s", exc)
            return
        self._signal_installed = True

    async def close(self) -> None:
        """At shutdown: no more reloads; one under way is finished first (it does not wait on workers)."""
        self._closed = True
        if self._signal_installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # not the default (exit) while the workers stop
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reloading the configuration")
        task = asyncio.create_task(self._reload_quietly(), name="reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(ReloadFailed):  # already logged, with the reason
            await self.reload()

    async def _reload_once(self) -> ReloadReport | ReloadFailed:
        started = time.monotonic()
        old: Settings = self._app.state.settings
        where = str(old.config_path) if old.config_path is not None else "built-in defaults"
        if self._closed:
            return ReloadFailed("the server is stopping")
        self._notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            try:
                new = load_settings(old.config_path, old.overrides)
                warnings = check_sources(new)
            except ConfigError as exc:
                log.error("reload refused, the running configuration stays: %s", exc)
                return ReloadFailed(str(exc))
            found = diff(old, new)
            settings = in_force(old, new)
            # The registry's swap and the settings the routes read change in one step.
            settling = self._registry.reconfigure(settings)
            self._app.state.settings = settings
            if "log_level" in found.applied:
                _set_log_level(settings.server.log_level)
            changes = await settling
        finally:
            self._notify("READY=1")
        for warning in warnings:
            log.warning("%s", warning)
        report = ReloadReport(
            config=where if old.config_path is not None else None,
            changed=not found.empty,
            added=found.added,
            removed=found.removed,
            changed_models={name: changes.get(name, "applied") for name in found.changed},
            applied=found.applied,
            needs_restart=found.needs_restart,
            warnings=warnings,
            seconds=round(time.monotonic() - started, 3),
        )
        _log_report(report, found, old.server, new.server)
        return report

    def _notify(self, *lines: str) -> None:
        """systemd learns the reload's start and end (Type=notify): `systemctl reload` waits for it."""
        notifier: Any = getattr(self._app.state, "notifier", None)
        if notifier is not None:
            notifier.send(*lines)


def _set_log_level(level: str) -> None:
    # Both, as at start-up: the root logger (uvicorn's lines) and ours, which new workers copy.
    logging.getLogger().setLevel(level.upper())
    logging.getLogger("asr").setLevel(level.upper())


def _log_report(report: ReloadReport, found: Diff, old: ServerTable, new: ServerTable) -> None:
    if not report.changed:
        log.info("reload of %s: nothing changed (%.3fs)", report.config or "built-in defaults", report.seconds)
        return
    parts = []
    if report.added:
        parts.append(f"added {_names(report.added)}")
    if report.removed:
        parts.append(f"removed {_names(report.removed)} (they finish their requests, then stop)")
    for name, how in report.changed_models.items():
        parts.append(f"changed {name} ({', '.join(found.changed[name])}): {how}")
    if report.applied:
        parts.append(f"applied {_names(report.applied)}")
    log.info("reload of %s: %s (%.3fs)", report.config or "built-in defaults", "; ".join(parts), report.seconds)
    for key in report.needs_restart:
        log.warning(
            "reload: server.%s changed (%r → %r) but needs a restart; %r stays in force",
            key,
            getattr(old, key),
            getattr(new, key),
            getattr(old, key),
        )


def _names(names: Iterable[str]) -> str:
    return ", ".join(names)
