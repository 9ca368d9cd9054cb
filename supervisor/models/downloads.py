"""Model downloads, run as `python -m worker.download` so the supervisor never imports
huggingface_hub (or the network stack it brings) into its own process.

The downloader is told the model's backend: which names mean which repo, and which of a
repo's files to fetch, are in that backend's description."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

from supervisor.config import ModelSpec, Settings, unconfigured_spec
from supervisor.models import catalog
from supervisor.models import files as model_files
from supervisor.models.registry import ModelRegistry, UnknownModel


class NotDownloadable(UnknownModel):
    """Neither a configured model nor a catalogue name: nothing says what to fetch."""

    def __init__(self, name: str, configured: list[str]) -> None:
        LookupError.__init__(
            self,
            f"The model '{name}' is neither configured ({', '.join(configured)}) nor a catalogue name "
            "(asrctl models list --available lists them).",
        )
        self.name = name


def spec_to_download(registry: ModelRegistry, name: str) -> ModelSpec:
    """What `name` means to a download: a configured model (or an alias), else a catalogue name.

    A catalogue model that is not configured is fetched with `[defaults]` and the flags (its
    `cache_dir` above all), into the cache a later `[models.NAME]` or `--model NAME` reads.
    """
    try:
        return registry.get(name).spec
    except UnknownModel:
        spec = catalogue_spec(registry.settings, name)
        if spec is None:
            raise NotDownloadable(name, registry.names()) from None
        return spec


def catalogue_spec(settings: Settings, name: str) -> ModelSpec | None:
    """`name` as `--model NAME` would serve it, when it is a catalogue name; else None."""
    backend = settings.model_defaults.get("backend")
    known = (catalog.lookup(name, backend) if isinstance(backend, str) else None) or catalog.lookup(name)
    return None if known is None else unconfigured_spec(settings, name, backend=known.backend)


async def download(spec: ModelSpec) -> AsyncIterator[dict[str, Any]]:
    """Progress events (`progress`, then `done` or `error`) for fetching one model.

    Local and bundled models are already "downloaded": one `done` event, no process.
    """
    path = model_files.source_path(spec)
    if path is not None:
        yield {
            "event": "done",
            "model": spec.name,
            "path": str(path),
            "size": model_files.disk_size(path),
            "cached": True,
        }
        return
    cmd = [sys.executable, "-m", "worker.download", "--source", spec.source, "--backend", spec.backend]
    if spec.options.cache_dir:
        cmd += ["--cache-dir", spec.options.cache_dir]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    finished = False
    try:
        async for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            finished = finished or event.get("event") in ("done", "error")
            if event.get("event") == "error":  # the hub's messages run over several lines: one line here
                event["message"] = " ".join(str(event.get("message", "")).split())
            yield {"model": spec.name, **event}
        stderr = (await proc.stderr.read()).decode(errors="replace").strip()
        code = await proc.wait()
        if not finished:
            yield {
                "model": spec.name,
                "event": "error",
                "message": f"downloader exited with code {code}: {stderr.splitlines()[-1] if stderr else ''}",
            }
    finally:
        if proc.returncode is None:  # the client went away: stop the download
            proc.kill()
            await proc.wait()
