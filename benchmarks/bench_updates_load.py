"""Issue 14's load figures: many simulated devices polling and downloading at once from
``edgeship serve-updates`` on loopback, each a real TUF client (tuf.ngclient).

    .venv/bin/python benchmarks/bench_updates_load.py [--devices 200] [--polls 3] [--bundle B.tar.gz --key PUB]

Without ``--bundle`` it deploys and packages the default model (onnx fp32) once into
``edgeship-out-updates-load/``. It makes a repository, publishes the bundle to ``stable`` at 100%,
starts ``edgeship serve-updates`` as its own process, and runs ``--devices`` threads at once; each
provisions a device (the trusted root), then polls ``--polls`` times: refresh the metadata, read
the channel, and download the bundle when it has not got it yet (TUF checks length and hash).
Prints poll latency p50/p99 (a poll that only reads metadata), download latency p50/p99, bytes
received and the error count (goal 0); exit code 1 on any error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def _bundle(out: Path) -> tuple[Path, Path]:
    if not (out / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "edgeship", "deploy", "--targets", "onnx", "--out", str(out)], check=True)
    doc = json.loads((out / "manifest.json").read_text())["stages"]["bundle"]
    return out / doc["tarball"], out / doc["public_key"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--polls", type=int, default=3)
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--key", type=Path)
    ap.add_argument("--out", type=Path, default=Path("edgeship-out-updates-load"))
    args = ap.parse_args()

    from tuf.ngclient import Updater

    from edgeship.updates import init_repo, publish

    bundle, key = (args.bundle, args.key) if args.bundle else _bundle(args.out)
    work = Path(tempfile.mkdtemp(prefix="edgeship-load-"))
    repo = work / "repo"
    init_repo(repo)
    publish(bundle, repo, "stable", 100, key=key)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "edgeship", "serve-updates", str(repo), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        polls: list[float] = []
        downloads: list[float] = []
        errors: list[str] = []
        received = [0]
        lock = threading.Lock()
        start = threading.Barrier(args.devices)

        def device(i: int) -> None:
            state = work / "devices" / str(i)
            (state / "metadata").mkdir(parents=True)
            (state / "downloads").mkdir()
            shutil.copyfile(repo / "metadata" / "1.root.json", state / "metadata" / "root.json")
            have = False
            start.wait()
            for _ in range(args.polls):
                try:
                    t0 = time.perf_counter()
                    up = Updater(metadata_dir=str(state / "metadata"), metadata_base_url=f"{url}/metadata/",
                                 target_base_url=f"{url}/targets/", target_dir=str(state / "downloads"))
                    up.refresh()
                    channel = json.loads(Path(up.download_target(up.get_targetinfo("channels/stable.json"))).read_text())
                    t1 = time.perf_counter()
                    got = 0
                    if not have:
                        info = up.get_targetinfo(channel["releases"][-1]["target"])
                        path = Path(up.download_target(info))
                        got = path.stat().st_size
                        path.unlink()
                        have = True
                    t2 = time.perf_counter()
                    with lock:
                        (downloads if got else polls).append((t2 - t0 if got else t1 - t0) * 1e3)
                        received[0] += got
                except Exception as e:  # noqa: BLE001 - counted and shown
                    with lock:
                        errors.append(f"device {i}: {type(e).__name__}: {str(e)[:120]}")

        t0 = time.perf_counter()
        threads = [threading.Thread(target=device, args=(i,)) for i in range(args.devices)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    doc = {"devices": args.devices, "polls_per_device": args.polls, "bundle_mb": round(bundle.stat().st_size / 1e6, 1),
           "wall_s": round(wall, 1), "metadata_polls": len(polls),
           "poll_p50_ms": round(_pct(polls, 0.5), 1), "poll_p99_ms": round(_pct(polls, 0.99), 1),
           "downloads": len(downloads), "download_p50_ms": round(_pct(downloads, 0.5), 1),
           "download_p99_ms": round(_pct(downloads, 0.99), 1), "bytes_received": received[0],
           "throughput_mb_s": round(received[0] / 1e6 / wall, 1), "errors": len(errors),
           "load_average": round(os.getloadavg()[0], 2),
           "poll_mean_ms": round(statistics.mean(polls), 1) if polls else None}
    print(json.dumps(doc, indent=1))
    for e in errors[:10]:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
