"""``edgeship serve-updates``: the repository over HTTP (starlette + uvicorn).

``/metadata/<name>.json`` and ``/targets/<path>`` are files of the repository (nothing outside
it; range requests for resumable downloads, from starlette's FileResponse); ``/healthz`` says the
server is up and which timestamp version it serves. The files are immutable but
``timestamp.json``, which is never cached.

:func:`serve` says where it listens once the port is bound, logs one line per request (time,
client, method, path, status, bytes; at most 80 columns: a content address is shortened) on
stderr, and stops on Ctrl-C or SIGTERM after the requests in flight.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["make_app", "serve", "access_line"]

WIDTH = 80  # a log line fits a terminal of this many columns
_HEX = re.compile(r"[0-9a-f]{20,}")

_META = re.compile(r"^(?:[0-9]+\.)?(?:root|targets|snapshot|timestamp)\.json$")


def make_app(repo: str | Path) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    root = Path(repo).resolve()

    def file(path: Path, cache: bool) -> Response:
        if not path.is_file():
            return JSONResponse({"error": "not found"}, status_code=404)
        headers = {"Cache-Control": "public, max-age=31536000, immutable" if cache else "no-store"}
        return FileResponse(path, headers=headers, media_type="application/json" if path.suffix == ".json" else None)

    async def metadata(request: Request) -> Response:
        name = request.path_params["name"]
        if not _META.match(name):
            return JSONResponse({"error": "not found"}, status_code=404)
        return file(root / "metadata" / name, cache=name != "timestamp.json" and name[0].isdigit())

    async def targets(request: Request) -> Response:
        rel = request.path_params["path"]
        target = (root / "targets" / rel).resolve()
        if root / "targets" not in target.parents or any(p.startswith(".") for p in Path(rel).parts):
            return JSONResponse({"error": "not found"}, status_code=404)
        return file(target, cache=True)

    async def healthz(request: Request) -> Response:
        try:
            ts = json.loads((root / "metadata" / "timestamp.json").read_text())["signed"]
            return JSONResponse({"ok": True, "timestamp_version": ts["version"], "expires": ts["expires"]})
        except (OSError, ValueError, KeyError) as e:
            return JSONResponse({"ok": False, "error": str(e)[:200]}, status_code=503)

    return Starlette(routes=[Route("/metadata/{name}", metadata), Route("/targets/{path:path}", targets),
                             Route("/healthz", healthz)])


def _size(n: int) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def access_line(method: str, path: str, status: int | None, sent: int, client: str | None = None,
                when: float | None = None, width: int = WIDTH) -> str:
    """One request as a log line of at most ``width`` columns: ``HH:MM:SS client METHOD path status
    size``. A content address in the path (64 hex digits) is shortened to its first 8 digits, or
    left out where the line is still too long (the file name after it says which release); a path
    still too long loses its start. Escape sequences and control characters a client sent are not
    passed on."""
    from ..errors import printable

    stamp = time.strftime("%H:%M:%S", time.localtime(when if when is not None else time.time()))
    head = f"{stamp} {printable(client or '-')[:39]} {printable(method)[:8]} "
    tail = f" {status if status is not None else '-'} {_size(sent)}"
    path = printable(path).replace("\n", " ").replace("\t", " ")
    room = max(12, width - len(head) - len(tail))
    short = _HEX.sub(lambda m: m.group(0)[:8] + "…", path)
    path = short if len(short) <= room else _HEX.sub("…", path)  # the file name says which release: it stays
    if len(path) > room:  # its end names the file: the start goes
        path = "…" + path[len(path) - room + 1:]
    return head + path + tail


class _AccessLog:
    """ASGI middleware: one :func:`access_line` per HTTP request, when its response has been sent."""

    def __init__(self, app: Any, say: Callable[[str], None]) -> None:
        self.app, self.say = app, say
        self.requests = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status: list[int | None] = [None]
        sent = [0]

        async def send_logged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                sent[0] += len(message.get("body") or b"")
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            self.requests += 1
            client = scope.get("client")
            path = scope.get("path", "") + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
            self.say(access_line(scope.get("method", "?"), path, status[0], sent[0], client[0] if client else None))


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def serve(repo: str | Path, host: str = "127.0.0.1", port: int = 8080,
          say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Serve until interrupted (uvicorn finishes the requests in flight on SIGINT/SIGTERM). Says
    where it listens once the port is bound and one :func:`access_line` per request, through
    ``say`` (default: a line on stderr); returns how many requests it answered."""
    import uvicorn

    from ..serving import bind, run_on, url_of

    say = say or _stderr
    sock = bind(host, port)
    port = sock.getsockname()[1]
    url = url_of(host, port)
    app = _AccessLog(make_app(repo), say)

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                say(f"update repository {Path(repo).resolve()}")
                say(f"listening at {url} (/metadata/ /targets/ /healthz); Ctrl-C stops")

    run_on(sock, _Server(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)))
    say(f"stopped: {app.requests} request(s) answered")
    return {"ok": True, "url": url, "requests": app.requests}
