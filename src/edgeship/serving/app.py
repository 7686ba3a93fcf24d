"""``edgeship serve ARTIFACT``: one artifact behind HTTP, as a cloud deployment of it would run.

starlette + uvicorn. Routes:

``POST /v1/classify``  the image's bytes as an app sends them (``image/jpeg``, ``image/png``, ...),
                      or a form upload (``multipart/form-data``, ``curl -F file=@photo.jpg``: the
                      part named ``file`` or ``image``, else the first file part): the artifact's
                      own preprocessing, top-k labels back (JSON)
``POST /v1/infer``     tensors: JSON ``{"inputs": {NAME: nested lists}}`` (or a list in the model's
                      input order), or one ``.npy`` (``application/x-npy``) for a single-input model;
                      the outputs back as JSON lists
``GET /healthz``       200 and the artifact once the model is loaded
``GET /metrics``       Prometheus text: requests by route and status, latency, queue wait, batch
                      sizes, requests in flight and queued

Bad uploads are 4xx with a reason, never a 500: a body over the size limit (413), a content type
the route does not take (415), bytes that are not an image, JSON that is not JSON (400), a tensor
of the wrong shape or type (422); an upload that is not an image is named by what arrived (its
file name, size and content type). The model runs on one worker thread; with ``max_batch`` > 1,
requests that arrive within ``max_wait_ms`` of the first are stacked along the batch axis and run
as one call (when every input's first axis is dynamic). uvicorn stops on SIGINT/SIGTERM after the
requests in flight are answered.

Multipart bodies are parsed with python-multipart (the parser starlette's own forms use) when it is
installed, else with the standard library's MIME parser; either way only after the whole body is
read within ``max_body_bytes``, in memory, with no temporary files.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgeshipError, FormatError, InputError, UnsupportedError, UsageError, printable
from .fidelity import softmax
from .readers import parse_json
from .readers.arrays import parse_npy

__all__ = ["ServeConfig", "make_app", "serve", "bind", "url_of", "IMAGE_TYPES"]

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff",
               "application/octet-stream")
JSON_TYPES = ("application/json",)
NPY_TYPES = ("application/x-npy", "application/octet-stream")
FORM_TYPES = ("multipart/form-data",)
#: the form fields an image is looked for under, before the first file part
IMAGE_FIELDS = ("file", "image")
MAX_PARTS = 64
_REPR = re.compile(r"<[A-Za-z_][\w.]* object at 0x[0-9a-fA-F]+>")


@dataclass(frozen=True)
class ServeConfig:
    max_batch: int = 1
    max_wait_ms: float = 2.0
    max_body_bytes: int = 10 << 20
    max_elements: int = 50_000_000  # per request, over all its tensors
    threads: int = 1
    top_k: int = 5


class _Reject(Exception):
    """A request the server refuses: its status and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class _Job:
    feeds: dict[str, np.ndarray]
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class _Model:
    """The artifact loaded once; one call at a time (the runtime's own threads do the parallel work)."""

    def __init__(self, path: Path, threads: int) -> None:
        from .targets import load_artifact, runner_for

        self.artifact = load_artifact(path)
        self.runner = runner_for(self.artifact, threads=threads)
        self.inputs = self.runner.inputs
        self.batchable = all(0 in s.dynamic_axes for s in self.inputs)

    def run_many(self, jobs: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
        """One call for ``jobs`` stacked on the batch axis (each a batch of 1 or more), split back."""
        if len(jobs) == 1 or not self.batchable:
            return [self.runner.run(f) for f in jobs]
        sizes = [len(next(iter(f.values()))) for f in jobs]
        stacked = {s.name: np.concatenate([f[s.name] for f in jobs]) for s in self.inputs}
        outs = self.runner.run(stacked)
        cuts = np.cumsum(sizes)[:-1]
        split = [np.split(o, cuts) if o.ndim and len(o) == sum(sizes) else [o] * len(jobs) for o in outs]
        return [[s[i] for s in split] for i in range(len(jobs))]


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("edgeship_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("edgeship_request_seconds", "time from request to response (successful requests)",
                                 ["route"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.queue_wait = Histogram("edgeship_queue_wait_seconds", "time a request waited for the model",
                                    registry=self.registry,
                                    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5))
        self.inference = Histogram("edgeship_inference_seconds", "time of one model call (one batch)",
                                   registry=self.registry,
                                   buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
        self.batch = Histogram("edgeship_batch_size", "requests per model call", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.in_flight = Gauge("edgeship_requests_in_flight", "requests being answered", registry=self.registry)
        self.queued = Gauge("edgeship_queue_depth", "requests waiting for the model", registry=self.registry)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _Batcher:
    """Requests queue here; one task takes up to ``max_batch`` that arrive within ``max_wait_ms`` of
    the first and runs them as one call on the model's thread."""

    def __init__(self, model: _Model, cfg: ServeConfig, metrics: _Metrics) -> None:
        self.model, self.cfg, self.metrics = model, cfg, metrics
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def submit(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        job = _Job(feeds, asyncio.get_running_loop().create_future())
        self.metrics.queued.inc()
        await self.queue.put(job)
        return await job.future

    async def run(self) -> None:
        import concurrent.futures as cf

        pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeship-model")
        loop = asyncio.get_running_loop()
        try:
            while True:
                batch = [await self.queue.get()]
                size = self.rows(batch[0])
                deadline = loop.time() + self.cfg.max_wait_ms / 1e3
                while self.cfg.max_batch > 1 and self.model.batchable and size < self.cfg.max_batch:
                    wait = deadline - loop.time()
                    if wait <= 0 and self.queue.empty():
                        break
                    try:
                        job = self.queue.get_nowait() if not self.queue.empty() else \
                            await asyncio.wait_for(self.queue.get(), wait)
                    except TimeoutError:
                        break
                    if size + self.rows(job) > self.cfg.max_batch:
                        await self.run_batch(pool, batch)  # full: run it, start the next with this one
                        batch, size = [], 0
                        deadline = loop.time() + self.cfg.max_wait_ms / 1e3
                    batch.append(job)
                    size += self.rows(job)
                await self.run_batch(pool, batch)
        finally:
            pool.shutdown(wait=False)

    @staticmethod
    def rows(job: _Job) -> int:
        return len(next(iter(job.feeds.values()))) if job.feeds else 1

    async def run_batch(self, pool: Any, batch: list[_Job]) -> None:
        if not batch:
            return
        now = time.perf_counter()
        for j in batch:
            self.metrics.queued.dec()
            self.metrics.queue_wait.observe(now - j.queued)
        self.metrics.batch.observe(len(batch))
        t0 = time.perf_counter()
        try:
            outs = await asyncio.get_running_loop().run_in_executor(pool, self.model.run_many, [j.feeds for j in batch])
        except Exception as e:  # noqa: BLE001 - every request of the batch gets the error
            for j in batch:
                if not j.future.done():
                    j.future.set_exception(e)
            return
        self.metrics.inference.observe(time.perf_counter() - t0)
        for j, o in zip(batch, outs):
            if not j.future.done():
                j.future.set_result(o)


async def _body(request: Any, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Reject(413, f"the body is {int(declared)} bytes; this server takes at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Reject(413, f"the body is over {limit} bytes, the most this server takes")
        chunks.append(chunk)
    if not size:
        raise _Reject(400, "the body is empty")
    return b"".join(chunks)


def _content_type(request: Any, allowed: tuple[str, ...], what: str) -> str:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in allowed:
        raw = [t for t in allowed if t not in FORM_TYPES]
        form = [t for t in allowed if t in FORM_TYPES]
        raise _Reject(415, f"content type {ctype or '(none)'!r}: send {what} as {', '.join(raw)}"
                           + (f", or as a form upload ({', '.join(form)}, e.g. curl -F file=@photo.jpg)" if form else ""))
    return ctype


@dataclass
class _Upload:
    """What a request uploaded: its bytes, and the form part it came in (None for a raw body)."""

    data: bytes
    field: str | None
    filename: str | None
    ctype: str | None

    def describe(self) -> str:
        """The upload as an error message names it: never a Python object's repr."""

        ctype = printable(self.ctype or "none")[:80]
        if self.field is None:
            return f"the uploaded body ({len(self.data):,} bytes, Content-Type {ctype})"
        name = f"file {printable(self.filename)[:120]!r}" if self.filename else f"field {printable(self.field)[:60]!r}"
        part = f"form field {printable(self.field)[:60]!r}, " if self.filename and self.field else ""
        return f"the uploaded {name} ({part}{len(self.data):,} bytes, Content-Type {ctype})"


def _header_options(value: bytes | str) -> tuple[str, dict[str, str]]:
    """A header's value and its ``;`` parameters (``form-data; name="file"; filename="a.jpg"``)."""
    from email.message import Message
    from email.utils import collapse_rfc2231_value

    text = value.decode("latin-1") if isinstance(value, bytes) else value
    m = Message()
    m["content-type"] = text  # the standard library's RFC 2045/2231 parameter parsing
    params = {k.lower(): str(collapse_rfc2231_value(v)) for k, v in (m.get_params() or [])[1:]}
    main = text.split(";", 1)[0].strip().lower()
    return main, params


def _parts_python_multipart(boundary: bytes, body: bytes) -> list[tuple[list[tuple[bytes, bytes]], bytes]]:
    """The parts of a multipart body as (headers, data), with python-multipart's parser."""
    import logging

    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser

    log = logging.getLogger("python_multipart")
    if not log.handlers:  # its warning per malformed body is the 400's reason; not a line on our stderr
        log.addHandler(logging.NullHandler())
    parts: list[tuple[list[tuple[bytes, bytes]], bytes]] = []
    cur: dict[str, Any] = {}

    def begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise _Reject(400, f"the form has more than {MAX_PARTS} parts")
        cur.update(headers=[], data=bytearray(), name=b"", value=b"")

    def header_field(data: bytes, start: int, end: int) -> None:
        cur["name"] += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        cur["value"] += data[start:end]

    def header_end() -> None:
        cur["headers"].append((cur["name"].lower(), cur["value"]))
        cur["name"], cur["value"] = b"", b""

    def part_data(data: bytes, start: int, end: int) -> None:
        cur["data"] += data[start:end]

    def end() -> None:
        parts.append((cur["headers"], bytes(cur["data"])))

    callbacks = {"on_part_begin": begin, "on_header_field": header_field, "on_header_value": header_value,
                 "on_header_end": header_end, "on_part_data": part_data, "on_part_end": end}
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except FormParserError as e:
        raise _Reject(400, f"the body is not a well-formed multipart/form-data upload: {str(e)[:200]}") from None
    return parts


def _parts_stdlib(ctype_header: str, body: bytes) -> list[tuple[list[tuple[bytes, bytes]], bytes]]:
    """The parts of a multipart body as (headers, data), with the standard library's MIME parser
    (where python-multipart is not installed)."""
    import email.parser
    import email.policy

    head = f"Content-Type: {ctype_header}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + body)
    if not msg.is_multipart() or msg.defects:
        why = "; ".join(type(d).__name__ for d in msg.defects) or "no parts"
        raise _Reject(400, f"the body is not a well-formed multipart/form-data upload ({why})")
    out = []
    for part in msg.get_payload():
        if len(out) >= MAX_PARTS:
            raise _Reject(400, f"the form has more than {MAX_PARTS} parts")
        headers = [(k.lower().encode("latin-1", "replace"), str(v).encode("latin-1", "replace")) for k, v in part.items()]
        data = part.get_payload(decode=True)
        out.append((headers, data if isinstance(data, bytes) else b""))
    return out


def _form_image(ctype_header: str, body: bytes) -> _Upload:
    """The image part of a ``multipart/form-data`` body: the part named ``file`` or ``image``,
    else the first file part (one with a file name); 400 when there is none."""
    _, params = _header_options(ctype_header)
    boundary = params.get("boundary")
    if not boundary:
        raise _Reject(400, "the multipart/form-data upload has no boundary in its Content-Type")
    try:
        import python_multipart  # noqa: F401 - starlette's form parser: used when installed
    except ImportError:
        raw = _parts_stdlib(ctype_header, body)
    else:
        raw = _parts_python_multipart(boundary.encode("latin-1", "replace"), body)
    uploads = []
    for headers, data in raw:
        h = {k: v for k, v in reversed(headers)}  # the first of a repeated header
        _, disp = _header_options(h.get(b"content-disposition", b"form-data"))
        ctype = h.get(b"content-type")
        uploads.append(_Upload(data, disp.get("name", ""), disp.get("filename"),
                               ctype.decode("latin-1").split(";")[0].strip().lower() if ctype else None))
    named = [u for u in uploads if (u.field or "").lower() in IMAGE_FIELDS]
    files = [u for u in uploads if u.filename is not None]
    chosen = (named or files or [None])[0]
    if chosen is None:

        fields = ", ".join(repr(printable(u.field or ""))[:40] for u in uploads[:8]) or "none"
        raise _Reject(400, f"the form upload has no image part (fields: {fields}): send the image as a file part, "
                           "e.g. curl -F file=@photo.jpg")
    if not chosen.data:
        raise _Reject(400, f"{chosen.describe()} is empty")
    return chosen


def _tensors(model: _Model, body: bytes, ctype: str, max_elements: int) -> dict[str, np.ndarray]:
    """The request's tensors, named, typed and shaped as the model takes them (else 400/413/422)."""
    specs = model.inputs
    if ctype in NPY_TYPES:
        if len(specs) != 1:
            raise _Reject(415, f"the model takes {len(specs)} inputs: send them as JSON {{\"inputs\": {{name: ...}}}}")
        try:
            arrays = {specs[0].name: parse_npy(bytes(body), "the body", scalar=True)}
        except EdgeshipError as e:
            raise _Reject(400, f"the body is not a .npy array of numbers: {e.message[:200]}") from None
    else:
        try:
            doc = parse_json(bytes(body).decode("utf-8"), "the body")
        except UnicodeDecodeError as e:
            raise _Reject(400, f"the body is not UTF-8 JSON (byte {e.start})") from None
        except EdgeshipError as e:
            raise _Reject(400, f"the body is not JSON: {e.message[:200]}") from None
        given = doc.get("inputs") if isinstance(doc, dict) else None
        if isinstance(given, list) and len(specs) == 1 and given and not isinstance(given[0], list | dict):
            given = [given]
        if isinstance(given, list):
            if len(given) != len(specs):
                raise _Reject(422, f"the model takes {len(specs)} input(s) ({', '.join(s.name for s in specs)}), "
                                   f"got {len(given)}")
            given = {s.name: v for s, v in zip(specs, given)}
        if not isinstance(given, dict):
            raise _Reject(422, 'send {"inputs": {NAME: nested lists}} (or a list in input order); inputs: '
                               + ", ".join(f"{s.name} {list(s.shape)} {s.dtype}" for s in specs))
        unknown = [k for k in given if k not in {s.name for s in specs}]
        if unknown:
            raise _Reject(422, f"no input named {unknown[0]!r}; the model takes {', '.join(s.name for s in specs)}")
        arrays = {}
        for s in specs:
            if s.name not in given:
                raise _Reject(422, f"input {s.name!r} is missing")
            try:
                arrays[s.name] = np.asarray(given[s.name], dtype=np.dtype(s.dtype))
            except (ValueError, TypeError, OverflowError) as e:
                raise _Reject(422, f"input {s.name!r} is not a {s.dtype} tensor: {str(e)[:200]}") from None
    total = sum(a.size for a in arrays.values())
    if total > max_elements:
        raise _Reject(413, f"{total} values in one request; this server takes at most {max_elements}")
    for s in specs:
        a = arrays[s.name]
        if a.dtype != np.dtype(s.dtype):
            try:
                arrays[s.name] = a = a.astype(s.dtype, casting="same_kind")
            except TypeError:
                raise _Reject(422, f"input {s.name!r} is {a.dtype}, the model takes {s.dtype}") from None
        if not s.fits(a.shape) or (a.ndim and a.shape[0] == 0):
            raise _Reject(422, f"input {s.name!r} has shape {list(a.shape)}, the model takes {list(s.shape)}")
    return arrays


def make_app(artifact: str | Path, cfg: ServeConfig | None = None) -> Any:
    """The ASGI app serving ``artifact`` (its folder, or a model file)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    cfg = cfg or ServeConfig()
    model = _Model(Path(artifact), cfg.threads)
    metrics = _Metrics()
    batcher = _Batcher(model, cfg, metrics)
    art = model.artifact
    labels = art.labels or ()

    def refuse(route: str, status: int, reason: str) -> Response:
        metrics.requests.labels(route, str(status)).inc()
        return JSONResponse({"error": reason, "status": status}, status_code=status)

    def answer(route: str, body: dict[str, Any], t0: float) -> Response:
        metrics.requests.labels(route, "200").inc()
        metrics.latency.labels(route).observe(time.perf_counter() - t0)
        return JSONResponse(body)

    async def handle(route: str, request: Any, work: Any) -> Response:
        t0 = time.perf_counter()
        metrics.in_flight.inc()
        try:
            return answer(route, await work(request), t0)
        except _Reject as r:
            return refuse(route, r.status, r.reason)
        except EdgeshipError as e:  # the runtime refused the input: the request's fault
            return refuse(route, 422, e.message)
        except Exception as e:  # noqa: BLE001 - the model failed on a well-formed request: say so
            return refuse(route, 500, f"the model failed: {type(e).__name__}: {str(e)[:200]}")
        finally:
            metrics.in_flight.dec()

    async def classify_work(request: Any) -> dict[str, Any]:
        if art.preprocess is None:
            raise _Reject(404, f"{art.name} has no image preprocessing: use /v1/infer")
        if len(model.inputs) != 1:  # known before a byte is read
            raise _Reject(404, "the model takes more inputs than the image: use /v1/infer")
        ctype = _content_type(request, IMAGE_TYPES + FORM_TYPES, "the image's bytes")
        body = await _body(request, cfg.max_body_bytes)
        if ctype in FORM_TYPES:
            upload = await asyncio.to_thread(_form_image, request.headers.get("content-type", ""), body)
        else:
            upload = _Upload(body, None, None, ctype)
        feeds = {art.preprocess.input: await asyncio.to_thread(_image_tensor, upload, art.preprocess)}
        t1 = time.perf_counter()
        out = (await batcher.submit(feeds))[0].reshape(-1)
        p = out if art.preprocess.output == "probabilities" else softmax(out.astype(np.float64))
        top = np.argsort(-p, kind="stable")[:cfg.top_k]
        return {"predictions": [{"label": labels[i] if i < len(labels) else str(int(i)), "score": round(float(p[i]), 6)}
                                for i in top], "model": art.name, "model_ms": round((time.perf_counter() - t1) * 1e3, 3)}

    async def infer_work(request: Any) -> dict[str, Any]:
        ctype = _content_type(request, JSON_TYPES + NPY_TYPES, "tensors")
        body = await _body(request, cfg.max_body_bytes)
        feeds = await asyncio.to_thread(_tensors, model, body, ctype, cfg.max_elements)
        t1 = time.perf_counter()
        outs = await batcher.submit(feeds)
        names = [s.name for s in art.outputs] if art.outputs else [f"output_{i}" for i in range(len(outs))]
        return {"outputs": {n: np.asarray(o).tolist() for n, o in zip(names, outs)}, "model": art.name,
                "model_ms": round((time.perf_counter() - t1) * 1e3, 3)}

    async def classify(request: Any) -> Response:
        return await handle("/v1/classify", request, classify_work)

    async def infer(request: Any) -> Response:
        return await handle("/v1/infer", request, infer_work)

    async def healthz(request: Any) -> Response:
        return JSONResponse({"ok": True, "model": art.name, "target": art.target, "precision": art.precision,
                             "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in model.inputs],
                             "classify": art.preprocess is not None, "max_batch": cfg.max_batch,
                             "batching": cfg.max_batch > 1 and model.batchable})

    async def metrics_route(request: Any) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Any):
        batcher.task = asyncio.create_task(batcher.run())
        try:
            yield
        finally:
            batcher.task.cancel()
            model.runner.close()

    app = Starlette(routes=[Route("/v1/classify", classify, methods=["POST"]), Route("/v1/infer", infer, methods=["POST"]),
                            Route("/healthz", healthz), Route("/metrics", metrics_route)], lifespan=lifespan)
    app.state.model = model
    return app


def _image_tensor(upload: _Upload, spec: Any) -> np.ndarray:
    """Decode and preprocess one image as the library does (400 when the bytes are not a whole
    image, naming the upload by its name, size and content type)."""
    from .data import preprocess_image

    try:
        return preprocess_image(upload.data, spec)
    except FormatError as e:
        why = _REPR.sub("the upload", str(e.details.get("reason", e.message)))
        raise _Reject(400, f"{upload.describe()} is not a decodable image: {why}") from None
    except (InputError, UnsupportedError) as e:
        raise _Reject(422, f"{upload.describe()}: {_REPR.sub('the upload', e.message)}") from None


def bind(host: str, port: int) -> Any:
    """A listening socket on (host, port), or a UsageError saying why not (the port taken, an
    address this machine does not have)."""
    import socket


    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}", hint="give --host an address of this machine, "
                         "e.g. 127.0.0.1, or 0.0.0.0 for every interface") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        hint = ("another process listens there: stop it, or give another --port" if e.errno == 98 else
                "give --host an address of this machine, e.g. 127.0.0.1, or 0.0.0.0 for every interface")
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}", hint=hint) from None
    sock.set_inheritable(True)
    return sock


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(artifact: str | Path, host: str = "127.0.0.1", port: int = 8000, cfg: ServeConfig | None = None,
          on_ready: Any = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn answers the requests in flight first). The port is
    bound first (a UsageError when it cannot be: taken, or an address this machine lacks), then
    ``on_ready(app)`` is called; Ctrl-C returns normally once the requests in flight are answered."""
    import uvicorn

    sock = bind(host, port)
    try:
        app = make_app(artifact, cfg)
        config = uvicorn.Config(app, host=host, port=sock.getsockname()[1], log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=30, backlog=2048, limit_concurrency=None)
        server = uvicorn.Server(config)
        if on_ready is not None:
            on_ready(app)
    except BaseException:
        sock.close()
        raise
    run_on(sock, server)


def run_on(sock: Any, server: Any) -> None:
    """Run a uvicorn ``server`` on ``sock`` (from :func:`bind`) until SIGINT/SIGTERM: Ctrl-C returns
    normally once the requests in flight are answered; the socket is closed whatever happens.
    ``edgeship serve`` and ``edgeship serve-updates`` both run this way."""
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled, after the requests in flight
        pass
    finally:
        sock.close()
