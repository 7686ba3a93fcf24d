"""edgeship compare-cloud: the same artifact on the device and behind a server, through network profiles."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

from edgeship import api
from edgeship.cloud import NETWORKS, _run_async, _Shaped
from edgeship.errors import UsageError


def test_a_profile_adds_its_round_trip_and_the_bytes_at_the_links_rate():
    """3G ('Fast 3G': 562.5 ms RTT, 0.675 Mbit/s up): 100 kB up takes ~1.2 s plus the round trip."""
    body = b"\xff" * 100_000
    transport = _Shaped(NETWORKS["3g"].__class__(**{**NETWORKS["3g"].__dict__, "jitter_ms": 0.0}))
    transport.inner = httpx.MockTransport(lambda r: httpx.Response(200, json={"ok": True}))

    async def go() -> float:
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as c:
            t0 = time.perf_counter()
            r = await c.post("/v1/classify", content=body)
            assert r.status_code == 200 and r.json() == {"ok": True}
            return time.perf_counter() - t0

    took = _run_async(go())
    expect = 0.5625 + (transport.sent * 8 / 0.675e6) + (transport.received * 8 / 1.44e6)
    assert transport.sent > 100_000 and transport.received > 10
    assert expect - 0.01 <= took <= expect + 0.5, (took, expect)

    async def offline() -> None:
        async with httpx.AsyncClient(transport=_Shaped(None), base_url="http://cloud") as c:
            await c.post("/v1/classify", content=body)

    with pytest.raises(httpx.ConnectError, match="offline"):
        _run_async(offline())


def test_edge_and_cloud_measured_side_by_side_and_written_to_the_folder(tiny_onnx, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_onnx.parent, out)
    doc = api.compare_cloud(out, networks=["wifi", "offline"], requests=5, saturation_clients=4,
                            saturation_seconds=0.5, price_per_hour=0.5)
    assert doc["edge"]["p50_ms"] > 0 and doc["edge"]["bytes_sent"] == 0
    wifi = doc["cloud"]["wifi"]
    assert wifi["error_rate"] == 0 and wifi["p50_ms"] >= 15  # at least the round trip less its jitter
    assert wifi["bytes_sent"] > doc["image"]["bytes"] == doc["privacy"]["cloud_bytes_leaving_device"]
    assert doc["cloud"]["offline"]["error_rate"] == 1.0 and doc["cloud"]["offline"]["p50_ms"] is None
    tp = doc["saturation"]["throughput_per_s"]
    assert tp > 0 and doc["cost"]["per_million"] == pytest.approx(0.5 / (tp * 3600) * 1e6, rel=1e-3)
    assert doc["emulation"] == "client transport" and "tc netem" in doc["emulation_note"]
    manifest = __import__("json").loads((out / "manifest.json").read_text())
    assert manifest["stages"]["compare_cloud"]["cloud"]["offline"]["error_rate"] == 1.0
    html = (out / "report.html").read_text()
    assert "Edge versus cloud, measured" in html and "cloud, wifi" in html and "cloud, offline" in html


def test_unknown_profile_and_price(tiny_onnx):
    with pytest.raises(UsageError, match="unknown network profile 'dialup'"):
        api.compare_cloud(tiny_onnx, networks=["dialup"])


def test_the_cli_table_fits_80_columns(tiny_onnx, cli_env):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "edgeship", "compare-cloud", str(tiny_onnx), "--requests", "3",
                          "--network", "wifi,4g,3g,offline", "--saturation-seconds", "0.3"],
                         env={**cli_env, "COLUMNS": "80"}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert max(len(line) for line in run.stdout.splitlines()) <= 80, run.stdout
    assert "cloud offline" in run.stdout and "offline: the edge answered 3 of 3; the cloud 0 of 3" in run.stdout
