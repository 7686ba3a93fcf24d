"""What :mod:`edgeship.serving` serves of a voice-activity or a sentence-embedding release: the
served stream and embedder, a stream's session (its own state, the settled segments), the audio
body read as it arrives, and the NDJSON response written as the chunks run."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import (
    AUDIO_TYPES,
    AudioFormat,
    RawAudio,
    Reject,
)


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
