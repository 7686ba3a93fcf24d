"""The update channel's repository side: a TUF repository of signed bundles, served over HTTP and
read by python-tuf's own client (tuf.ngclient), published atomically, never downgraded."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import edgeship
from edgeship.errors import SecurityError, UsageError
from edgeship.updates import in_rollout, init_repo, publish, read_channel


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two releases of the tiny classifier (release counters 1 and 2) and their public key."""
    from edgeship.bundle import package

    tmp = tmp_path_factory.mktemp("bundles")
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp / "out", targets=["onnx"], package=False)
    b1 = package(res.out, version="1.0.0", dest=tmp / "rel")
    b2 = package(res.out, version="2.0.0", dest=tmp / "rel")
    return b1.tarball, b2.tarball, b1.public_key


@pytest.fixture()
def server(tmp_path):
    """A repository in tmp_path/repo served by serve-updates' app on a free loopback port."""
    import socket

    import uvicorn

    from edgeship.updates.server import make_app

    repo = tmp_path / "repo"
    init_repo(repo)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(make_app(repo), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield repo, f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(10)


def _client(repo: Path, url: str, state: Path):
    from tuf.ngclient import Updater

    (state / "metadata").mkdir(parents=True, exist_ok=True)
    (state / "downloads").mkdir(exist_ok=True)
    root = state / "metadata" / "root.json"
    if not root.exists():
        root.write_bytes((repo / "metadata" / "1.root.json").read_bytes())  # provisioning: the trusted root
    return Updater(metadata_dir=str(state / "metadata"), metadata_base_url=f"{url}/metadata/",
                   target_base_url=f"{url}/targets/", target_dir=str(state / "downloads"))


def test_published_releases_reach_a_tuf_client_over_http(server, bundles, tmp_path):
    repo, url = server
    b1, b2, key = bundles
    publish(b1, repo, "stable", 100, key=key)
    publish(b2, repo, "stable", 50, key=key)
    up = _client(repo, url, tmp_path / "device")
    up.refresh()
    info = up.get_targetinfo("channels/stable.json")
    channel = json.loads(Path(up.download_target(info)).read_text())
    assert [(r["version"], r["release"], r["rollout"]) for r in channel["releases"]] == [("1.0.0", 1, 100), ("2.0.0", 2, 50)]
    bundle_info = up.get_targetinfo(channel["releases"][1]["target"])
    got = Path(up.download_target(bundle_info))
    assert got.read_bytes() == b2.read_bytes()  # hash-checked by TUF on the way
    assert edgeship.verify_bundle(got, key)["release"] == 2

    # resumable downloads and a health endpoint
    path = f"{url}/targets/bundles/{bundle_info.hashes['sha256']}.{b2.name}"
    req = urllib.request.Request(path, headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 206 and r.read() == b2.read_bytes()[10:20]
    with urllib.request.urlopen(f"{url}/healthz") as r:
        assert json.loads(r.read())["timestamp_version"] == 3
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{url}/targets/../keys/root.pem")


def test_a_publish_that_dies_before_the_timestamp_leaves_the_previous_release_served(server, bundles, tmp_path):
    repo, url = server
    b1, b2, key = bundles
    publish(b1, repo, "stable", 100)

    def crash() -> None:
        raise KeyboardInterrupt("killed mid-publish")

    with pytest.raises(KeyboardInterrupt):
        publish(b2, repo, "stable", 100, _crash_before_timestamp=crash)
    up = _client(repo, url, tmp_path / "device")
    up.refresh()
    channel = json.loads(Path(up.download_target(up.get_targetinfo("channels/stable.json"))).read_text())
    assert [r["release"] for r in channel["releases"]] == [1]
    assert up.get_targetinfo(f"bundles/{b2.name}") is None
    assert [r["release"] for r in read_channel(repo, "stable")["releases"]] == [1]
    publish(b2, repo, "stable", 100)  # the next publish goes through
    up = _client(repo, url, tmp_path / "device")  # a device makes a new updater per poll
    up.refresh()
    assert up.get_targetinfo(f"bundles/{b2.name}") is not None


def test_publishing_refuses_downgrades_tampered_bundles_and_bad_names(tmp_path, bundles):
    b1, b2, key = bundles
    repo = tmp_path / "repo"
    init_repo(repo)
    with pytest.raises(UsageError):
        init_repo(repo)  # a root is never replaced
    publish(b2, repo, "stable", 100)
    with pytest.raises(SecurityError) as e:
        publish(b1, repo, "stable", 100)  # release 1 after release 2
    assert "not newer" in e.value.message
    publish(b1, repo, "beta", 100)  # channels are independent
    bad = tmp_path / "bad.tar.gz"
    data = bytearray(b1.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(edgeship.EdgeshipError):
        publish(bad, repo, "edge", 100, key=key)
    with pytest.raises(UsageError):
        publish(b1, repo, "Stable Channel", 100)
    with pytest.raises(UsageError):
        publish(b1, repo, "x", 150)
    assert [r["release"] for r in read_channel(repo, "stable")["releases"]] == [2]


def test_rollout_is_a_stable_fraction_of_devices():
    ids = [f"device-{i}" for i in range(2000)]
    share = sum(in_rollout(d, "stable", 7, 50) for d in ids) / len(ids)
    assert 0.45 < share < 0.55
    assert [in_rollout(d, "stable", 7, 50) for d in ids[:50]] == [in_rollout(d, "stable", 7, 50) for d in ids[:50]]
    assert all(in_rollout(d, "stable", 7, 100) for d in ids[:50]) and not any(in_rollout(d, "stable", 7, 0) for d in ids[:50])
    # growing the rollout keeps the devices already in it
    assert all(in_rollout(d, "stable", 7, 80) for d in ids if in_rollout(d, "stable", 7, 30))
