"""edgeship serve on the task layer's bundles: a voice-activity bundle as a stream (POST /v1/stream:
audio in as it arrives, NDJSON lines out as its chunks run), a sentence embedding's (POST
/v1/embed); the routes the served thing does not have answer 404 with where to go.

The bundles are real releases: ``edgeship.api.deploy`` of tiny ONNX models made here (converted,
verified on WAV files or sentences written here, packaged with their golden audio or sentences).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from edgeship.serving import ServeConfig, make_app
from servers import free_port, wait_healthy

RATE = 16000


# ------------------------------------------------------------------------------------------------
# the models and their bundles

def _stream_model(path: Path, context: int = 64, chunk: int = 512) -> Path:
    """A stream model shaped like Silero VAD: input [N, 576] f32, state [2, N, 128] f32, sr int64
    scalar -> output [N, 1] (a speech probability from the chunk's energy and the state),
    stateN [2, N, 128] (the state decayed, plus what this chunk scored)."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as oh

    nodes = [
        oh.make_node("Mul", ["input", "input"], ["sq"]),
        oh.make_node("ReduceMean", ["sq"], ["energy"], axes=[1], keepdims=1),
        oh.make_node("Add", ["energy", "eps"], ["e1"]),
        oh.make_node("Log", ["e1"], ["loge"]),
        oh.make_node("Add", ["loge", "seven"], ["z0"]),
        oh.make_node("ReduceMean", ["state"], ["smean"], axes=[0, 2], keepdims=0),
        oh.make_node("Unsqueeze", ["smean", "ax1"], ["smean1"]),
        oh.make_node("Mul", ["smean1", "two"], ["sw"]),
        oh.make_node("Add", ["z0", "sw"], ["z1"]),
        oh.make_node("Cast", ["sr"], ["srf"], to=T.FLOAT),
        oh.make_node("Div", ["srf", "sr0"], ["scale"]),
        oh.make_node("Mul", ["z1", "scale"], ["z"]),
        oh.make_node("Sigmoid", ["z"], ["output"]),
        oh.make_node("Tanh", ["z"], ["tz"]),
        oh.make_node("Mul", ["state", "decay"], ["sd"]),
        oh.make_node("Mul", ["tz", "gain"], ["tzg"]),
        oh.make_node("Add", ["sd", "tzg"], ["stateN"]),
    ]
    consts = [oh.make_tensor("eps", T.FLOAT, [], [1e-6]), oh.make_tensor("seven", T.FLOAT, [], [7.0]),
              oh.make_tensor("two", T.FLOAT, [], [2.0]), oh.make_tensor("sr0", T.FLOAT, [], [16000.0]),
              oh.make_tensor("decay", T.FLOAT, [], [0.7]), oh.make_tensor("gain", T.FLOAT, [], [0.3]),
              oh.make_tensor("ax1", T.INT64, [1], [1])]
    graph = oh.make_graph(nodes, "tinyvad",
                          [oh.make_tensor_value_info("input", T.FLOAT, ["N", context + chunk]),
                           oh.make_tensor_value_info("state", T.FLOAT, [2, "N", 128]),
                           oh.make_tensor_value_info("sr", T.INT64, [])],
                          [oh.make_tensor_value_info("output", T.FLOAT, ["N", 1]),
                           oh.make_tensor_value_info("stateN", T.FLOAT, [2, "N", 128])], consts)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "device", "check", "##s", "model", "hello", "world",
          ",", ".", "!", "edge", "##ship", "serve", "sentence", "cafe"] + list("abcdefghijklmnopqrstuvwxyz")
         + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"])


def _embed_model(path: Path, dim: int = 8) -> Path:
    """input_ids, attention_mask [N, L] int64 -> the mean of the tokens' rows of a random table
    over the mask, [N, dim] (a sentence embedding's shape; L2-normalised by the task)."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as oh
    from onnx import numpy_helper as nh

    table = np.random.default_rng(3).normal(size=(len(VOCAB), dim)).astype(np.float32)
    nodes = [oh.make_node("Gather", ["E", "input_ids"], ["emb"]),
             oh.make_node("Cast", ["attention_mask"], ["m"], to=T.FLOAT),
             oh.make_node("Unsqueeze", ["m", "ax2"], ["m3"]),
             oh.make_node("Mul", ["emb", "m3"], ["em"]),
             oh.make_node("ReduceSum", ["em", "ax1"], ["s"], keepdims=0),
             oh.make_node("ReduceSum", ["m3", "ax1"], ["c"], keepdims=0),
             oh.make_node("Div", ["s", "c"], ["sentence_embedding"])]
    graph = oh.make_graph(nodes, "tinyembed",
                          [oh.make_tensor_value_info("input_ids", T.INT64, ["N", "L"]),
                           oh.make_tensor_value_info("attention_mask", T.INT64, ["N", "L"])],
                          [oh.make_tensor_value_info("sentence_embedding", T.FLOAT, ["N", dim])],
                          [nh.from_array(table, "E"), oh.make_tensor("ax2", T.INT64, [1], [2]),
                           oh.make_tensor("ax1", T.INT64, [1], [1])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def _released(out: Path) -> Path:
    """The release bundle folder the deploy into ``out`` packaged."""
    return next((out / "release").glob("*/bundle.json")).parent


def _speech(seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    from edgeship.data import speech_like

    return speech_like(seconds, seed, rate)[0]


def _wav(audio: np.ndarray, rate: int) -> bytes:
    from edgeship.readers.audio import write_wav

    d = Path(__import__("tempfile").mkdtemp())
    try:
        return write_wav(d / "a.wav", audio, rate).read_bytes()
    finally:
        shutil.rmtree(d)


@pytest.fixture(scope="module")
def vad_bundle(tmp_path_factory) -> Path:
    from edgeship import api
    from edgeship.readers.audio import write_wav

    root = tmp_path_factory.mktemp("vad")
    (root / "eval").mkdir()
    for i in range(2):
        write_wav(root / "eval" / f"s{i}.wav", _speech(6.0, 100 + i), RATE)
    api.deploy(str(_stream_model(root / "vad.onnx")), targets=["onnx"], out=str(root / "out"),
               task_record=json.dumps({"kind": "voice_activity"}), eval=str(root / "eval"))
    return _released(root / "out")


@pytest.fixture(scope="module")
def embed_bundle(tmp_path_factory) -> Path:
    from edgeship import api

    root = tmp_path_factory.mktemp("embed")
    (root / "vocab.txt").write_text("".join(t + "\n" for t in VOCAB))
    (root / "sentences.txt").write_text("The device checks the model.\nHello, world!\nedgeship serves a sentence\n")
    task = {"kind": "embedding", "tokenizer": "wordpiece", "vocabulary": str(root / "vocab.txt"), "max_length": 16}
    api.deploy(str(_embed_model(root / "embed.onnx")), targets=["onnx"], out=str(root / "out"),
               task_record=json.dumps(task), eval=str(root / "sentences.txt"))
    return _released(root / "out")


@pytest.fixture(scope="module")
def stream(vad_bundle):
    from edgeship.runtime import Stream

    s = Stream.from_bundle(vad_bundle)
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(vad_bundle):
    with TestClient(make_app(vad_bundle)) as c:
        yield c


def _lines(text: str) -> list[dict]:
    assert text.endswith("\n"), text[-200:]
    return [json.loads(x) for x in text.splitlines()]


def _check_stream(lines: list[dict], probs: np.ndarray, segments: list, exact: bool = True) -> dict:
    """The stream's lines say what Stream.run says of the same audio: a line per chunk (its
    probability), the segments as lines as they settle then all of them in the summary."""
    chunks = [x for x in lines if "chunk" in x]
    assert [c["chunk"] for c in chunks] == list(range(len(probs)))
    assert [c["t"] for c in chunks] == [k * 512 / RATE for k in range(len(probs))]
    got = np.array([c["p"] for c in chunks])
    if exact:
        assert np.array_equal(got, probs)
    else:
        assert float(np.abs(got - probs).max()) <= 1e-4
    done = lines[-1]
    assert done["done"] is True and "error" not in done and done["chunks"] == len(probs)
    assert [tuple(s["samples"]) for s in done["segments"]] == [tuple(s) for s in segments]
    assert [s["start"] for s in done["segments"]] == [a / RATE for a, _ in segments]
    seg_lines = [x["segment"] for x in lines if "segment" in x]
    assert seg_lines == done["segments"]  # each once, in order, the same as the summary's
    return done


# ------------------------------------------------------------------------------------------------
# the stream: what is settled, resampling as it arrives

def _markov(rng, n: int, stay: float) -> list[float]:
    out, speech = [], bool(rng.random() < 0.5)
    for _ in range(n):
        if rng.random() > stay:
            speech = not speech
        lo, hi = (0.55, 1.0) if speech else (0.0, 0.45)
        out.append(float(rng.uniform(lo, hi)) if rng.random() > 0.08 else float(rng.random()))
    return out


RECORDS = [{}, {"min_silence_ms": 20, "speech_pad_ms": 60}, {"max_speech_s": 1.5},
           {"max_speech_s": 1.0, "use_max_poss_sil_at_max_speech": False},
           {"min_silence_ms": 0, "speech_pad_ms": 100, "min_speech_ms": 400},
           {"chunk": 256, "sample_rate": 8000, "speech_pad_ms": 0},
           {"threshold": 0.3, "neg_threshold": 0.6, "min_silence_ms": 50, "max_speech_s": 0.8},
           {"min_silence_at_max_speech_ms": 10, "max_speech_s": 0.6, "speech_pad_ms": 40},
           {"speech_pad_ms": 200, "min_silence_ms": 300, "max_speech_s": 2.0, "min_silence_at_max_speech_ms": 500}]


@pytest.mark.parametrize("record", RECORDS, ids=[json.dumps(r) for r in RECORDS])
def test_the_segments_a_stream_sends_early_are_the_whole_streams(record):
    """On random probability sequences fed in random groups: the segments re-run from a restart
    point equal the package's rule over everything so far, at every step; every segment sent as
    settled is the whole stream's, in order; with the defaults, a segment is sent as it closes."""
    from edgeship.serving.streams import _Segments
    from edgeship.tasks.vad import params, speech_segments

    task = {"kind": "voice_activity", **record}
    p = params(task)
    rng = np.random.default_rng(len(json.dumps(record)))
    early = restarts = 0
    for _ in range(40):
        n = int(rng.integers(20, 400))
        probs = _markov(rng, n, float(rng.choice([0.8, 0.9, 0.97, 0.99])))
        total = n * p.chunk - int(rng.integers(0, p.chunk))
        seg, sent, k = _Segments(task), [], 0
        while k < n:
            k = min(n, k + int(rng.integers(1, 12)))
            samples = min(total, k * p.chunk)
            before = seg.base
            now = seg.update(probs[:k], samples)
            restarts += seg.base > before
            assert now == speech_segments(probs[:k], task, samples)
            settled = seg.settled(now, k, samples)
            assert settled >= len(sent)
            sent += now[len(sent):settled]
            if not record:  # the defaults: settled as soon as closed
                assert settled == sum(1 for _, e in now if e < samples)
        final = speech_segments(probs, task, total)
        assert sent == final[:len(sent)]
        early += len(sent)
    assert early > 20 and restarts > 3  # the checks above were not vacuous


@pytest.mark.parametrize("rates", [(48000, RATE), (44100, RATE), (8000, RATE), (11025, RATE), (RATE, 8000)])
def test_a_stream_is_resampled_as_it_arrives_as_the_whole_recording_would_be(rates):
    from edgeship.readers.audio import resample
    from edgeship.serving.inputs import StreamResampler

    rng = np.random.default_rng(rates[0])
    x = (rng.normal(size=int(rng.integers(20000, 60000))) * 0.2).astype(np.float32)
    r, parts, i = StreamResampler(*rates), [], 0
    while i < len(x):
        n = int(rng.integers(1, 5000))
        parts.append(r.push(x[i:i + n]))
        i += n
    parts.append(r.end())
    got, want = np.concatenate(parts), resample(x, *rates)
    assert got.dtype == np.float32 and len(got) == len(want)
    assert float(np.abs(got - want).max()) <= 1e-5
    assert len(r.buf) < 200  # it keeps only what the next outputs weigh


# ------------------------------------------------------------------------------------------------
# POST /v1/stream

def test_a_wav_streams_back_what_the_runtime_gives(client, stream, vad_bundle):
    audio = _speech(7.3, 5)
    probs, segments = stream.run(audio)
    assert len(segments) >= 2  # the check below is about something
    r = client.post("/v1/stream", content=_wav(audio, RATE), headers={"content-type": "audio/wav"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson", r.text
    # the WAV holds 16-bit samples: what the runtime gets from reading it back
    from edgeship.readers.audio import decode_wav

    read, _ = decode_wav(_wav(audio, RATE), "x")
    probs, segments = stream.run(read)
    done = _check_stream(_lines(r.text), probs, segments)
    assert done["seconds"] == len(read) / RATE and done["rate"] == RATE and 0 < done["rtf"] < 1
    h = client.get("/healthz").json()
    bundle = json.loads((vad_bundle / "bundle.json").read_text())
    assert h["task"] == "voice_activity" and h["routes"] == ["/v1/stream"] and h["served_by"] == done["served_by"]
    assert h["served_by"] == bundle["fallback_order"][0] and h["skipped"] == [] and h["sample_rate"] == RATE
    # a 48 kHz stereo WAV: averaged, then resampled by readers.audio.resample
    from edgeship.readers.audio import resample

    high = resample(audio, RATE, 48000)
    wide = np.stack([high, high * 0.5], axis=1)
    r = client.post("/v1/stream", content=_wav(wide, 48000), headers={"content-type": "audio/x-wav"})
    read, rate = decode_wav(_wav(wide, 48000), "x")
    probs, segments = stream.run(resample(read, rate, RATE))
    _check_stream(_lines(r.text), probs, segments)


def test_raw_samples_stream_as_16_bit_or_float_at_any_usual_rate(client, stream):
    audio = _speech(5.0, 9)
    pcm = np.clip(np.round(audio * 32768), -32768, 32767).astype("<i2")
    probs, segments = stream.run(pcm.astype(np.float32) / 32768)
    r = client.post("/v1/stream", content=pcm.tobytes(), headers={"content-type": "audio/L16;rate=16000"})
    _check_stream(_lines(r.text), probs, segments)
    # PUT as well: what curl -T - (its streaming upload) sends
    r = client.put("/v1/stream", content=pcm.tobytes(), headers={"content-type": "audio/L16;rate=16000"})
    _check_stream(_lines(r.text), probs, segments)
    # big-endian, as RFC 2586 stores L16, when the sender says so
    r = client.post("/v1/stream", content=pcm.astype(">i2").tobytes(),
                    headers={"content-type": "audio/L16; rate=16000; endianness=big-endian"})
    _check_stream(_lines(r.text), probs, segments)
    # float32 at the model's rate, with no rate said (application/octet-stream)
    probs, segments = stream.run(audio)
    r = client.post("/v1/stream", content=audio.astype("<f4").tobytes(),
                    headers={"content-type": "application/octet-stream"})
    _check_stream(_lines(r.text), probs, segments)
    # 16-bit at 8 kHz: resampled as it arrives, as readers.audio.resample resamples the whole
    from edgeship.readers.audio import resample

    low = np.clip(np.round(resample(audio, RATE, 8000) * 32768), -32768, 32767).astype("<i2")
    probs, segments = stream.run(resample(low.astype(np.float32) / 32768, 8000, RATE))
    r = client.post("/v1/stream", content=low.tobytes() + b"\x01", headers={"content-type": "audio/L16;rate=8000"})
    done = _check_stream(_lines(r.text), probs, segments, exact=False)
    assert done["trailing_bytes"] == 1 and "8000 Hz" in done["input"]


def _async_app(app, fn):
    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://edge", timeout=60) as c:
                return await fn(c)

    return asyncio.run(go())


def test_two_streams_at_once_each_keep_their_own_state(vad_bundle, stream):
    """Two uploads in lock step (a piece of one, then a piece of the other, to the end): each
    stream's lines are what the runtime gives for its audio alone."""
    app = make_app(vad_bundle)
    audios = [_speech(4.0, 21), _speech(4.0, 22) * 0.3]
    turns = [asyncio.Event() for _ in range(2)]
    fed: list[int] = []

    def body(i: int, x: np.ndarray):
        data = x.astype("<f4").tobytes()
        rng = np.random.default_rng(i)

        async def gen():
            pos = 0
            while pos < len(data):
                await turns[i].wait()
                turns[i].clear()
                n = int(rng.integers(3000, 9000))
                fed.append(i)
                yield data[pos:pos + n]
                pos += n
                turns[1 - i].set()
            turns[1 - i].set()

        return gen()

    async def both(c):
        turns[0].set()
        return await asyncio.gather(*[c.post("/v1/stream", content=body(i, x),
                                             headers={"content-type": f"audio/x-float32;rate={RATE}"})
                                      for i, x in enumerate(audios)])

    rs = _async_app(app, both)
    assert fed[:6] == [0, 1, 0, 1, 0, 1]  # interleaved
    for r, x in zip(rs, audios):
        assert r.status_code == 200, r.text
        probs, segments = stream.run(x)
        _check_stream(_lines(r.text), probs, segments)


@pytest.mark.parametrize("body, ctype, status, words", [
    (b"hello", "text/plain", 415, "send audio/wav"),
    (b"\0" * 4000, "audio/L16", 400, "needs its sample rate: Content-Type: audio/L16;rate=16000"),
    (b"\0" * 4000, "audio/x-float32", 400, "needs its sample rate"),
    (b"\0" * 4000, "audio/L16;rate=fast", 400, "rate='fast'"),
    (b"\0" * 4000, "audio/L16;rate=16000;channels=0", 400, "channels='0'"),
    (b"\0" * 4000, "audio/L16;rate=16000;endianness=middle", 400, "endianness"),
    (b"\0" * 4000, "audio/L16;rate=44101", 400, "too long to run on a stream"),
    (b"RIFF\x10\0\0\0WAVEjunk", "audio/wav", 400, "the uploaded WAV"),
    (b"ID3\x03\0\0\0\0\0\0", "audio/wav", 400, "MP3"),
    (b"", "audio/wav", 400, "empty"),
    (b"", "audio/L16;rate=16000", 400, "empty"),
    (np.array([0.1, np.nan] * 600, "<f4").tobytes(), "audio/x-float32;rate=16000", 422, "NaN"),
    (np.full(2000, 300.0, "<f4").tobytes(), "application/octet-stream", 422, "send them as audio/L16"),
    ("big", "audio/L16;rate=16000", 413, "at most"),
    ("long", "audio/L16;rate=16000", 413, "s of audio"),
])
def test_a_bad_stream_is_a_4xx_with_its_reason(vad_bundle, body, ctype, status, words):
    cfg = ServeConfig(max_stream_bytes=200_000, max_stream_seconds=2.0)
    with TestClient(make_app(vad_bundle, cfg)) as c:
        if body == "big":
            body = b"\0" * 300_000
        elif body == "long":
            body = b"\0" * (2 * RATE * 3)  # 3 s, under the byte limit
        r = c.post("/v1/stream", content=body, headers={"content-type": ctype})
        assert r.status_code == status and words in r.json()["error"], r.text
        assert c.post("/v1/stream", content=b"\0" * 2048, headers={"content-type": "audio/L16;rate=16000"}).status_code == 200
        assert f'edgeship_requests_total{{route="/v1/stream",status="{status}"}} 1.0' in c.get("/metrics").text


def test_an_error_after_the_first_line_ends_the_stream_with_an_error_line(vad_bundle):
    def pieces(*parts):
        async def gen():
            for p in parts:
                if isinstance(p, float):
                    await asyncio.sleep(p)
                else:
                    yield p
        return gen()

    ok = _speech(1.0, 3).astype("<f4").tobytes()
    bad = np.array([np.inf] * 512, "<f4").tobytes()

    async def cases(c):
        post = lambda body: c.post("/v1/stream", content=body,  # noqa: E731
                                   headers={"content-type": "audio/x-float32;rate=16000"})
        return ([await post(pieces(*parts)) for parts in [(ok, bad), (ok, ok), (ok, 2.0, ok), (ok[:1000], 2.0, ok)]]
                + [await c.get("/metrics")])

    app = make_app(vad_bundle, ServeConfig(max_stream_seconds=1.5, stream_idle_seconds=0.5))
    nan, long, stalled, stalled_early, metrics = _async_app(app, cases)
    lines = _lines(nan.text)
    assert nan.status_code == 200 and lines[0]["chunk"] == 0 and sum("chunk" in x for x in lines) == RATE // 512
    assert lines[-1]["status"] == 422 and "frame 16,000" in lines[-1]["error"] and lines[-1]["chunks"] == RATE // 512
    assert _lines(long.text)[-1]["status"] == 413 and "1.5 s of audio" in _lines(long.text)[-1]["error"]
    assert _lines(stalled.text)[-1]["status"] == 408 and "stalled" in _lines(stalled.text)[-1]["error"]
    assert stalled_early.status_code == 408  # before a chunk's worth: no line yet, a 4xx
    assert "no bytes for 0.5 s (1,000 bytes had arrived)" in stalled_early.json()["error"]
    for status in (408, 413, 422):
        assert f'edgeship_stream_errors_total{{status="{status}"}} 1.0' in metrics.text


def test_the_routes_a_bundle_does_not_have_say_where_to_go(client, vad_bundle, embed_bundle, tiny_onnx):
    for route in ("/v1/classify", "/v1/infer", "/v1/ocr", "/v1/embed"):
        r = client.post(route, content=b"{}", headers={"content-type": "application/json"})
        assert r.status_code == 404 and "POST the audio to /v1/stream" in r.json()["error"], (route, r.text)
    with TestClient(make_app(embed_bundle)) as c:
        for route in ("/v1/classify", "/v1/infer", "/v1/ocr", "/v1/stream"):
            r = c.post(route, content=b"\0" * 100, headers={"content-type": "audio/wav"})
            assert r.status_code == 404 and "to /v1/embed" in r.json()["error"], (route, r.text)
    with TestClient(make_app(tiny_onnx)) as c:
        r = c.post("/v1/stream", content=b"\0" * 100, headers={"content-type": "audio/wav"})
        assert r.status_code == 404 and "not a voice-activity stream: use /v1/classify" in r.json()["error"]
        r = c.post("/v1/embed", json={"texts": ["a"]})
        assert r.status_code == 404 and "not sentence embeddings: use /v1/classify" in r.json()["error"]


# ------------------------------------------------------------------------------------------------
# POST /v1/embed

def test_embed_gives_the_runtimes_vectors_to_1e_6(embed_bundle):
    from edgeship.runtime import Embedder

    texts = ["The device checks the model.", "Hello, world!", "CAFÉ edgeship", "", "x" * 500,
             "the " * 40 + "end"]
    emb = Embedder.from_bundle(embed_bundle)
    want = emb.embed(texts)
    with TestClient(make_app(embed_bundle)) as c:
        r = c.post("/v1/embed", json={"texts": texts})
        assert r.status_code == 200, r.text
        doc = r.json()
        got = np.array(doc["embeddings"], np.float64)
        assert got.shape == want.shape == (len(texts), 8) and doc["dim"] == 8
        assert float(np.abs(got - want).max()) <= 1e-6
        assert np.array_equal(got.astype(np.float32), want)  # float32 -> JSON -> float32 is exact
        assert doc["tokens"] == [len(emb.tokenizer.encode(t)) for t in texts] and doc["tokens"][3] == 2
        assert doc["tokens"][5] == 16  # [CLS] + 14 + [SEP]: max_length
        h = c.get("/healthz").json()
        assert h["task"] == "embedding" and h["routes"] == ["/v1/embed"] and h["served_by"] == doc["served_by"]
    emb.close()


@pytest.mark.parametrize("body, ctype, status, words", [
    (b'{"texts": ["a"]}', "text/plain", 415, "application/json"),
    (b"not json", "application/json", 400, "not JSON"),
    (b'{"text": "a"}', "application/json", 422, '{"texts": ['),
    (b'{"texts": []}', "application/json", 422, "empty"),
    (b'{"texts": ["a", 3]}', "application/json", 422, "texts[1] is int"),
    (b'{"texts": [null]}', "application/json", 422, "texts[0] is null"),
    ("many", "application/json", 413, "at most 4"),
    ("long", "application/json", 413, "at most 50 per text"),
])
def test_a_bad_embed_request_is_a_4xx_with_its_reason(embed_bundle, body, ctype, status, words):
    with TestClient(make_app(embed_bundle, ServeConfig(max_texts=4, max_text_chars=50))) as c:
        if body == "many":
            body = json.dumps({"texts": ["a"] * 5}).encode()
        elif body == "long":
            body = json.dumps({"texts": ["a" * 51]}).encode()
        r = c.post("/v1/embed", content=body, headers={"content-type": ctype})
        assert r.status_code == status and words in r.json()["error"], r.text


# ------------------------------------------------------------------------------------------------
# one real server

def _chunked_client(port: int, ctype: str):
    """A client that sends its body in HTTP/1.1 chunks while reading the response as it comes
    (what curl -T - does). httpx cannot: httpcore sends the whole request body before it reads
    the response (``HTTP11Connection.handle_request``)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", "/v1/stream")
    conn.putheader("Content-Type", ctype)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    return conn


def test_a_real_server_answers_the_first_chunks_while_the_upload_goes_on(vad_bundle, stream):
    import uvicorn

    from edgeship.serving import bind, run_on

    port = free_port()
    sock = bind("127.0.0.1", port)
    server = uvicorn.Server(uvicorn.Config(make_app(vad_bundle), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=run_on, args=(sock, server), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        audio = _speech(6.0, 31)
        pcm = np.clip(np.round(audio * 32768), -32768, 32767).astype("<i2").tobytes()
        probs, segments = stream.run(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768)
        cuts = [0, 700, 1101, 4096, 4097, 9000]  # uneven; 9,000 bytes: 8 chunks and a bit
        conn = _chunked_client(port, "audio/L16;rate=16000")
        t0 = None
        for a, b in zip(cuts, cuts[1:]):
            piece = pcm[a:b]
            conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            if b >= 1024 and t0 is None:
                t0 = time.perf_counter()  # the first chunk's bytes are all sent
        resp = conn.getresponse()
        first = json.loads(resp.readline())
        latency = time.perf_counter() - t0
        assert resp.status == 200 and first == {"chunk": 0, "t": 0.0, "p": float(probs[0])}
        # the upload is still open: the rest goes now, in uneven pieces, then the last chunk
        rng = np.random.default_rng(0)
        pos = cuts[-1]
        while pos < len(pcm):
            piece = pcm[pos:pos + int(rng.integers(1, 20000))]
            conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            pos += len(piece)
        conn.send(b"0\r\n\r\n")
        rest = resp.read().decode()
        conn.close()
        _check_stream([first] + _lines(rest), probs, segments)
        print(f"first line {latency * 1e3:.1f} ms after the first chunk's bytes were sent")
        assert latency < 5.0

        # httpx: a chunked upload from a generator, uneven pieces; its lines once it has sent all
        def gen():
            pos = 0
            for n in [1, 511, 3000, 77, 12345] * 100:
                if pos >= len(pcm):
                    return
                yield pcm[pos:pos + n]
                pos += n

        r = httpx.post(url + "/v1/stream", content=gen(), headers={"content-type": "audio/L16;rate=16000"}, timeout=60)
        assert r.status_code == 200 and "chunked" in r.request.headers.get("transfer-encoding", "")
        _check_stream(_lines(r.text), probs, segments)
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()


def test_serve_says_what_it_serves_for_a_stream_and_an_embedder(vad_bundle, embed_bundle, capsys):
    """edgeship serve's ready line on these bundles (it read a classifier's artifact and crashed)."""
    from edgeship.cli.commands_run import _ready_line
    from edgeship.serving import make_app

    for bundle, route in ((vad_bundle, "/v1/stream"), (embed_bundle, "/v1/embed")):
        app = make_app(bundle)
        with TestClient(app):
            _ready_line(app, "127.0.0.1", 8000, 1, 2.0)
        out = capsys.readouterr()
        said = out.out + out.err
        assert route in said and "http://127.0.0.1:8000" in said, said
