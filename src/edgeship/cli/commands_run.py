"""Commands that run what was shipped: ocr (a pipeline's release bundle on images), serve (an
artifact or a release bundle behind HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..config import OcrConfig
from .commands_deploy import _unread
from .console import err_console
from .options import JSON_OPT, options_from
from .run import run_command
from .views_ocr import print_ocr, served_text

__all__ = ["ocr", "serve_cmd"]


@options_from(OcrConfig)
def ocr(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="a pipeline's release bundle folder (edgeship deploy "
                                                             "PIPELINE.yaml writes it in OUT/release)"),
    images: list[Path] = typer.Argument(..., metavar="IMAGE", help="one or more image files"),
    as_json: bool = JSON_OPT,
    options: dict = None,  # type: ignore[assignment]
) -> None:
    """Read the text in images with a pipeline's release bundle: each line's text, score and box."""
    from .. import api

    def body():
        key = (options or {}).get("key")
        res = api.ocr_bundle(bundle, images, isolate=True, errors="report", **(options or {}))
        results = [{"image": str(img), **row} for img, row in zip(images, res["results"])]
        doc = {"ok": True, "bundle": str(bundle), "served_by": res["served_by"], "skipped": res["skipped"],
               "signature": "checked" if key else "not checked (give --key)", "results": results}
        return _unread(doc, lambda c: print_ocr(c, doc, key_checked=key is not None))

    run_command(as_json, body)


def _ready_line(app: Any, host: str, port: int, max_batch: int, max_wait_ms: float) -> None:
    """What ``edgeship serve`` says once it listens: what it serves, where, its routes."""
    info = app.state.model.info()
    where = f"http://{host}:{port}"
    if "/v1/stream" in info["routes"] or "/v1/embed" in info["routes"]:
        what = f"{info['model']} {info.get('version') or ''}".strip()
        route = info["routes"][0]
        how = (f"audio as it arrives: audio/wav, audio/L16;rate={info.get('sample_rate')}; NDJSON back"
               if route == "/v1/stream" else '{"texts": [...]} as JSON')
        line = f"serving {what} ({info['task']}: {info['served_by']}) at {where} — POST {route} ({how}); GET /healthz, /metrics"
    elif "/v1/ocr" in info["routes"]:
        what = f"{info['model']} {info.get('version') or ''}".strip()
        line = (f"serving {what} ({info['task']} pipeline: {served_text(info['served_by'])}) at {where} — POST /v1/ocr"
                " (image bytes or -F file=@page.png); GET /healthz, /metrics; one page at a time")
    else:
        m = app.state.model.artifact
        line = (f"serving {m.name} ({m.target} {m.precision}) at {where} — POST /v1/classify (image bytes or "
                "-F file=@photo.jpg), /v1/infer (tensors); GET /healthz, /metrics; batching "
                + (f"up to {max_batch} within {max_wait_ms:g} ms" if max_batch > 1 else "off"))
    err_console.print(line + "; Ctrl-C stops after the requests in flight", highlight=False, markup=False,
                      soft_wrap=True)
    for s in info.get("skipped") or []:
        stage = f" ({s['stage']})" if s.get("stage") else ""
        err_console.print(f"skipped {s['artifact']}{stage}: {s['reason']}", highlight=False, markup=False, soft_wrap=True)


def serve_cmd(
    artifact: Path = typer.Argument(..., metavar="ARTIFACT", help="an artifact folder (or a model file), or a release "
                                                                 "bundle folder (a classifier's, or a pipeline's)"),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="address to listen on"),
    port: int = typer.Option(8000, "--port", metavar="N", min=0, max=65535, help="port to listen on"),
    max_batch: int = typer.Option(1, "--max-batch", metavar="B", min=1, max=1024,
                                  help="stack up to B concurrent requests into one model call (1: no batching)"),
    max_wait_ms: float = typer.Option(2.0, "--max-wait-ms", metavar="W", min=0, max=10_000,
                                      help="how long the first request of a batch waits for others"),
    max_body_mb: float = typer.Option(10.0, "--max-body-mb", metavar="MB", min=0.001,
                                      help="largest request body taken (413 above it)"),
    threads: int = typer.Option(1, "--threads", metavar="N", min=1, max=256, help="the runtime's threads per call"),
) -> None:
    """Serve an artifact or a release bundle over HTTP: POST /v1/classify (an image), /v1/infer (tensors), /v1/ocr (a pipeline's); /healthz, /metrics."""
    from .. import api

    def body():
        from ..serving import ServeConfig

        cfg = ServeConfig(max_batch=max_batch, max_wait_ms=max_wait_ms, max_body_bytes=int(max_body_mb * 1e6),
                          threads=threads)
        try:
            api.serve(artifact, host=host, port=port, cfg=cfg,
                      on_ready=lambda app: _ready_line(app, host, port, max_batch, max_wait_ms))
        except KeyboardInterrupt:  # before the server took over Ctrl-C (loading the model): nothing was served
            raise KeyboardInterrupt("interrupted before the server started: no request was taken") from None
        err_console.print("stopped: the requests in flight were answered", highlight=False, markup=False)
        return {"ok": True}, None

    run_command(False, body)
