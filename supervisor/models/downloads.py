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

from supervisor.config import ModelSpec
from supervisor.models import files as model_files


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
