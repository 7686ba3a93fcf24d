"""edgeship serve: an artifact behind HTTP, bad uploads refused with a reason, batching, metrics."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from edgeship.cloud import _run_async
from edgeship.serving import ServeConfig, make_app


@pytest.fixture(scope="module")
def png(photo_file) -> bytes:
    return photo_file.read_bytes()


@pytest.fixture(scope="module")
def client(tiny_onnx):
    with TestClient(make_app(tiny_onnx, ServeConfig(max_body_bytes=1 << 20))) as c:
        yield c


def test_classify_an_image_as_an_app_sends_it(client, png, tiny_onnx):
    r = client.post("/v1/classify", content=png, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert len(doc["predictions"]) == 5 and doc["predictions"][0]["label"].startswith("class_")
    scores = [p["score"] for p in doc["predictions"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    # the same figures the library gives for the same photo
    from edgeship.runtime import Classifier

    want = Classifier(tiny_onnx).classify(io.BytesIO(png) and _image(png), top_k=5, threshold=0.0)
    assert [p["label"] for p in doc["predictions"]] == [w.label for w in want]
    h = client.get("/healthz").json()
    assert h["ok"] and h["classify"] and h["inputs"][0]["shape"][1:] == [3, 32, 32]


def _image(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.mark.parametrize("body, ctype, status, words", [
    ("truncated", "image/jpeg", 400, "not a decodable image"),
    (b"\x00" * 100, "image/png", 400, "not a decodable image"),
    ("big", "image/png", 413, "at most"),
    (b"{}", "text/plain", 415, "content type"),
    (b"", "image/png", 400, "empty"),
])
def test_a_bad_upload_is_a_4xx_with_its_reason_and_the_server_keeps_serving(client, png, body, ctype, status, words):
    if body == "truncated":
        from PIL import Image

        buf = io.BytesIO()
        Image.open(io.BytesIO(png)).convert("RGB").save(buf, "JPEG")
        body = buf.getvalue()[: len(buf.getvalue()) // 2]
    elif body == "big":
        body = b"\xff" * (2 << 20)
    r = client.post("/v1/classify", content=body, headers={"content-type": ctype})
    assert r.status_code == status and words in r.json()["error"], r.text
    ok = client.post("/v1/classify", content=png, headers={"content-type": "image/png"})
    assert ok.status_code == 200


@pytest.mark.parametrize("payload, status, words", [
    ({"inputs": {"image": np.zeros((1, 3, 16, 16)).tolist()}}, 422, "has shape [1, 3, 16, 16]"),
    ({"inputs": {"nope": [1]}}, 422, "no input named 'nope'"),
    ({"inputs": {"image": [["a"]]}}, 422, "not a float32 tensor"),
    ({"wrong": 1}, 422, '{"inputs"'),
    ("not json", 400, "not JSON"),
])
def test_a_bad_tensor_is_a_4xx_with_its_reason(client, payload, status, words):
    body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    r = client.post("/v1/infer", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and words in r.json()["error"], r.text


def test_infer_takes_json_and_npy_and_gives_the_runtimes_figures(client, tiny_onnx):
    from edgeship.targets import load_artifact, runner_for

    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    want = runner_for(load_artifact(tiny_onnx)).run([x])[0]
    r = client.post("/v1/infer", json={"inputs": {"image": x.tolist()}})
    assert r.status_code == 200, r.text
    got = np.asarray(next(iter(r.json()["outputs"].values())), np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    buf = io.BytesIO()
    np.save(buf, x)
    r = client.post("/v1/infer", content=buf.getvalue(), headers={"content-type": "application/x-npy"})
    assert r.status_code == 200 and np.allclose(next(iter(r.json()["outputs"].values())), want, atol=1e-6)
    pickled = io.BytesIO()
    np.save(pickled, np.array([object()], dtype=object), allow_pickle=True)
    r = client.post("/v1/infer", content=pickled.getvalue(), headers={"content-type": "application/x-npy"})
    assert r.status_code == 400  # never unpickled


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(tiny_onnx):
    app = make_app(tiny_onnx, ServeConfig(max_batch=8, max_wait_ms=50))
    xs = [np.random.default_rng(i).normal(size=(1, 3, 32, 32)).astype(np.float32) for i in range(16)]

    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://edge") as c:
                rs = await asyncio.gather(*[c.post("/v1/infer", json={"inputs": [x.tolist()]}) for x in xs])
                metrics = (await c.get("/metrics")).text
        return rs, metrics

    rs, metrics = _run_async(go())
    from edgeship.targets import load_artifact, runner_for

    runner = runner_for(load_artifact(tiny_onnx))
    for x, r in zip(xs, rs):
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(next(iter(r.json()["outputs"].values())), runner.run([x])[0], rtol=1e-4, atol=1e-5)
    calls = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("edgeship_batch_size_count")))
    assert calls < 16, metrics  # some requests shared a model call
    assert 'edgeship_requests_total{route="/v1/infer",status="200"} 16.0' in metrics
    assert "edgeship_queue_wait_seconds_bucket" in metrics and "edgeship_request_seconds_bucket" in metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_cli_serves_and_answers_the_requests_in_flight_before_stopping(tiny_onnx, png, cli_env):
    """SIGTERM while a request waits (here: for a batch to fill, 3 s): it is answered, then the
    server stops."""
    import threading

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgeship", "serve", str(tiny_onnx), "--port", str(port),
                             "--max-batch", "4", "--max-wait-ms", "3000"], env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        got = {}

        def call():
            got["r"] = httpx.post(url + "/v1/classify", content=png, headers={"content-type": "image/png"}, timeout=30)

        t = threading.Thread(target=call)
        t0 = time.monotonic()
        t.start()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert got["r"].status_code == 200 and got["r"].json()["predictions"]
        assert time.monotonic() - t0 >= 2.5  # it waited its batch window out, not cut short
        out, err = proc.communicate(timeout=30)
        assert proc.returncode in (0, -signal.SIGTERM), err  # uvicorn re-raises the signal it handled
        assert "Traceback" not in err and f"http://127.0.0.1:{port}" in err and "POST /v1/classify" in err
    finally:
        if proc.poll() is None:
            proc.kill()
