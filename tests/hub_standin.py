"""A loopback stand-in for the Hugging Face Hub, for tests that exercise real model downloads.

The tests have no internet access, yet the code under test fetches models with the *real*
`huggingface_hub.snapshot_download` / `hf_hub_download` (directly, or through
`faster_whisper.utils.download_model`). Rather than mocking the client, this module serves a
handful of local directories over HTTP with the same endpoints and headers the Hub uses, so the
client's whole code path runs for real: repo-info call, tree listing, per-file HEAD metadata,
streamed GET into the cache's blobs/snapshots layout, progress bars, the refs file and the
on-disk tree cache that later makes `local_files_only=True` work.

Written against huggingface_hub 2.4.0 (httpx2 transport). Endpoints served, model repos only:

* ``GET /api/models/{repo_id}`` and ``GET /api/models/{repo_id}/revision/{revision}``:
  repo info JSON (``id``, ``modelId``, ``sha``, ``siblings`` ...). `snapshot_download` takes the
  commit ``sha`` from it.
* ``GET /api/models/{repo_id}/tree/{revision}[/{path}]?recursive=..&expand=..``: the tree
  listing (``type``/``oid``/``size``/``path``, plus ``lfs`` for large files). 2.x lists the
  files to download from here, not from ``siblings``.
* ``HEAD`` and ``GET /{repo_id}/resolve/{revision}/{filename}``: the file, with ``X-Repo-Commit``,
  a quoted ``ETag``, ``Content-Length``, ``Accept-Ranges`` and, for LFS-style files,
  ``X-Linked-Etag``/``X-Linked-Size``. ``GET`` honours a single ``Range`` (the client sends one
  only to resume an interrupted download).

``{revision}`` may be ``main`` or the repo's (synthetic, deterministic) commit hash. Unknown repos,
revisions and files get a 404 JSON body with ``X-Error-Code`` ``RepoNotFound`` /
``RevisionNotFound`` / ``EntryNotFound``, which is what the client maps to its typed errors.
Anything else (including ``/api/agent-harnesses``, see below) is a plain 404.

Environment for the process that downloads (``huggingface_hub.constants`` reads these at
import time, so set them before the import, i.e. in a subprocess's ``env``):

* ``HF_ENDPOINT=<HubStandIn.url>``: where the client sends every request.
* ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` unset (either one set blocks all requests).
* ``HF_HUB_DISABLE_TELEMETRY=1``: otherwise building the user-agent fetches
  ``GET /api/agent-harnesses`` (at most daily, cached under ``HF_HOME``), an extra request that
  would break "this run made no HTTP request" assertions.
* ``HF_HOME=<tmp dir>`` (recommended): keeps a developer's token and caches out of the test.
* ``HF_HUB_DISABLE_XET=1`` (belt and braces): the client downloads through Xet only when a HEAD
  response carries ``X-Xet-Hash`` or the tree listing has ``xetHash``. This server sends
  neither, so plain HTTP is used even with ``hf_xet`` installed; the variable also rules
  Xet out if that ever changes. ``hf_transfer`` is no longer used by 2.x at all.
* No ``HTTP(S)_PROXY``/``ALL_PROXY`` pointing elsewhere (or ``NO_PROXY=127.0.0.1``): httpx2
  honours proxy variables, and a proxy would not reach this loopback server.

Files are hashed once in `start()`; later changes to the served directories are not picked up.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

# Files at least this large are announced as Git LFS files (sha256 ETag, `lfs` tree entry,
# `X-Linked-*` headers), the way the Hub serves weights; smaller ones as plain git blobs.
LFS_THRESHOLD = 1 << 20
_LFS_POINTER_SIZE = 134  # size of a real LFS pointer file; only reported, never served
_CHUNK = 1 << 20
_LAST_MODIFIED = "2024-01-01T00:00:00.000Z"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class _File:
    """One served file and the identifiers the Hub would report for it."""

    path: str  # POSIX path inside the repo
    source: Path
    size: int
    git_oid: str  # git blob sha1, the Hub's `oid` / ETag for non-LFS files
    sha256: str | None  # set for LFS-style files: their ETag and `lfs.oid`

    @property
    def etag(self) -> str:
        return self.sha256 or self.git_oid


@dataclass(frozen=True)
class _Repo:
    """A snapshot of one served directory: its files and a commit hash derived from them."""

    repo_id: str
    files: dict[str, _File]
    dirs: frozenset[str]  # every directory path in the repo, "" excluded
    commit: str


def _hash_file(path: Path, size: int) -> tuple[str, str]:
    """Git blob sha1 and sha256 of a file in one pass (the two ids the Hub exposes)."""
    git = hashlib.sha1(b"blob %d\0" % size)
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            git.update(chunk)
            sha.update(chunk)
    return git.hexdigest(), sha.hexdigest()


def _dir_oid(repo: _Repo, path: str) -> str:
    """A stable stand-in for a git tree id (only reported in listings, never checked)."""
    return hashlib.sha1(f"{repo.commit}:{path}".encode()).hexdigest()


def _index(repo_id: str, root: Path) -> _Repo:
    if not root.is_dir():
        raise FileNotFoundError(f"{repo_id}: {root} is not a directory")
    files: dict[str, _File] = {}
    dirs: set[str] = set()
    for source in sorted(root.rglob("*")):
        rel = source.relative_to(root)
        if ".git" in rel.parts or not source.is_file():
            continue
        size = source.stat().st_size
        git_oid, sha256 = _hash_file(source, size)
        path = rel.as_posix()
        files[path] = _File(path, source, size, git_oid, sha256 if size >= LFS_THRESHOLD else None)
        dirs.update(p.as_posix() for p in rel.parents if p.as_posix() != ".")
    # Stable across runs for the same content, so a cache filled by one test run stays valid.
    commit = hashlib.sha1("\n".join(f"{f.path}\0{f.git_oid}" for f in files.values()).encode()).hexdigest()
    return _Repo(repo_id, files, frozenset(dirs), commit)


class HubStandIn:
    """Serves `repos` (repo_id -> directory) on 127.0.0.1 the way the Hub serves model repos.

    `requests` lists ``(method, path)`` for every request received, where path is the raw
    request target including any query string, so a test can assert that a cached second run
    made no HTTP request at all. Usable as a context manager (start/stop).
    """

    def __init__(self, repos: dict[str, Path]) -> None:
        self._sources = {repo_id: Path(path) for repo_id, path in repos.items()}
        self._repos: dict[str, _Repo] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []

    def start(self) -> None:
        """Index the directories, bind a free loopback port and serve from a daemon thread."""
        if self._server is not None:
            raise RuntimeError("HubStandIn already started")
        self._repos = {repo_id: _index(repo_id, root) for repo_id, root in self._sources.items()}
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True  # a client holding a keep-alive connection can't block exit
        server.standin = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="hub-standin", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def url(self) -> str:
        """Base URL to put in HF_ENDPOINT, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("HubStandIn not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def commit(self, repo_id: str) -> str:
        """The commit hash served for `repo_id` (the snapshot folder name in the HF cache)."""
        return self._repos[repo_id].commit

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def _match(self, rest: str, sep: str) -> tuple[_Repo | None, str | None]:
        """Split ``{repo_id}{sep}{tail}`` against the served repo ids (longest id first).

        Returns (repo, tail); tail is None when no served repo matches.
        """
        for repo_id in sorted(self._repos, key=len, reverse=True):
            if rest.startswith(repo_id + sep):
                return self._repos[repo_id], rest[len(repo_id) + len(sep) :]
        return None, None


class _Handler(BaseHTTPRequestHandler):
    """Routes one request; HTTP/1.1 with exact Content-Length so httpx2 can keep connections."""

    protocol_version = "HTTP/1.1"
    server_version = "HubStandIn/1"

    @property
    def standin(self) -> HubStandIn:
        return self.server.standin  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean; `HubStandIn.requests` is the log

    # -- dispatch ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch(body=True)

    def do_HEAD(self) -> None:
        self._dispatch(body=False)

    def _unsupported(self) -> None:
        self.standin._record(self.command, self.path)
        self.close_connection = True  # the request body, if any, is left unread
        self._error(405, None, f"{self.command} is not supported by the Hub stand-in")

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _unsupported

    def _dispatch(self, body: bool) -> None:
        self.standin._record(self.command, self.path)
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        try:
            if path.startswith("/api/models/"):
                self._api(path[len("/api/models/") :], query, body)
            elif "/resolve/" in path:
                self._resolve(path[1:], body)
            else:
                self._error(404, None, f"Not Found: {path}", body=body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- /api/models ------------------------------------------------------------------------

    def _api(self, rest: str, query: dict[str, list[str]], body: bool) -> None:
        repo, tail = self.standin._repos.get(rest.rstrip("/")), ""
        if repo is None:
            repo, tail = self.standin._match(rest, "/")
        if repo is None or tail is None:
            self._error(404, "RepoNotFound", "Repository not found", body=body)
            return
        if tail == "":
            self._json(self._repo_info(repo), body)
            return
        kind, _, rev_and_path = tail.partition("/")
        revision, _, sub = rev_and_path.partition("/")
        if kind not in ("revision", "tree") or not revision:
            self._error(404, None, f"Not Found: {self.path}", body=body)
            return
        if not self._check_revision(repo, unquote(revision), body):
            return
        if kind == "revision":
            self._json(self._repo_info(repo), body)
        else:
            recursive = query.get("recursive", ["false"])[-1].lower() in ("1", "true")
            self._tree(repo, unquote(sub).strip("/"), recursive, body)

    def _repo_info(self, repo: _Repo) -> dict[str, object]:
        siblings = []
        for f in repo.files.values():
            sibling: dict[str, object] = {"rfilename": f.path, "size": f.size, "blobId": f.git_oid}
            if f.sha256:
                sibling["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": _LFS_POINTER_SIZE}
            siblings.append(sibling)
        return {
            "_id": repo.commit[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
            "sha": repo.commit,
            "lastModified": _LAST_MODIFIED,
            "createdAt": _LAST_MODIFIED,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "library_name": "ctranslate2",
            "siblings": siblings,
            "usedStorage": sum(f.size for f in repo.files.values()),
        }

    def _tree(self, repo: _Repo, sub: str, recursive: bool, body: bool) -> None:
        if sub and sub not in repo.dirs:
            self._error(404, "EntryNotFound", f"{sub} does not exist on {repo.commit}", repo=repo, body=body)
            return
        prefix = f"{sub}/" if sub else ""

        def wanted(p: str) -> bool:
            return p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])

        entries: list[dict[str, object]] = [
            {"type": "directory", "oid": _dir_oid(repo, d), "size": 0, "path": d}
            for d in sorted(repo.dirs)
            if wanted(d)
        ]
        for f in repo.files.values():
            if wanted(f.path):
                entry: dict[str, object] = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
                if f.sha256:
                    entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": _LFS_POINTER_SIZE}
                entries.append(entry)
        self._json(entries, body)

    # -- /{repo_id}/resolve/{revision}/{filename} -------------------------------------------

    def _resolve(self, rest: str, body: bool) -> None:
        repo, tail = self.standin._match(rest, "/resolve/")
        if repo is None or tail is None:
            self._error(404, "RepoNotFound", "Repository not found", body=body)
            return
        revision, _, filename = tail.partition("/")
        if not self._check_revision(repo, unquote(revision), body):
            return
        f = repo.files.get(unquote(filename))
        if f is None:
            self._error(404, "EntryNotFound", f"{unquote(filename)} does not exist", repo=repo, body=body)
            return

        start, end, status = 0, f.size - 1, 200
        header = self.headers.get("Range")
        if body and header:  # HEAD always describes the whole file, as on the Hub
            m = _RANGE.match(header.strip())
            if m and (m[1] or m[2]):
                if m[1]:
                    start = int(m[1])
                    end = min(int(m[2]), f.size - 1) if m[2] else f.size - 1
                else:  # suffix range: the last N bytes
                    start = max(f.size - int(m[2]), 0)
                if start >= f.size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{f.size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            # anything else (multi-range, junk): ignore it and send the whole file, as HTTP allows

        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{f.etag}"')
        self.send_header("X-Repo-Commit", repo.commit)
        if f.sha256:
            self.send_header("X-Linked-Etag", f'"{f.sha256}"')
            self.send_header("X-Linked-Size", str(f.size))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        self.end_headers()
        if not body:
            return
        remaining = end - start + 1
        with f.source.open("rb") as src:
            src.seek(start)
            while remaining > 0 and (chunk := src.read(min(_CHUNK, remaining))):
                self.wfile.write(chunk)
                remaining -= len(chunk)

    # -- helpers ----------------------------------------------------------------------------

    def _check_revision(self, repo: _Repo, revision: str, body: bool) -> bool:
        if revision in ("main", repo.commit):
            return True
        self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", body=body)
        return False

    def _json(self, payload: object, body: bool) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _error(self, status: int, code: str | None, message: str, repo: _Repo | None = None, body: bool = True) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if code:
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
        if repo is not None:  # lets the client cache the file's absence (.no_exist)
            self.send_header("X-Repo-Commit", repo.commit)
        self.end_headers()
        if body:
            self.wfile.write(data)
