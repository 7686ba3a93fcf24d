"""The app of :mod:`edgeship.serving`: what it serves (an artifact, a classifier's release bundle
along its fallback order, a pipeline's, a voice-activity stream's or a sentence embedding's release
bundle), the model's one worker thread and its batcher, the metrics, the routes; binding and
running it with uvicorn."""

from __future__ import annotations

import asyncio
import json
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
    AUDIO_TYPES,
    JSON_TYPES,
    NPY_TYPES,
    AudioFormat,
    RawAudio,
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


def _entry(record: dict[str, Any], artifact_id: str) -> dict[str, Any]:
    """The bundle.json entry of ``artifact_id`` (the one the runtime chose, so it is there)."""
    return next(e for e in record["artifacts"] if isinstance(e, dict) and e.get("id") == artifact_id)


class _Calls:
    """What a bundle of the task layer serves: work queued as ``{"call": fn}`` jobs, run one at a
    time on the model's worker thread (nothing to stack)."""

    batchable = False
    inputs = ()
    artifact = None
    route = ""

    def run_many(self, jobs: list[dict[str, Any]]) -> list[Any]:
        return [j["call"]() for j in jobs]


class _StreamServed(_Calls):
    """A voice-activity release bundle, as :class:`edgeship.runtime.Stream` serves it on this
    machine (the first artifact of its fallback order that loads and passes its golden audio).
    Each request is a stream of its own: a :class:`Stream` with its own chunker and carried state
    on the one model (its session shared; every call made from the worker thread, one at a time)."""

    route = "/v1/stream"

    def __init__(self, folder: Path, threads: int, record: dict[str, Any]) -> None:
        from ..runtime import Stream

        self.base = Stream.from_bundle(folder, threads=threads)
        entry = _entry(record, str(self.base.served_by))
        self.specs = list(entry["inputs"]), [o["name"] for o in entry["outputs"]]
        self.task = "voice_activity"
        self.name, self.version = str(record.get("name") or folder.name), record.get("version")
        self.served_by, self.skipped = str(self.base.served_by), self.base.skipped
        self.rate, self.chunk = self.base.sample_rate, self.base.chunk

    def new_stream(self) -> Any:
        """A new stream on the served model: the state of its own, zeros."""
        return self.base.fork()

    def info(self) -> dict[str, Any]:
        return {"model": self.name, "version": self.version, "task": self.task, "served_by": self.served_by,
                "skipped": self.skipped, "routes": [self.route], "sample_rate": self.rate, "chunk": self.chunk,
                "chunk_seconds": self.chunk / self.rate, "content_types": list(AUDIO_TYPES)}

    def elsewhere(self, route: str) -> str:
        return (f"this server streams voice activity with {self.name} ({self.served_by}): POST the audio to "
                "/v1/stream, e.g. curl -sN -H 'Content-Type: audio/wav' --data-binary @speech.wav http://HOST/v1/stream")

    def close(self) -> None:
        self.base.close()


class _EmbedServed(_Calls):
    """A sentence embedding's release bundle, as :class:`edgeship.runtime.Embedder` serves it on
    this machine (the first artifact of its fallback order that loads and passes its golden
    sentences); the tokenizer and the model run on the worker thread."""

    route = "/v1/embed"

    def __init__(self, folder: Path, threads: int, record: dict[str, Any]) -> None:
        from ..runtime import Embedder

        self.embedder = Embedder.from_bundle(folder, threads=threads)
        self.task = "embedding"
        self.name, self.version = str(record.get("name") or folder.name), record.get("version")
        self.served_by, self.skipped = str(self.embedder.served_by), self.embedder.skipped

    def embed(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """(``Embedder.embed(texts)``, the tokens each text became: [CLS] and [SEP] included, at
        most the task's ``max_length``)."""
        return self.embedder.embed(texts), [len(self.embedder.tokenizer.encode(t)) for t in texts]

    def info(self) -> dict[str, Any]:
        task = self.embedder.task
        return {"model": self.name, "version": self.version, "task": self.task, "served_by": self.served_by,
                "skipped": self.skipped, "routes": [self.route], "max_length": task.get("max_length"),
                "normalize": bool(task.get("normalize", True))}

    def elsewhere(self, route: str) -> str:
        return (f"this server embeds sentences with {self.name} ({self.served_by}): POST "
                '{"texts": ["a sentence", ...]} (application/json) to /v1/embed')

    def close(self) -> None:
        self.embedder.close()


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


class _Segments:
    """The speech segments of a stream as it grows, by the package's rule
    (:func:`edgeship.tasks.vad.speech_segments`), and how many of them are settled: the same in
    the segments of the whole stream, whatever comes next.

    Settled, derived from the rule: (1) a segment ending before the last sample fed is closed
    (the one still open, or waiting out its silence, runs to the last sample), and the rule never
    drops or reopens a closed one; its start is settled with it. Its end is its speech's end plus
    ``speech_pad`` unless the next kept segment starts less than 2 x pad after that speech's end
    (the gap is then halved). (2) When the record's numbers keep segments further apart than
    that, nothing can change the end: after a silence closes a segment the next starts at least
    ``min_silence`` + one chunk later, after a cut at ``max_speech`` more than
    ``min_silence_at_max_speech`` or one chunk later. With the record's defaults (100 ms of
    silence, 30 ms of pad) a segment is so settled as soon as it closes: 100 ms (and up to one
    chunk) after its speech ended, i.e. 70 ms after its padded end, or ``min_silence`` - ``pad``
    in general. (3) Otherwise it is settled once no segment can start within 2 x pad of its end:
    a segment missing from the list (not started yet, or started but not longer than
    ``min_speech`` yet) starts at ``min(chunks run x chunk, samples fed - min_speech)`` or later;
    and a near neighbour in the list (within 1 sample: its gap was halved) must be closed, since
    one still open may yet be dropped as too short.

    The rule is re-run only from the last restart point: after a run of chunks below both
    thresholds long enough that the rule is certainly outside a segment (``min_silence`` + 4
    chunks: a segment open at its start has closed in it, even after a cut at ``max_speech``),
    leaving ``pad`` + 1 chunks before the point, so no segment after it reaches back across; the
    segments before it are kept. From such a state the rule gives the same segments shifted:
    ``tests/test_serve_streams.py`` checks this and the settled segments on random probability
    sequences under several records."""

    def __init__(self, task: Any) -> None:
        from ..tasks.vad import params

        self.task = params(task)
        p = self.task
        w = self.window = p.chunk
        sr = p.sample_rate
        self.pad = sr * p.speech_pad_ms / 1000
        self.min_speech = sr * p.min_speech_ms / 1000
        silence = sr * p.min_silence_ms / 1000
        gaps = [silence + w] + ([min(sr * p.min_silence_at_max_speech_ms / 1000, w)] if math.isfinite(p.max_speech_s)
                                else [])
        self.apart = min(gaps) >= 2 * self.pad  # no gap between segments is ever halved
        self.quiet = min(p.threshold, p.neg_threshold)
        self.lead = math.ceil(self.pad / w) + 1
        self.needed = max(math.ceil(silence / w) + 4, math.ceil(2 * self.pad / w) + 1) + self.lead
        self.base = 0  # the restart point (a chunk index)
        self.kept: list[tuple[int, int]] = []  # the segments before it
        self.run = 0  # chunks below both thresholds ending at the last one seen
        self.seen = 0
        self.restart = 0  # the latest restart point the probabilities so far allow

    def update(self, probs: list[float], samples: int) -> list[tuple[int, int]]:
        """The segments of the stream so far (``probs``: every chunk's probability; ``samples``:
        the samples fed)."""
        from ..tasks.vad import speech_segments

        for j in range(self.seen, len(probs)):
            self.run = self.run + 1 if probs[j] < self.quiet else 0
            if self.run >= self.needed:
                self.restart = j + 1 - self.lead
        self.seen = len(probs)
        off = self.base * self.window
        tail = [(a + off, b + off) for a, b in speech_segments(probs[self.base:], self.task, samples - off)]
        segments = self.kept + tail
        cut = self.restart * self.window
        if self.restart > self.base and all(b <= cut or a >= cut for a, b in tail):
            self.kept += [s for s in tail if s[1] <= cut]
            self.base = self.restart
        return segments

    def settled(self, segments: list[tuple[int, int]], chunks: int, samples: int) -> int:
        """How many of ``segments`` (of the stream so far: ``chunks`` run, ``samples`` fed) are settled."""
        unseen = min(chunks * self.window, samples - self.min_speech)  # where a segment not listed can start
        for i, (_, end) in enumerate(segments):
            if end >= samples:
                return i
            if self.apart:
                continue
            if unseen - end < 2 * self.pad:
                return i
            if i + 1 < len(segments) and segments[i + 1][0] - end <= 1 and segments[i + 1][1] >= samples:
                return i
        return len(segments)


class _StreamSession:
    """One /v1/stream request: its :class:`Stream` (its own chunker and state), the decoder of its
    raw body, its segments; every method runs on the model's worker thread, one call at a time.
    ``feed``/``finish`` return the NDJSON lines (dicts) their audio completes."""

    def __init__(self, served: _StreamServed, fmt: AudioFormat) -> None:
        self.stream = served.new_stream()
        self.rate, self.chunk = served.rate, served.chunk
        self.fmt = fmt
        self.raw = RawAudio(fmt, self.rate) if fmt.kind != "wav" else None
        self.segments = _Segments(self.stream.task)
        self.sent = 0  # segment lines sent
        self.busy = 0.0  # seconds of the worker's time

    def _segment(self, seg: tuple[int, int]) -> dict[str, Any]:
        a, b = int(seg[0]), int(seg[1])
        return {"start": a / self.rate, "end": b / self.rate, "samples": [a, b]}

    def _chunks(self, first: int) -> list[dict[str, Any]]:
        probs = self.stream.probs
        return [{"chunk": k, "t": k * self.chunk / self.rate, "p": float(probs[k])} for k in range(first, len(probs))]

    def feed(self, data: bytes | np.ndarray) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        x = self.raw.push(data) if self.raw is not None else data
        first = len(self.stream.probs)
        self.stream.feed(x)
        lines = self._chunks(first)
        if lines:
            segs = self.segments.update(self.stream.probs, self.stream.samples)
            settled = self.segments.settled(segs, len(self.stream.probs), self.stream.samples)
            lines += [{"segment": self._segment(s)} for s in segs[self.sent:settled]]
            self.sent = max(self.sent, settled)
        self.busy += time.perf_counter() - t0
        return lines

    def finish(self) -> list[dict[str, Any]]:
        """The stream's end: its last chunks, the segments not sent yet, and the summary: every
        segment by the package's rule over the whole stream (:meth:`Stream.segments`)."""
        t0 = time.perf_counter()
        first = len(self.stream.probs)
        if self.raw is not None:
            self.stream.feed(self.raw.end())
        self.stream.finish()
        lines = self._chunks(first)
        segs = self.stream.segments()
        lines += [{"segment": self._segment(s)} for s in segs[self.sent:]]
        self.busy += time.perf_counter() - t0
        seconds = self.stream.samples / self.rate
        done: dict[str, Any] = {"done": True, "segments": [self._segment(s) for s in segs],
                                "chunks": len(self.stream.probs), "seconds": seconds,
                                "rtf": self.busy / seconds if seconds else None,
                                "served_by": self.stream.served_by, "rate": self.rate, "input": self.fmt.describe()}
        if self.raw is not None and self.raw.trailing:
            done["trailing_bytes"] = self.raw.trailing  # a partial frame at the end, dropped
        return lines + [done]


class _Gone(Exception):
    """The client of a stream went away."""


class _Body:
    """A request body read as it arrives (``receive`` itself: a streaming response of starlette's
    would consume the body listening for the disconnect), within ``limit`` bytes (413), a piece
    at least every ``idle`` seconds (408); ``finished`` once its last byte arrived."""

    def __init__(self, request: Any, limit: int, idle: float) -> None:
        self.receive, self.limit, self.idle = request.receive, limit, idle
        self.size = 0
        self.finished = False
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Reject(413, f"the body is {int(declared):,} bytes; this server takes at most {limit:,} per stream")

    async def pieces(self) -> Any:
        while not self.finished:
            try:
                msg = await asyncio.wait_for(self.receive(), self.idle)
            except TimeoutError:
                raise Reject(408, f"the upload stalled: no bytes for {self.idle:g} s "
                                  f"({self.size:,} bytes had arrived)") from None
            if msg["type"] == "http.disconnect":
                raise _Gone
            data = msg.get("body", b"")
            self.size += len(data)
            if self.size > self.limit:
                raise Reject(413, f"the stream is over {self.limit:,} bytes, the most this server takes per stream")
            self.finished = not msg.get("more_body", False)
            if data:
                yield data

    async def all(self) -> bytes:
        parts = [p async for p in self.pieces()]
        if not self.size:
            raise Reject(400, "the body is empty")
        return b"".join(parts)

    async def gone(self) -> None:
        """Returns when the client goes away (to call once the body has all arrived)."""
        while (await self.receive())["type"] != "http.disconnect":
            pass


#: seconds of audio per call to the model's worker when a whole WAV arrived at once (other
#: requests' calls interleave between them; the lines go out as each completes)
WAV_GROUP_SECONDS = 1.0
#: the most seconds of a raw stream's audio one call takes (what a read brought, cut to this)
RAW_GROUP_SECONDS = 1.0


class _NdjsonResponse:
    """The lines of a stream as they are made (``application/x-ndjson``), the first already made;
    the body is not listened to here (the lines' own generator reads it). ``end()`` runs whatever
    becomes of the response."""

    def __init__(self, first: bytes, rest: Any, end: Any) -> None:
        self.first, self.rest, self.end = first, rest, end

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/x-ndjson"), (b"cache-control", b"no-store"),
                                    (b"x-accel-buffering", b"no")]})
            await send({"type": "http.response.body", "body": self.first, "more_body": True})
            async for part in self.rest:
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self.rest.aclose()
            self.end()


def _ndjson(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(x, separators=(",", ":"), allow_nan=False) + "\n" for x in lines).encode()


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
