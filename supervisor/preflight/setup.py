"""The config's needs: each configured model's files, and the ports the server would listen on.

A model's source is judged as the server's start-up judges it (`check_source`): what cannot
work fails, a hub model not in the cache yet is a warning (its first request downloads it).
A port is free when it can be bound as the server binds it; one in use is asked who holds
it: a running asr-supervisor answers on it (then it is no fault), anything else is a failure.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from urllib.parse import urlparse

from supervisor.config import ConfigError, ModelSpec, Settings, wyoming_uri
from supervisor.models import files as model_files
from supervisor.models.sources import check_source
from supervisor.preflight.check import Check

_ASK_TIMEOUT_S = 1.0
_MB = 1_048_576


def checks(settings: Settings) -> list[Check]:
    return [*map(model_check, settings.models.values()), *port_checks(settings)]


def model_check(spec: ModelSpec) -> Check:
    subject = f"{spec.name} ({spec.backend}, {spec.options.device})"
    try:
        warning = check_source(spec)
    except ConfigError as exc:
        return Check("model", subject, "fail", str(exc), f'fix models."{spec.name}".source in the config')
    if warning is not None:
        return Check(
            "model",
            subject,
            "warn",
            f"{spec.source!r} is not downloaded yet: its first request fetches it",
            f"asrctl models download {spec.name}, or asr-supervisor --download-only",
        )
    path = model_files.installed_path(spec)
    size = f", {model_files.disk_size(path) / _MB:.0f} MB" if path is not None else ""
    return Check("model", subject, "ok", f"present at {path}{size}")


def port_checks(settings: Settings) -> list[Check]:
    server = settings.server
    rows = [port_check("HTTP", server.host, server.port, _answers_http)]
    if server.wyoming:
        uri = urlparse(wyoming_uri(server))
        if uri.scheme == "tcp" and uri.hostname and uri.port:
            rows.append(port_check("Wyoming", uri.hostname, uri.port, _answers_wyoming))
        else:
            rows.append(Check("port", "Wyoming", "note", f"listens on {wyoming_uri(server)} (not a TCP port)"))
    return rows


def port_check(what: str, host: str, port: int, ours: Callable[[str, int], bool]) -> Check:
    subject = f"{what} {host}:{port}"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return Check("port", subject, "fail", f"cannot be bound: {exc.strerror or exc}", _port_fix(what))
        else:
            return Check("port", subject, "ok", "free")
    if ours(_reachable(host), port):
        return Check("port", subject, "ok", "in use by a running asr-supervisor")
    return Check("port", subject, "fail", "in use by another program", _port_fix(what))


def _port_fix(what: str) -> str:
    key = "server.port" if what == "HTTP" else "server.wyoming_port"
    return f"stop the program that holds it, or set {key} (or --{key.split('.')[1].replace('_', '-')})"


def _reachable(host: str) -> str:
    """Where to ask a server listening on `host`: a wildcard address is reached on loopback."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _answers_http(host: str, port: int) -> bool:
    """Whether asr-supervisor's liveness answer comes from `host:port` (http or https)."""
    import httpx  # here: importing httpx pulls in its command line's rich and pygments, megabytes the server never needs

    where = f"[{host}]" if ":" in host else host
    for scheme in ("http", "https"):
        try:
            answer = httpx.get(f"{scheme}://{where}:{port}/health/live", timeout=_ASK_TIMEOUT_S, verify=False)
            return answer.status_code == 200 and "pid" in answer.json()
        except (httpx.HTTPError, ValueError):
            continue
    return False


def _answers_wyoming(host: str, port: int) -> bool:
    """Whether a Wyoming `describe` on `host:port` is answered with asr-supervisor's info."""
    try:
        with socket.create_connection((host, port), timeout=_ASK_TIMEOUT_S) as conn:
            conn.sendall(b'{"type": "describe"}\n')
            answer = b""
            while len(answer) < 65536 and b"asr-supervisor" not in answer:
                chunk = conn.recv(8192)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return False
    return b"asr-supervisor" in answer
