"""Load on ``edgeship serve``: many concurrent clients on loopback, with and without batching, and
malformed uploads in the middle of it (issue 19's figures).

    .venv/bin/python benchmarks/bench_serve.py [--artifact DIR] [--clients 100] [--seconds 15]

Serves the artifact (default: the embedded model's ONNX fp32, deployed into a temp folder; the
cache makes that quick after the first time) twice — ``--max-batch 1`` and ``--max-batch 8`` —
and for each drives ``--clients`` concurrent clients, each sending a JPEG photo to
``/v1/classify`` as an app would, for ``--seconds``. While the load runs, it sends a truncated JPEG,
a 50 MB body, a wrong content type and a tensor of the wrong shape: each must get a 4xx with a
reason. Prints per run: requests, errors, p50/p99 latency, throughput, the server's own batch
sizes (from /metrics). The clients run on the same 2 cores as the server: the figures are the
pair's, on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from edgeship.cloud import LocalServer, sample_jpeg

EDGESHIP = [sys.executable, "-m", "edgeship"]


def _artifact(work: Path) -> Path:
    out = work / "deploy"
    subprocess.run([*EDGESHIP, "deploy", "efficientnet-lite0", "--targets", "onnx", "--no-package", "--out", str(out),
                    "--overwrite"], check=True, capture_output=True)
    return out / "onnx-fp32"


async def _bad(c: httpx.AsyncClient, photo: bytes, shape: list[int]) -> list[tuple[str, int, str]]:
    """Each malformed upload once: (what, status, reason)."""
    wrong = np.zeros([1] + [max(1, d // 2) if isinstance(d, int) else 1 for d in shape[1:]], np.float32).tolist()
    cases = [
        ("truncated JPEG", "/v1/classify", photo[: len(photo) // 2], "image/jpeg"),
        ("50 MB body", "/v1/classify", b"\xff" * (50 << 20), "image/jpeg"),
        ("wrong content type", "/v1/classify", photo, "text/plain"),
        ("wrong tensor shape", "/v1/infer", json.dumps({"inputs": [wrong]}).encode(), "application/json"),
    ]
    out = []
    for what, route, body, ctype in cases:
        try:
            r = await c.post(route, content=body, headers={"content-type": ctype}, timeout=60)
            reason = r.json().get("error", "") if r.headers.get("content-type", "").startswith("application/json") else r.text
            out.append((what, r.status_code, reason[:90]))
        except httpx.HTTPError as e:  # the server may close a 50 MB upload early: the status is what counts
            out.append((what, -1, f"{type(e).__name__}: {e}"[:90]))
    return out


async def _load(url: str, photo: bytes, clients: int, seconds: float, shape: list[int]) -> dict:
    lat: list[float] = []
    errors: dict[str, int] = {}
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as c:
        async def client() -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    r = await c.post("/v1/classify", content=photo, headers={"content-type": "image/jpeg"})
                    if r.status_code == 200:
                        lat.append(time.perf_counter() - t0)
                    else:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                except httpx.HTTPError as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1

        async def bad_later() -> list:
            await asyncio.sleep(seconds / 3)
            return await _bad(c, photo, shape)

        t0 = time.perf_counter()
        results = await asyncio.gather(*[client() for _ in range(clients)], bad_later())
        wall = time.perf_counter() - t0
        metrics = (await c.get("/metrics")).text
    batches = {}
    for line in metrics.splitlines():
        if line.startswith(("edgeship_batch_size_sum", "edgeship_batch_size_count")):
            batches[line.split()[0]] = float(line.split()[-1])
    mean_batch = batches.get("edgeship_batch_size_sum", 0) / max(1, batches.get("edgeship_batch_size_count", 0))
    ms = np.array(lat) * 1e3
    return {"requests": len(lat), "errors": errors, "wall_s": wall, "throughput": len(lat) / wall,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
            "mean_batch": mean_batch, "bad": results[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", type=Path, help="artifact folder to serve (default: the embedded model's onnx fp32)")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeship-bench-serve-"))
    art = args.artifact or _artifact(work)
    photo = sample_jpeg()
    shape = json.loads((art / "artifact.json").read_text())["inputs"][0]["shape"]
    print(f"serving {art} ({os.cpu_count()} CPUs shared by server and clients); {args.clients} clients for "
          f"{args.seconds:g} s each run; a {len(photo) / 1e3:.0f} kB JPEG per request")
    rows = []
    for label, flags in (("no batching", ["--max-batch", "1"]), ("batching 8", ["--max-batch", "8", "--max-wait-ms", "5"])):
        server = LocalServer(art, *flags)  # what compare-cloud serves with: edgeship serve on a free port
        try:
            server.wait_ready()
            r = asyncio.run(_load(server.url, photo, args.clients, args.seconds, shape))
        finally:
            server.stop()
        rows.append((label, r))
    print(f"{'run':<12} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} {'batch':>6}")
    for label, r in rows:
        print(f"{label:<12} {r['requests']:>8} {sum(r['errors'].values()):>6} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['throughput']:>7.1f} {r['mean_batch']:>6.2f}" + (f"  {r['errors']}" if r["errors"] else ""))
    print("malformed uploads during the load (each must be a 4xx with a reason):")
    ok = True
    for label, r in rows:
        for what, status, reason in r["bad"]:
            good = 400 <= status < 500 and bool(reason)
            ok &= good
            print(f"  {label:<12} {what:<20} {status:>4}  {reason}")
    print(f"0 errors under load: {all(not r['errors'] for _, r in rows)}; every malformed upload a 4xx: {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
