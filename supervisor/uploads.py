"""Large uploads wait on disk while a worker decodes them, not in either process's memory.

An hour of WAV is 110 MB. Read into memory, an upload was held twice for the whole
request: by the supervisor, and by the worker, which got it as one ZeroMQ frame (most of
what still grew with the audio's length in the worker's peak, see the README's "Limits on
audio"). An upload over `SPOOL_BYTES` is copied instead to a file in a directory only this
user can open, the worker is sent the file's path (`Transcribe.audio_file`) and FFmpeg
reads it from there as it decodes. Smaller uploads, nearly every request, go as they came:
as a frame, with nothing written to disk on their way.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from fastapi import UploadFile

log = logging.getLogger("supervisor")

#: Uploads larger than this are spooled to a file (about 2 minutes of 16 kHz WAV).
SPOOL_BYTES = 4 * 1024 * 1024
#: The copy to the spool file reads this much at a time.
_COPY_BYTES = 1024 * 1024


class Spool:
    """The directory of spooled uploads: one per server, removed (with anything left) at close."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="asr-uploads-"))  # in TMPDIR, mode 0700

    async def hold(self, upload: UploadFile) -> bytes | Path:
        """The upload's bytes, or for a large one the path of its copy in the spool.

        The caller owns the copy: `discard` it when the request is over.
        """
        if upload.size is None or upload.size <= SPOOL_BYTES:
            return await upload.read()
        fd, name = tempfile.mkstemp(dir=self.directory, suffix=".upload")
        path = Path(name)
        try:
            await asyncio.to_thread(_copy, upload.file, fd)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def discard(audio: bytes | Path) -> None:
    """Remove a spooled upload (nothing to do for bytes). A worker still reading it keeps
    its open file: on POSIX the data goes when the last reader closes it."""
    if isinstance(audio, Path):
        try:
            audio.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove the spooled upload %s: %s", audio, exc)


def _copy(source: BinaryIO, fd: int) -> None:
    source.seek(0)
    with open(fd, "wb") as out:
        shutil.copyfileobj(source, out, _COPY_BYTES)
