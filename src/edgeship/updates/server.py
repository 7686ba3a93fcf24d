"""``edgeship serve-updates``: the repository over HTTP (starlette + uvicorn).

``/metadata/<name>.json`` and ``/targets/<path>`` are files of the repository (nothing outside
it; range requests for resumable downloads, from starlette's FileResponse); ``/healthz`` says the
server is up and which timestamp version it serves. The files are immutable but
``timestamp.json``, which is never cached.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["make_app", "serve"]

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


def serve(repo: str | Path, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve until interrupted (uvicorn finishes the requests in flight on SIGINT/SIGTERM)."""
    import uvicorn

    uvicorn.run(make_app(repo), host=host, port=port, log_level="warning")
