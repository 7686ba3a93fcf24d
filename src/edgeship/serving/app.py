"""The app of :mod:`edgeship.serving`: what it serves (an artifact, a classifier's release bundle
along its fallback order, a pipeline's, a voice-activity stream's or a sentence embedding's release
bundle), the model's one worker thread and its batcher, the metrics, the routes; binding and
running it with uvicorn."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgeshipError, UsageError
from ..fidelity import softmax
from .inputs import (
    JSON_TYPES,
    NPY_TYPES,
    Reject,
    audio_format,
    decoded,
    image_upload,
    read_body,
    tensors,
    texts_of,
    wav_audio,
)
from .inputs import content_type as _content_type
from .streams import (
    RAW_GROUP_SECONDS,
    WAV_GROUP_SECONDS,
    _Body,
    _EmbedServed,
    _Gone,
    _ndjson,
    _NdjsonResponse,
    _StreamServed,
    _StreamSession,
)

__all__ = ["ServeConfig", "make_app", "serve", "bind", "url_of", "run_on"]


@dataclass(frozen=True)
class ServeConfig:
    max_batch: int = 1
    max_wait_ms: float = 2.0
    max_body_bytes: int = 10 << 20
    max_elements: int = 50_000_000  # per request, over all its tensors
    threads: int = 1
    top_k: int = 5
    max_stream_bytes: int = 128 << 20  # per /v1/stream request (a WAV is read whole within it)
    max_stream_seconds: float = 3600.0  # of audio per /v1/stream request
    stream_idle_seconds: float = 30.0  # a stream's upload sending nothing this long has stalled
    max_texts: int = 256  # per /v1/embed request
    max_text_chars: int = 20_000  # per text (the tokenizer keeps the model's max_length tokens of it)


@dataclass
class _Job:
    feeds: dict[str, np.ndarray]
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class _Model:
    """The artifact loaded once; one call at a time (the runtime's own threads do the parallel work)."""

    def __init__(self, path: Path, threads: int) -> None:
        from ..targets import load_artifact, runner_for

        self.artifact = load_artifact(path)
        self.runner = runner_for(self.artifact, threads=threads)
        self.inputs = self.runner.inputs
        self.batchable = all(0 in s.dynamic_axes for s in self.inputs)
        self.served_by: str | None = None  # from a bundle: the artifact its fallback order took here
        self.skipped: list[dict[str, str]] = []

    def info(self) -> dict[str, Any]:
        art = self.artifact
        kind = art.task.kind if art.task is not None else "class_scores" if art.preprocess is not None else None
        return {"model": art.name, "task": kind, "target": art.target, "precision": art.precision,
                "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in self.inputs],
                "classify": art.preprocess is not None,
                "routes": ["/v1/classify", "/v1/infer"] if art.preprocess is not None else ["/v1/infer"],
                **({"served_by": self.served_by, "skipped": self.skipped} if self.served_by else {})}

    def elsewhere(self, route: str) -> str:
        """Why ``route`` is a 404 here, and the route to use."""
        where = "/v1/classify" if self.artifact.preprocess is not None else "/v1/infer"
        what = {"/v1/ocr": "a pipeline that reads text", "/v1/stream": "a voice-activity stream",
                "/v1/embed": "sentence embeddings"}.get(route, route)
        return f"this server serves the model {self.artifact.name}, not {what}: use {where}"

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

    def close(self) -> None:
        self.runner.close()


class _Pipeline:
    """A pipeline's release bundle, as :class:`edgeship.runtime.Pipeline` serves it on this machine
    (the first measured artifact set that loads and passes its golden vectors); one page at a time
    (pages differ in size: nothing to stack)."""

    batchable = False
    inputs = ()
    artifact = None

    def __init__(self, folder: Path, threads: int, record: dict[str, Any]) -> None:
        from ..runtime import Pipeline

        self.pipeline = Pipeline.from_bundle(folder, threads=threads)
        self.task = self.pipeline.kind
        self.name, self.version = str(record.get("name") or folder.name), record.get("version")

    def info(self) -> dict[str, Any]:
        return {"model": self.name, "version": self.version, "task": self.task, "stages": list(self.pipeline.served_by),
                "served_by": self.pipeline.served_by, "skipped": self.pipeline.skipped, "routes": ["/v1/ocr"]}

    def elsewhere(self, route: str) -> str:
        what = {"/v1/infer": "one model's tensors", "/v1/classify": "one classifier", "/v1/stream": "a voice-activity "
                "stream", "/v1/embed": "sentence embeddings"}.get(route, route)
        return (f"this server reads text with the {self.task} pipeline {self.name}, not {what}: "
                "POST the image to /v1/ocr (its bytes, or -F file=@page.png)")

    def run_many(self, jobs: list[dict[str, np.ndarray]]) -> list[dict[str, Any]]:
        return [self.pipeline.read(j["page"]).to_dict() for j in jobs]

    def close(self) -> None:
        self.pipeline.close()


def _open(path: Path, threads: int) -> _Model | _Pipeline | _StreamServed | _EmbedServed:
    """What ``path`` serves: a pipeline's release bundle (its pipeline), a voice-activity or an
    embedding bundle (its task, bundle.json ``task.kind``: the runtime's Stream or Embedder), a
    classifier's (the artifact its fallback order takes here: the first that loads and passes its
    golden vectors), else an artifact folder or a model file."""
    if not (path / "bundle.json").is_file():
        return _Model(path, threads)
    from ..readers import read_json
    from ..runtime import Classifier

    record = read_json(path / "bundle.json", "release bundle record", links=False,
                       hint="give a bundle folder written by edgeship deploy or package (or extract its .tar.gz)")
    if isinstance(record, dict) and record.get("pipeline"):
        return _Pipeline(path, threads, record)
    kind = (record.get("task") or {}).get("kind") if isinstance(record, dict) and isinstance(record.get("task"), dict) \
        else None
    if kind == "voice_activity":
        return _StreamServed(path, threads, record)
    if kind == "embedding":
        return _EmbedServed(path, threads, record)
    clf = Classifier.from_bundle(path, threads=threads)
    clf.runner.close()
    model = _Model(path / "artifacts" / clf.served_by, threads)
    model.served_by, model.skipped = clf.served_by, clf.skipped
    return model


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
        self.stream_errors = Counter("edgeship_stream_errors", "streams ended by an error line after their 200, by the "
                                     "status the error would have had", ["status"], registry=self.registry)
        self.stream_seconds = Counter("edgeship_stream_audio_seconds", "seconds of audio streamed through the model",
                                      registry=self.registry)
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

    def rows(self, job: _Job) -> int:
        return len(next(iter(job.feeds.values()))) if job.feeds and self.model.batchable else 1

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


def make_app(artifact: str | Path, cfg: ServeConfig | None = None) -> Any:
    """The ASGI app serving ``artifact``: an artifact folder or a model file (``/v1/classify``,
    ``/v1/infer``), a classifier's release bundle (the same, with the artifact its fallback order
    takes here), a pipeline's release bundle (``/v1/ocr``), a voice-activity bundle
    (``/v1/stream``) or a sentence embedding's (``/v1/embed``)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from ..data import load_image, preprocess_image

    cfg = cfg or ServeConfig()
    model = _open(Path(artifact), cfg.threads)
    metrics = _Metrics()
    batcher = _Batcher(model, cfg, metrics)
    art = model.artifact
    labels = (art.labels if art is not None else None) or ()

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
        except Reject as r:
            return refuse(route, r.status, r.reason)
        except EdgeshipError as e:  # the runtime refused the input: the request's fault
            return refuse(route, 422, e.message)
        except Exception as e:  # noqa: BLE001 - the model failed on a well-formed request: say so
            return refuse(route, 500, f"the model failed: {type(e).__name__}: {str(e)[:200]}")
        finally:
            metrics.in_flight.dec()

    def one_model(route: str) -> Any:
        """The artifact behind a route of one model; on a bundle of another kind, a 404 saying
        where to go (known before a byte is read)."""
        if art is None:
            raise Reject(404, model.elsewhere(route))
        return art

    async def classify_work(request: Any) -> dict[str, Any]:
        art = one_model("/v1/classify")
        if art.preprocess is None:
            raise Reject(404, f"{art.name} has no image preprocessing: use /v1/infer")
        if len(model.inputs) != 1:  # known before a byte is read
            raise Reject(404, "the model takes more inputs than the image: use /v1/infer")
        upload = await image_upload(request, cfg.max_body_bytes)
        feeds = {art.preprocess.input: await asyncio.to_thread(decoded, upload,
                                                               lambda b: preprocess_image(b, art.preprocess))}
        t1 = time.perf_counter()
        out = (await batcher.submit(feeds))[0].reshape(-1)
        p = out if art.preprocess.output == "probabilities" else softmax(out.astype(np.float64))
        top = np.argsort(-p, kind="stable")[:cfg.top_k]
        return {"predictions": [{"label": labels[i] if i < len(labels) else str(int(i)), "score": round(float(p[i]), 6)}
                                for i in top], "model": art.name, "model_ms": round((time.perf_counter() - t1) * 1e3, 3)}

    async def infer_work(request: Any) -> dict[str, Any]:
        art = one_model("/v1/infer")
        ctype = _content_type(request, JSON_TYPES + NPY_TYPES, "tensors")
        body = await read_body(request, cfg.max_body_bytes)
        feeds = await asyncio.to_thread(tensors, model.inputs, body, ctype, cfg.max_elements)
        t1 = time.perf_counter()
        outs = await batcher.submit(feeds)
        names = [s.name for s in art.outputs] if art.outputs else [f"output_{i}" for i in range(len(outs))]
        return {"outputs": {n: np.asarray(o).tolist() for n, o in zip(names, outs)}, "model": art.name,
                "model_ms": round((time.perf_counter() - t1) * 1e3, 3)}

    async def ocr_work(request: Any) -> dict[str, Any]:
        if not isinstance(model, _Pipeline):  # known before a byte is read
            raise Reject(404, model.elsewhere("/v1/ocr"))
        upload = await image_upload(request, cfg.max_body_bytes)
        page = await asyncio.to_thread(decoded, upload, load_image)
        t1 = time.perf_counter()
        read = await batcher.submit({"page": page})
        return {**read, "served_by": model.pipeline.served_by, "ms": round((time.perf_counter() - t1) * 1e3, 3)}

    async def embed_work(request: Any) -> dict[str, Any]:
        if not isinstance(model, _EmbedServed):  # known before a byte is read
            raise Reject(404, model.elsewhere("/v1/embed"))
        _content_type(request, JSON_TYPES, 'the sentences as {"texts": [...]}')
        body = await read_body(request, cfg.max_body_bytes)
        texts = texts_of(body, cfg.max_texts, cfg.max_text_chars)
        t1 = time.perf_counter()
        vectors, tokens = await batcher.submit({"call": partial(model.embed, texts)})
        # float32 -> Python float is exact, and json writes the shortest repr that reads back to it
        return {"embeddings": vectors.tolist(), "dim": int(vectors.shape[1]), "tokens": tokens,
                "served_by": model.served_by, "model": model.name, "ms": round((time.perf_counter() - t1) * 1e3, 3)}

    async def stream(request: Any) -> Any:
        """POST /v1/stream: the body's audio through the model as it arrives, NDJSON lines back as
        each group of chunks is run. A refusal before the first line is a 4xx; after it, an
        ``{"error"}`` line ends the stream."""
        route = "/v1/stream"
        t0 = time.perf_counter()
        metrics.in_flight.inc()
        try:
            if not isinstance(model, _StreamServed):  # known before a byte is read
                raise Reject(404, model.elsewhere(route))
            fmt = audio_format(request.headers.get("content-type", ""), model.rate)
            body = _Body(request, cfg.max_stream_bytes, cfg.stream_idle_seconds)
            session = _StreamSession(model, fmt)
            lines = _stream_lines(body, session)
            first = await lines.__anext__()
        except Reject as r:
            metrics.in_flight.dec()
            return refuse(route, r.status, r.reason)
        except _Gone:
            metrics.in_flight.dec()
            metrics.requests.labels(route, "499").inc()
            return Response(status_code=499)
        except EdgeshipError as e:
            metrics.in_flight.dec()
            return refuse(route, 422, e.message)
        except Exception as e:  # noqa: BLE001 - the model failed on a well-formed stream: say so
            metrics.in_flight.dec()
            return refuse(route, 500, f"the model failed: {type(e).__name__}: {str(e)[:200]}")
        metrics.requests.labels(route, "200").inc()
        metrics.latency.labels(route).observe(time.perf_counter() - t0)  # to its first line
        return _NdjsonResponse(first, lines, metrics.in_flight.dec)

    async def _stream_lines(body: _Body, session: _StreamSession) -> Any:
        """The stream's NDJSON, a bytes piece per group of chunks run; before the first piece,
        a refusal is raised (the route answers it with its status), after it, it becomes the last
        line, ``{"error", "status"}``."""
        started = False
        watch: asyncio.Task | None = None
        try:
            if session.raw is not None:
                pieces = _raw_groups(body, session)
            else:
                pieces = _wav_groups(body, session)
            async for piece in pieces:
                if body.finished and watch is None:  # nothing more to read: the disconnect is what remains
                    watch = asyncio.ensure_future(body.gone())
                if watch is not None and watch.done():
                    return
                got = await batcher.submit({"call": partial(session.feed, piece)})
                if got:
                    started = True
                    yield _ndjson(got)
            got = await batcher.submit({"call": session.finish})
            metrics.stream_seconds.inc(session.stream.samples / session.rate)
            yield _ndjson(got)
        except _Gone:
            if not started:
                raise
        except Exception as e:  # noqa: BLE001 - after the 200 an error is a line
            if not started:
                raise
            status, reason = (e.status, e.reason) if isinstance(e, Reject) else \
                (422, e.message) if isinstance(e, EdgeshipError) else \
                (500, f"the model failed: {type(e).__name__}: {str(e)[:200]}")
            metrics.stream_errors.labels(str(status)).inc()
            yield _ndjson([{"error": reason, "status": status, "chunks": len(session.stream.probs)}])
        finally:
            if watch is not None:
                watch.cancel()

    async def _raw_groups(body: _Body, session: _StreamSession) -> Any:
        """A raw body's bytes as they arrive, in groups of at least one chunk's worth (a read that
        brings less waits for the next) and at most :data:`RAW_GROUP_SECONDS`; 413 past the
        stream's seconds."""
        fmt = session.fmt
        rate = int(fmt.rate or session.rate)
        least = max(1, math.ceil(session.chunk * rate / session.rate)) * fmt.frame_bytes
        most = max(least, int(RAW_GROUP_SECONDS * rate) * fmt.frame_bytes)
        limit = cfg.max_stream_seconds * rate * fmt.frame_bytes
        pending = bytearray()
        async for data in body.pieces():
            if body.size > limit:
                raise Reject(413, f"the stream is over {cfg.max_stream_seconds:g} s of audio, the most this server "
                                  "takes per stream")
            pending += data
            while len(pending) >= least:
                take = min(len(pending), most)
                yield bytes(pending[:take])
                del pending[:take]
        if not body.size:
            raise Reject(400, "the body is empty: send the audio's bytes")
        if pending:
            yield bytes(pending)

    async def _wav_groups(body: _Body, session: _StreamSession) -> Any:
        """A whole WAV, read (within the byte limit), decoded, resampled to the model's rate and
        cut into :data:`WAV_GROUP_SECONDS` groups."""
        data = await body.all()
        audio, _ = await asyncio.to_thread(wav_audio, data, session.rate, cfg.max_stream_seconds)
        step = max(session.chunk, int(WAV_GROUP_SECONDS * session.rate) // session.chunk * session.chunk)
        for i in range(0, len(audio), step):
            yield audio[i:i + step]

    async def classify(request: Any) -> Response:
        return await handle("/v1/classify", request, classify_work)

    async def infer(request: Any) -> Response:
        return await handle("/v1/infer", request, infer_work)

    async def ocr(request: Any) -> Response:
        return await handle("/v1/ocr", request, ocr_work)

    async def embed(request: Any) -> Response:
        return await handle("/v1/embed", request, embed_work)

    async def healthz(request: Any) -> Response:
        return JSONResponse({"ok": True, **model.info(), "max_batch": cfg.max_batch,
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
            model.close()

    app = Starlette(routes=[Route("/v1/classify", classify, methods=["POST"]), Route("/v1/infer", infer, methods=["POST"]),
                            Route("/v1/ocr", ocr, methods=["POST"]), Route("/v1/stream", stream, methods=["POST", "PUT"]),
                            Route("/v1/embed", embed, methods=["POST"]), Route("/healthz", healthz),
                            Route("/metrics", metrics_route)], lifespan=lifespan)
    app.state.model = model
    return app


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
