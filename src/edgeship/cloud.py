"""``edgeship compare-cloud``: the same artifact on the device and behind a server, measured.

The **cloud** side is the artifact behind ``edgeship serve`` on loopback, in a process of its own;
a client sends the encoded image as an app would, through a network profile: round-trip time,
jitter and the link's bandwidth each way, added in the client's transport (Linux ``tc netem``
in a network namespace is checked for and its absence said: this kernel has no ``sch_netem``). The **edge** side is the same artifact in-process, the same
image bytes, decoding and preprocessing included. Every figure is measured, or computed from
stated inputs (the instance price); none is an adjective.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from ._util import confined
from .errors import EdgeshipError, InputError, UsageError
from .locate import locate
from .manifest import Manifest, is_current, record_digests
from .targets import load_artifact

__all__ = ["NETWORKS", "Network", "LocalServer", "compare_cloud", "sample_jpeg"]


@dataclasses.dataclass(frozen=True)
class Network:
    name: str
    rtt_ms: float
    jitter_ms: float
    down_mbit: float
    up_mbit: float
    source: str


#: the documented profiles: round trip, jitter (each way, uniform ±), and the link's rates
NETWORKS: dict[str, Network | None] = {
    "wifi": Network("wifi", 20.0, 5.0, 50.0, 20.0, "a good home Wi-Fi link to a nearby region (assumed, typical)"),
    "4g": Network("4g", 60.0, 15.0, 12.0, 4.0, "a typical LTE link (assumed: 60 ms RTT, 12/4 Mbit/s)"),
    "3g": Network("3g", 562.5, 50.0, 1.44, 0.675, "Chrome DevTools' 'Fast 3G' preset (562.5 ms RTT, 1.44/0.675 Mbit/s)"),
    "offline": None,
}


def _netem_available() -> str | None:
    """None when tc netem can shape loopback here; else why not (said in the result)."""
    try:
        run = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up && tc qdisc add dev lo root netem delay 1ms"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"tc netem could not be tried: {e}"
    if run.returncode != 0:
        return f"tc netem is not available here ({(run.stderr.strip() or 'unshare failed')[:120]})"
    return None


def _wire_bytes(body: bytes, headers: Any, first_line: int) -> int:
    """What an HTTP/1.1 message puts on the wire: its first line, headers ("k: v\\r\\n") and body."""
    return first_line + sum(len(k) + len(v) + 4 for k, v in headers.raw) + len(body)


class _Shaped(httpx.AsyncBaseTransport):
    """An httpx transport adding a profile's delays: half a round trip (± jitter) and the bytes at the
    link's rate each way; offline refuses to connect."""

    def __init__(self, net: Network | None, seed: int = 0) -> None:
        self.net = net
        self.inner = httpx.AsyncHTTPTransport()
        self.rng = random.Random(seed)
        self.sent = 0
        self.received = 0

    def _leg(self, nbytes: int, mbit: float) -> float:
        net = self.net
        jitter = self.rng.uniform(-net.jitter_ms, net.jitter_ms) if net.jitter_ms else 0.0
        return max(0.0, net.rtt_ms / 2 + jitter) / 1e3 + nbytes * 8 / (mbit * 1e6)

    async def handle_async_request(self, request: Any) -> Any:
        if self.net is None:
            raise httpx.ConnectError("offline: no network")
        up = _wire_bytes(request.content, request.headers, 32)  # + "POST /v1/classify HTTP/1.1"
        self.sent += up
        await asyncio.sleep(self._leg(up, self.net.up_mbit))
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        down = _wire_bytes(body, response.headers, 17)  # + "HTTP/1.1 200 OK"
        self.received += down
        await asyncio.sleep(self._leg(down, self.net.down_mbit))
        return httpx.Response(response.status_code, headers=response.headers, content=body, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _run_async(coro: Any) -> Any:
    """``asyncio.run``, also where this thread already runs an event loop (a notebook, Playwright's
    sync API): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def sample_jpeg() -> bytes:
    """A photo as a phone app would send it: skimage's coffee cup as a quality-90 JPEG (~72 kB)."""
    import skimage.data
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(skimage.data.coffee()).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _stats(ms: list[float]) -> dict[str, float | None]:
    if not ms:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None}
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3)}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """``edgeship serve ARTIFACT [FLAGS]`` on a free loopback port, in its own process group
    (compare-cloud's cloud side, the load benchmark's server)."""

    def __init__(self, artifact: Path, *flags: str) -> None:
        import tempfile

        from .isolate import launch

        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="w+")  # never a pipe nobody drains while it serves
        self.proc = launch([sys.executable, "-m", "edgeship", "serve", str(artifact), "--port", str(self.port), *flags],
                           stdout=subprocess.DEVNULL, stderr=self.log)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise InputError(f"edgeship serve stopped: {self.log.read()[-500:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise InputError(f"edgeship serve did not answer within {timeout:g} s")

    def stop(self) -> None:
        from .isolate import kill_group

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
        self.log.close()


async def _drive(c: Any, image: bytes, ctype: str, clients: int, more: Any) -> tuple[list[float], int]:
    """``clients`` concurrent loops posting the image while ``more()`` says so: latencies (ms) of the
    answered requests and the count of the others."""
    lat: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        while more():
            t0 = time.perf_counter()
            try:
                r = await c.post("/v1/classify", content=image, headers={"content-type": ctype})
                if r.status_code == 200:
                    lat.append((time.perf_counter() - t0) * 1e3)
                else:
                    errors += 1
            except httpx.HTTPError:
                errors += 1

    await asyncio.gather(*[client() for _ in range(clients)])
    return lat, errors


async def _cloud(url: str, image: bytes, ctype: str, net: Network | None, requests: int,
                 concurrency: int) -> dict[str, Any]:
    transport = _Shaped(net)
    left = [requests]

    def more() -> bool:
        left[0] -= 1
        return left[0] >= 0

    async with httpx.AsyncClient(transport=transport, base_url=url, timeout=60) as c:
        lat, errors = await _drive(c, image, ctype, concurrency, more)
    n = max(1, requests)
    return {**_stats(lat), "requests": requests, "served": len(lat), "error_rate": round(errors / n, 4),
            "bytes_sent": round(transport.sent / n) if transport.sent else 0,
            "bytes_received": round(transport.received / n) if transport.received else 0}


async def _saturate(url: str, image: bytes, ctype: str, clients: int, seconds: float) -> dict[str, Any]:
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        t0 = time.perf_counter()
        lat, errors = await _drive(c, image, ctype, clients, lambda: time.perf_counter() < stop)
        wall = time.perf_counter() - t0
    return {"clients": clients, "seconds": round(wall, 2), "throughput_per_s": round(len(lat) / wall, 2),
            **_stats(lat), "errors": errors}


def _edge(artifact: Path, image: bytes, requests: int, threads: int) -> dict[str, Any]:
    """The artifact in this process on the encoded image, decoded as the server decodes it."""
    from .runtime import Classifier

    t0 = time.perf_counter()
    clf = Classifier(artifact, threads=threads)
    load_s = time.perf_counter() - t0
    clf.classify(image)  # the first call, not counted (it is the cold start's)
    lat = []
    for _ in range(requests):
        t1 = time.perf_counter()
        clf.classify(image)
        lat.append((time.perf_counter() - t1) * 1e3)
    return {**_stats(lat), "requests": requests, "error_rate": 0.0, "bytes_sent": 0, "bytes_received": 0,
            "load_s": round(load_s, 3), "threads": threads}


def _from_outdir(manifest: Manifest) -> tuple[Path, Path | None]:
    """A deploy's folder: the artifact a server would run (ONNX fp32, else the first with
    preprocessing) and the fastest artifact its benchmark measured at one thread (None without one)."""
    out, m = manifest.folder, manifest.doc
    digests = record_digests(m)
    recs = [r for r in m.get("artifacts") or [] if isinstance(r, dict) and isinstance(r.get("path"), str)]
    served = next((r for r in recs if r.get("target") == "onnx" and r.get("precision") == "fp32"), None) or \
        next((r for r in recs if r.get("preprocess")), None)
    if served is None:
        raise InputError(f"{out}/manifest.json lists no artifact an image can be sent to",
                         hint="deploy an image classifier into it first, or give an artifact folder")
    results = ((m.get("stages") or {}).get("benchmark") or {}).get("results") or []
    timed = [r for r in results if isinstance(r, dict) and r.get("role") == "artifact" and r.get("threads") == 1
             and is_current(r, digests)
             and isinstance((r.get("latency_ms") or {}).get("p50"), (int, float)) and isinstance(r.get("id"), str)]
    best = min(timed, key=lambda r: r["latency_ms"]["p50"], default=None)
    fastest = confined(out, best["id"], f"{out}/manifest.json: an artifact") if best else None
    return confined(out, served["path"], f"{out}/manifest.json: an artifact"), fastest


def compare_cloud(artifact: str | Path, image: str | Path | None = None, networks: list[str] | None = None,
                  requests: int = 100, concurrency: int = 1, price_per_hour: float | None = None,
                  saturation_clients: int = 32, saturation_seconds: float = 5.0, threads: int = 1,
                  progress: Any = lambda _m: None) -> dict[str, Any]:
    """Edge (in-process) against cloud (``edgeship serve`` on loopback through each network
    profile) for one artifact and one encoded image (default: a sample photo as JPEG)."""
    networks = networks or ["wifi", "4g", "3g", "offline"]
    bad = [n for n in networks if n not in NETWORKS]
    if bad:
        raise UsageError(f"unknown network profile {bad[0]!r}", hint=f"choose from {', '.join(NETWORKS)}")
    path = Path(artifact)
    outdir, fastest = None, None
    loc = locate(path)
    if loc.manifest is not None:  # a deploy's folder: serve its ONNX fp32, also time its fastest on the edge
        outdir = path
        path, fastest = _from_outdir(loc.manifest)
    art = loc.artifact or load_artifact(path)
    if art.preprocess is None:
        raise UsageError(f"{art.name} has no image preprocessing: compare-cloud sends images",
                         hint="deploy an image classifier (or state --preprocess when deploying)")
    if image is None:
        data, ctype, what = sample_jpeg(), "image/jpeg", "skimage.data.coffee() as a quality-90 JPEG"
    else:
        from .readers import read_bytes
        from .readers.images import IMAGE_LIMIT

        p = Path(image)
        data, what = read_bytes(p, "image", max_bytes=IMAGE_LIMIT, hint="give a JPEG or PNG file"), str(p)
        ctype = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    why_not_netem = _netem_available()
    progress("edge: the artifact in this process")
    edge = _edge(art.root, data, requests, threads)
    edge_fastest = None
    if fastest is not None and fastest != art.root:
        progress(f"edge: the deploy's fastest artifact ({fastest.name}) in this process")
        try:
            edge_fastest = {"artifact": fastest.name, "digest": load_artifact(fastest).digest,
                            **_edge(fastest, data, requests, threads)}
        except EdgeshipError as e:
            edge_fastest = {"artifact": fastest.name, "error": e.message}
    server = LocalServer(art.root, "--max-batch", "1")
    try:
        progress("cloud: starting edgeship serve on loopback")
        server.wait_ready()
        cloud = {}
        for name in networks:
            progress(f"cloud over {name}: {requests} requests")
            cloud[name] = _run_async(_cloud(server.url, data, ctype, NETWORKS[name], requests, concurrency))
        progress(f"cloud: saturating the server ({saturation_clients} clients, {saturation_seconds:g} s, no network delay)")
        sat = _run_async(_saturate(server.url, data, ctype, saturation_clients, saturation_seconds))
    finally:
        server.stop()
    cost = None
    if price_per_hour is not None and sat["throughput_per_s"]:
        cost = {"price_per_hour": price_per_hour, "throughput_per_s": sat["throughput_per_s"],
                "per_million": round(price_per_hour / (sat["throughput_per_s"] * 3600) * 1e6, 4),
                "note": "one server process like this one per instance-hour, kept saturated"}
    return {"schema": "edgeship.compare-cloud/1", "artifact": art.name, "target": art.target, "precision": art.precision,
            # what was measured: the folder's name in the deploy's folder and the digest of its bytes
            "artifact_id": art.root.name, "digest": art.digest,
            "image": {"what": what, "bytes": len(data), "content_type": ctype},
            "emulation": "client transport",
            "emulation_note": (why_not_netem or "tc netem would work here; this version still adds the delays in the "
                               "client transport") + "; each request gets the link to itself (no sharing between "
                               "concurrent requests, no TCP slow start: keep-alive connections)",
            "networks": {n: dataclasses.asdict(NETWORKS[n]) if NETWORKS[n] else None for n in networks},
            "edge": edge, "edge_fastest": edge_fastest, "cloud": cloud, "saturation": sat, "cost": cost,
            "requests": requests, "concurrency": concurrency, "outdir": str(outdir) if outdir else None,
            "privacy": {"edge_bytes_leaving_device": 0, "cloud_bytes_leaving_device": len(data),
                        "note": "the user's image leaves the device on every cloud inference"},
            "machine": {"cpus": os.cpu_count()}}
