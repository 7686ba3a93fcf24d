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
from servers import free_port, wait_healthy


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Path:
    """The tiny classifier's deploy output folder (ONNX), to package releases of."""
    tmp = tmp_path_factory.mktemp("deployed")
    return edgeship.deploy("tinymodels:tiny_classifier", out=tmp / "out", targets=["onnx"], package=False).out


@pytest.fixture(scope="module")
def releases(tmp_path_factory, deployed) -> tuple[Path, Path, Path, Path]:
    """Three releases of the tiny classifier (1.0.0, 2.0.0, 3.0.0: release counters 1, 2, 3), the
    third validly signed but with golden vectors its model fails, and their public key."""
    import numpy as np

    from edgeship.artifact import sha256_file
    from edgeship.bundle import BUNDLE_JSON, _sign, _tar, package

    tmp = tmp_path_factory.mktemp("bundles")
    b1 = package(deployed, version="1.0.0", dest=tmp / "rel")
    b2 = package(deployed, version="2.0.0", dest=tmp / "rel")
    b3 = package(deployed, version="3.0.0", dest=tmp / "rel")
    folder = b3.folder
    golden = json.loads((folder / "golden/golden.json").read_text())
    for rec in golden["artifacts"].values():
        for files in rec["outputs"].values():
            for f in files:
                np.save(folder / f, -np.load(folder / f))  # the expected outputs no model gives
    doc = json.loads((folder / BUNDLE_JSON).read_text())
    for f in doc["files"]:
        f["sha256"], f["size"] = sha256_file(folder / f["path"]), (folder / f["path"]).stat().st_size
    (folder / BUNDLE_JSON).write_text(json.dumps(doc, indent=1) + "\n")
    (folder / "model.sig").unlink()
    _sign(folder, b3.key)
    b3.tarball.unlink()
    _tar(folder, folder.name, b3.tarball)
    assert edgeship.verify_bundle(b3.tarball, b3.public_key)["release"] == 3
    return b1.tarball, b2.tarball, b3.tarball, b1.public_key


@pytest.fixture(scope="module")
def bundles(releases) -> tuple[Path, Path, Path]:
    return releases[0], releases[1], releases[3]


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


# ---- the device agent ------------------------------------------------------------------------

def _agent(repo: Path, key: Path, state: Path, device_id: str = "dev-1") -> Path:
    from edgeship.updates.agent import init_state

    init_state(state, repo / "metadata" / "1.root.json", key, channel="stable", device_id=device_id)
    return state


def test_agent_installs_follows_and_rolls_back_a_release_that_fails_its_health_check(server, releases, tmp_path, photo_file):
    from edgeship.runtime import Classifier
    from edgeship.updates.agent import check_once, status

    repo, url = server
    b1, b2, b3, key = releases
    state = _agent(repo, key, tmp_path / "device")
    assert check_once(state, url)["action"] == "none"  # nothing published yet
    publish(b1, repo, "stable", 100, key=key)
    assert check_once(state, url) == {"ok": True, "action": "installed", "release": 1, "version": "1.0.0"}
    clf = Classifier.from_agent_state(state)
    first = clf.classify(photo_file)
    served_from = clf.runner.path
    publish(b2, repo, "stable", 100, key=key)
    assert check_once(state, url)["release"] == 2
    assert clf.classify(photo_file) == first and clf.runner.path != served_from  # picked up without a restart
    st = status(state)
    assert (st["active"]["release"], st["previous"]["release"], st["active"]["state"]) == (2, 1, "committed")

    publish(b3, repo, "stable", 100, key=key)  # validly signed; its golden vectors fail
    res = check_once(state, url)
    assert res["action"] == "rolled_back" and "golden vectors" in res["reason"]
    st = status(state)
    assert st["active"]["release"] == 2 and st["bad_releases"] == ["3.0.0"] and "3.0.0" in st["last_failure"]["reason"]
    assert st["previous"]["release"] == 1  # the rollback restored what status showed before
    assert clf.classify(photo_file) == first  # the old model keeps serving
    assert check_once(state, url)["action"] == "none"  # a bad release is not tried again


def _on_release_1_with_2_published(server, bundles, tmp_path):  # noqa: ANN001, ANN202
    """A device that installed release 1, and release 2 published since: (repo, url, key, state)."""
    from edgeship.updates.agent import check_once

    repo, url = server
    b1, b2, key = bundles
    state = _agent(repo, key, tmp_path / "device")
    publish(b1, repo, "stable", 100)
    assert check_once(state, url)["release"] == 1
    publish(b2, repo, "stable", 100)
    return repo, url, key, state


def test_agent_killed_between_switch_and_health_check_finishes_on_restart(server, bundles, tmp_path):
    from edgeship.updates.agent import check_once, status

    repo, url, key, state = _on_release_1_with_2_published(server, bundles, tmp_path)

    def die(step: str) -> None:
        if step == "health_check":
            raise SystemExit("SIGKILL stand-in")

    with pytest.raises(SystemExit):
        check_once(state, url, hook=die)
    assert status(state)["active"]["state"] == "trial"
    from edgeship.runtime import Classifier

    assert Classifier.from_agent_state(state).served_by  # a trial switch serves the committed release before it
    assert check_once(state, url)["action"] == "installed"
    assert status(state)["active"]["state"] == "committed" and status(state)["active"]["release"] == 2


def test_staged_rollout_moves_only_the_devices_in_it_and_a_tampered_target_is_refused(server, bundles, tmp_path):
    from edgeship.updates.agent import check_once, status

    repo, url = server
    b1, b2, key = bundles
    publish(b1, repo, "stable", 100)
    ids = [f"dev-{i}" for i in range(200)]
    inside = next(d for d in ids if in_rollout(d, "stable", "2.0.0", 50))  # a release is drawn for by its version
    outside = next(d for d in ids if not in_rollout(d, "stable", "2.0.0", 50))
    a = _agent(repo, key, tmp_path / "a", inside)
    b = _agent(repo, key, tmp_path / "b", outside)
    check_once(a, url)
    check_once(b, url)
    publish(b2, repo, "stable", 50)
    assert check_once(a, url)["release"] == 2
    assert check_once(b, url)["action"] == "none" and status(b)["active"]["release"] == 1

    # a flipped byte in the served bundle: TUF's hash check refuses it, release 1 keeps serving
    c = _agent(repo, key, tmp_path / "c", inside)
    target = next((repo / "targets" / "bundles").glob(f"*.{b2.name}"))
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    res = check_once(c, url)
    assert res["ok"] is False and "hash" in res["reason"].lower()
    assert status(c)["active"] is None and status(c)["last_failure"]
    target.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    res = check_once(c, url)
    assert res["ok"] is False and "LengthOrHashMismatch" in res["reason"] and status(c)["active"] is None


KILLER = """
import os, signal, sys
from edgeship.updates.agent import check_once
state, url, at = sys.argv[1:4]

seen = 0


def hook(step):
    global seen
    if step == at:
        seen += 1
        if seen == 2:  # mid-way through a download or an unpack; before the step itself otherwise
            os.kill(os.getpid(), signal.SIGKILL)
    if step == at and at not in ("downloading", "unpacking"):
        os.kill(os.getpid(), signal.SIGKILL)

print(check_once(state, url, hook=hook, chunk=4096))
"""


@pytest.mark.parametrize("step", ["refresh", "download", "downloading", "verify", "unpack", "unpacking", "switch",
                                  "health_check", "commit"])
def test_sigkill_at_every_step_leaves_exactly_one_complete_release_serving(server, bundles, tmp_path, step):
    import subprocess
    import sys

    from edgeship.runtime import Classifier
    from edgeship.updates.agent import check_once, status

    repo, url, key, state = _on_release_1_with_2_published(server, bundles, tmp_path)
    run = subprocess.run([sys.executable, "-c", KILLER, str(state), url, step], capture_output=True, text=True, timeout=300)
    assert run.returncode == -9, run.stderr[-1000:]
    # killed: whatever it left, the release that serves is a complete, verified one
    serving = Classifier.from_agent_state(state)
    assert edgeship.verify_bundle(Path(serving.runner.path).parents[2], key)["ok"]
    # restarted: it ends on release 2, committed, complete
    res = check_once(state, url)
    assert status(state)["active"]["release"] == 2 and status(state)["active"]["state"] == "committed", res
    if step == "downloading":
        assert res["resumed_bytes"] >= 4096  # what arrived before the kill was not fetched again
    active = state / status(state)["active"]["bundle"]
    assert edgeship.verify_bundle(active, key)["release"] == 2
    assert not [p for p in (state / "slots").iterdir() if p.name.startswith(".")]


DISK_FULL = """
import json, resource, signal, sys
from edgeship.updates.agent import check_once
state, url = sys.argv[1:3]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk


def hook(step):
    if step == "unpack":  # the disk fills up as the release is unpacked
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))


print(json.dumps(check_once(state, url, hook=hook)))
"""


def test_metadata_attacks_a_full_disk_and_a_dead_server_are_refused_and_the_old_model_serves(server, bundles, tmp_path):
    import subprocess
    import sys

    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata

    from edgeship.runtime import Classifier
    from edgeship.updates.agent import check_once, status

    repo, url = server
    b1, b2, key = bundles
    state = _agent(repo, key, tmp_path / "device")
    publish(b1, repo, "stable", 100)
    assert check_once(state, url)["release"] == 1
    publish(b2, repo, "stable", 100)
    meta = repo / "metadata"
    good_ts = (meta / "timestamp.json").read_bytes()

    def refused(what: str) -> None:
        res = check_once(state, url)
        assert res["ok"] is False and status(state)["active"]["release"] == 1, (what, res)
        assert status(state)["last_failure"]["reason"], what
        assert Classifier.from_agent_state(state).served_by  # the old model keeps serving

    # timestamp metadata signed by a key the root does not name
    md = Metadata.from_bytes(good_ts)
    md.signatures.clear()
    md.sign(CryptoSigner.generate_ed25519())
    (meta / "timestamp.json").write_bytes(md.to_bytes())
    refused("wrong key")
    # expired timestamp metadata (a frozen feed), validly signed
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    ts_key = CryptoSigner(load_pem_private_key((repo / "keys" / "timestamp.pem").read_bytes(), None))
    md = Metadata.from_bytes(good_ts)
    md.signed.expires = md.signed.expires.replace(year=2020)
    md.signatures.clear()
    md.sign(ts_key)
    (meta / "timestamp.json").write_bytes(md.to_bytes())
    refused("expired timestamp")
    # a disk that fills up while unpacking: not installed, tried again later
    (meta / "timestamp.json").write_bytes(good_ts)
    run = subprocess.run([sys.executable, "-c", DISK_FULL, str(state), url], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-1000:]
    res = json.loads(run.stdout.strip().splitlines()[-1])
    assert res["ok"] is False and "unpacking failed" in res["reason"] and status(state)["active"]["release"] == 1
    assert not [p for p in (state / "slots").iterdir() if p.name.startswith(".")]
    assert status(state)["bad_releases"] == []  # the release is not to blame
    # the server down: reported, nothing changes
    res = check_once(state, "http://127.0.0.1:9")
    assert res["ok"] is False and status(state)["active"]["release"] == 1
    assert res["kind"] == "unreachable" and "Connection refused" in res["reason"]  # not a "slow retrieval"
    # the next good check installs release 2; then a replayed older timestamp/snapshot is refused
    assert check_once(state, url)["release"] == 2
    def resign_timestamp(version_step: int) -> None:
        """The good timestamp, its version moved by ``version_step``, pointing at the previous snapshot."""
        ts = Metadata.from_bytes(good_ts)
        ts.signed.version += version_step
        ts.signed.snapshot_meta.version -= 1
        ts.signatures.clear()
        ts.sign(ts_key)
        (meta / "timestamp.json").write_bytes(ts.to_bytes())

    resign_timestamp(-1)
    res = check_once(state, url)
    assert res["ok"] is False and "version" in res["reason"].lower() and status(state)["active"]["release"] == 2
    # a newer timestamp that points back at an older snapshot (a replayed snapshot)
    resign_timestamp(+5)
    res = check_once(state, url)
    assert res["ok"] is False and "snapshot" in res["reason"].lower() and status(state)["active"]["release"] == 2


def test_an_interrupted_bundle_download_resumes_and_a_wrong_partial_is_dropped(server, bundles, tmp_path):
    import hashlib

    from edgeship.updates.agent import check_once, status

    repo, url = server
    b1, b2, key = bundles
    publish(b1, repo, "stable", 100)
    info = json.loads((repo / "metadata" / "2.targets.json").read_text())["signed"]["targets"][f"bundles/{b1.name}"]
    target_url = f"{url}/targets/bundles/{info['hashes']['sha256']}.{b1.name}"
    part = lambda state: state / "tuf" / "partial" / (hashlib.sha256(target_url.encode()).hexdigest()[:32] + ".part")  # noqa: E731

    # half the bundle arrived before the connection dropped: the rest is asked for with a range request
    state = _agent(repo, key, tmp_path / "a")
    part(state).parent.mkdir(parents=True)
    half = b1.read_bytes()[: b1.stat().st_size // 2]
    part(state).write_bytes(half)
    res = check_once(state, url)
    assert res["action"] == "installed" and res["resumed_bytes"] == len(half)
    assert not part(state).exists()

    # bytes kept from something else: TUF's hash check fails, they are dropped, the next try is whole
    state = _agent(repo, key, tmp_path / "b")
    part(state).parent.mkdir(parents=True)
    part(state).write_bytes(b"\0" * 1000)
    res = check_once(state, url)
    assert res["ok"] is False and "LengthOrHashMismatch" in res["reason"] and not part(state).exists()
    assert check_once(state, url)["action"] == "installed" and status(state)["active"]["release"] == 1


def test_the_agent_backs_off_while_the_server_is_down_and_resumes_its_pace(tmp_path, monkeypatch):
    from edgeship.updates import agent

    answers = iter([{"ok": False}, {"ok": False}, {"ok": False}, {"ok": True}, {"ok": True}])
    monkeypatch.setattr(agent, "check_once", lambda state, server: next(answers))
    waits: list[float] = []
    agent.run(tmp_path, "http://127.0.0.1:9", interval=10, max_backoff=30, checks=5, sleep=waits.append)
    assert waits == [20, 30, 30, 10]


def test_a_refreshed_timestamp_keeps_devices_updating_after_the_old_one_expired(server, bundles, tmp_path):
    from edgeship.updates import refresh_timestamp
    from edgeship.updates.agent import check_failed, check_once, status

    repo, url = server
    b1, b2, key = bundles
    publish(b1, repo, "stable", 100)
    state = _agent(repo, key, tmp_path / "device")
    refresh_timestamp(repo, days=-1)  # what a repository nobody re-signs looks like after a week
    res = check_once(state, url)
    assert res["ok"] is False and "expired" in status(state)["last_failure"]["reason"].lower()
    err = check_failed(res, url)  # what `edgeship agent --once` exits with: refused for safety, and what to run
    assert isinstance(err, SecurityError) and url in err.message and "edgeship repo refresh" in err.hint
    refresh_timestamp(repo)
    assert check_once(state, url)["action"] == "installed"


def test_a_forged_channel_that_relabels_an_old_bundle_is_refused_as_a_downgrade(server, bundles, tmp_path):
    # someone with the targets key lists genuine release 1 (validly signed) as "release 3"
    import shutil
    import tempfile

    from tuf.api.metadata import MetaFile

    from edgeship.updates.agent import check_once, status
    from edgeship.updates.repo import _add_target, _load, _signers, _write

    repo, url = server
    b1, b2, key = bundles
    publish(b1, repo, "stable", 100)
    publish(b2, repo, "stable", 100)
    state = _agent(repo, key, tmp_path / "device")
    assert check_once(state, url)["release"] == 2
    old = tmp_path / "m-3.0.0.tar.gz"
    shutil.copyfile(b1, old)
    signers = _signers(repo)
    tgt, snap, ts = _load(repo)
    channel = read_channel(repo, "stable")
    channel["releases"].append({"version": "3.0.0", "release": 3, "name": "m", "target": f"bundles/{old.name}", "rollout": 100})
    tgt.signed.targets[f"bundles/{old.name}"] = _add_target(repo, f"bundles/{old.name}", old)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "stable.json").write_text(json.dumps(channel))
        tgt.signed.targets["channels/stable.json"] = _add_target(repo, "channels/stable.json", Path(d) / "stable.json")
    for md, role in ((tgt, "targets"), (snap, "snapshot"), (ts, "timestamp")):
        md.signed.version += 1
        if role == "snapshot":
            md.signed.meta["targets.json"] = MetaFile(version=tgt.signed.version)
        if role == "timestamp":
            md.signed.snapshot_meta = MetaFile(version=snap.signed.version)
        md.signatures.clear()
        md.sign(signers[role])
        _write(md, repo / "metadata" / (f"{md.signed.version}.{role}.json" if role != "timestamp" else "timestamp.json"))
    res = check_once(state, url)
    assert res["action"] == "refused" and "holds 1.0.0 (release 1), the channel said 3.0.0" in res["reason"]
    assert status(state)["active"]["release"] == 2 and "3.0.0" in status(state)["bad_releases"]


# ---- releases ordered by semantic version (issue: "release 1 is not newer than release 1") ----------

def test_semantic_version_precedence_is_semver_orgs():
    from edgeship.bundle.semver import is_newer, newest, precedence

    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
               "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "1.9.0", "1.10.0", "2.0.0-0", "2.0.0", "10.0.0"]  # semver.org 11
    assert sorted(reversed(ordered), key=precedence) == ordered
    assert all(is_newer(b, a) and not is_newer(a, b) for a, b in zip(ordered, ordered[1:]))
    assert precedence("1.0.0+build.1") == precedence("1.0.0+build.2") == precedence("1.0.0")  # build metadata ignored
    assert not is_newer("1.0.0+build.2", "1.0.0+build.1")
    for bad in ("1.0", "01.0.0", "1.0.0-01", "1.0.0-", "1.0.0-a..b", "v1.0.0", "", None, 3):
        with pytest.raises(ValueError):
            precedence(bad)
    assert newest([{"version": "1.9.0"}, {"version": "junk"}, {"version": "1.10.0"}, {"version": "1.10.0-rc.1"}]) == {"version": "1.10.0"}


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory, deployed) -> dict[str, Path]:
    """1.0.0 and 1.1.0 packaged into two different destination folders (both release counter 1),
    and 1.1.0-rc.1 into a third."""
    from edgeship.bundle import package

    tmp = tmp_path_factory.mktemp("folders")
    out = {v: package(deployed, version=v, dest=tmp / d).tarball for v, d in
           (("1.0.0", "d1"), ("1.1.0", "d2"), ("1.1.0-rc.1", "d3"))}
    assert {edgeship.verify_bundle(t, deployed / "keys" / "signing-key.pub.pem")["release"] for t in out.values()} == {1}
    out["key"] = deployed / "keys" / "signing-key.pub.pem"
    return out


def test_releases_packaged_into_different_folders_are_ordered_by_version(server, two_folders, tmp_path):
    from edgeship.updates.agent import check_once, status

    repo, url = server
    key = two_folders["key"]
    state = _agent(repo, key, tmp_path / "device")
    publish(two_folders["1.0.0"], repo, "stable", 100, key=key)
    assert check_once(state, url)["version"] == "1.0.0"
    publish(two_folders["1.1.0"], repo, "stable", 100, key=key)  # was: "release 1 is not newer than release 1"
    assert [(r["version"], r["release"]) for r in read_channel(repo, "stable")["releases"]] == [("1.0.0", 1), ("1.1.0", 1)]
    res = check_once(state, url)
    assert res["action"] == "installed" and res["version"] == "1.1.0"
    assert status(state)["active"]["version"] == "1.1.0" and status(state)["previous"]["version"] == "1.0.0"
    assert check_once(state, url)["action"] == "none"  # the same version is not installed again
    # the rollback defence, by version: an older one, and a pre-release of the one on the channel, are refused
    for older in ("1.0.0", "1.1.0-rc.1"):
        with pytest.raises(SecurityError) as e:
            publish(two_folders[older], repo, "stable", 100)
        assert e.value.message.startswith(two_folders[older].name)
        assert f"version {older} is not newer than 1.1.0, the latest on channel stable" in e.value.message
        assert "--version" in e.value.hint
    # a channel of its own takes the pre-release; a device there goes to the release after it
    from edgeship.updates.agent import init_state

    beta = tmp_path / "beta-device"
    init_state(beta, repo / "metadata" / "1.root.json", key, channel="beta", device_id="dev-b")
    publish(two_folders["1.1.0-rc.1"], repo, "beta", 100)
    publish(two_folders["1.1.0"], repo, "beta", 100)
    assert check_once(beta, url)["version"] == "1.1.0"  # the newest by precedence, not the last published


def test_an_agent_never_installs_a_version_not_newer_than_its_own(server, two_folders, tmp_path):
    """A channel forged (with the targets key) to list 1.0.0 again as new: by version, the agent
    on 1.1.0 ignores it, and a bundle whose bundle.json says another version than the channel is refused."""
    from edgeship.updates.agent import _newer, check_once, status

    repo, url = server
    key = two_folders["key"]
    publish(two_folders["1.1.0"], repo, "stable", 100)
    state = _agent(repo, key, tmp_path / "device")
    assert check_once(state, url)["version"] == "1.1.0"
    assert not _newer({"version": "1.0.0", "release": 9}, status(state)["active"])  # a bigger counter does not count
    assert not _newer({"version": "1.1.0+rebuilt", "release": 2}, status(state)["active"])
    assert _newer({"version": "1.1.1-rc.1", "release": 1}, status(state)["active"])
    # a state written by an agent that remembered bad releases by counter still skips them
    from edgeship.updates.agent import _is_bad

    assert _is_bad({"version": "3.0.0", "release": 3}, [3]) and not _is_bad({"version": "3.0.0", "release": 1}, [3])


# ---- the README's walk-through --------------------------------------------------------------

def test_the_readmes_staged_rollout_with_its_own_device_ids(server, bundles, tmp_path):
    """README, Updates: two devices, phone-1 and phone-2; v1 (1.0.0) at 100 %, both install it;
    v2 (2.0.0) with --rollout 60: phone-2 moves to v2, phone-1 stays on v1."""
    from edgeship.updates.agent import check_once, status

    repo, url = server
    b1, b2, key = bundles
    assert in_rollout("phone-2", "stable", "2.0.0", 60) and not in_rollout("phone-1", "stable", "2.0.0", 60)
    dev1 = _agent(repo, key, tmp_path / "dev1", "phone-1")
    dev2 = _agent(repo, key, tmp_path / "dev2", "phone-2")
    publish(b1, repo, "stable", 100, key=key)
    assert check_once(dev1, url)["version"] == check_once(dev2, url)["version"] == "1.0.0"
    publish(b2, repo, "stable", 60, key=key)
    assert check_once(dev2, url)["version"] == "2.0.0"
    assert check_once(dev1, url)["action"] == "none" and status(dev1)["active"]["version"] == "1.0.0"


# ---- the CLI: a failed check with --once, the server's log --------------------------------------



def test_agent_once_exits_non_zero_when_the_check_fails(bundles, tmp_path, cli_env):
    import subprocess
    import sys

    repo = tmp_path / "repo"
    init_repo(repo)
    state = _agent(repo, bundles[2], tmp_path / "device", "phone-1")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run = subprocess.run([sys.executable, "-m", "edgeship", "agent", "--server", url, "--state", str(state), "--once"],
                         env=cli_env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, (run.returncode, run.stderr)
    assert f"no connection to the update server at {url}" in run.stderr and "Connection refused" in run.stderr
    assert "edgeship serve-updates" in run.stderr and "--server" in run.stderr  # what to do
    run = subprocess.run([sys.executable, "-m", "edgeship", "agent", "--server", url, "--state", str(state), "--once",
                          "--json"], env=cli_env, capture_output=True, text=True, timeout=120)
    doc = json.loads(run.stdout)
    assert run.returncode == 1 and doc["ok"] is False and doc["error"]["details"]["kind"] == "unreachable"


def test_serve_updates_says_where_it_listens_logs_each_request_and_stops_quietly(tmp_path, cli_env):
    import signal
    import subprocess
    import sys

    import httpx

    repo = tmp_path / "repo"
    init_repo(repo)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgeship", "serve-updates", str(repo), "--port", str(port)],
                            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        assert httpx.get(url + "/metadata/timestamp.json").status_code == 200
        long = "/targets/bundles/" + "ab" * 32 + ".efficientnet-lite0-1.0.0.tar.gz"
        assert httpx.get(url + long).status_code == 404
        assert httpx.get(url + "/targets/x%1b%5b31mred").status_code == 404  # an escape sequence in a path
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = err.splitlines()
    assert f"listening at {url}" in err and str(repo) in err and "Traceback" not in err
    assert any(ln.endswith(" B") and " GET /healthz 200 " in ln for ln in lines)
    assert any(" GET /metadata/timestamp.json 200 " in ln for ln in lines)
    # the content address shortened or left out, the file name kept
    assert any(ln.endswith(".efficientnet-lite0-1.0.0.tar.gz 404 21 B") and "ab" * 5 not in ln for ln in lines)
    assert "\x1b" not in err and lines[-1].startswith("stopped: ") and "half-written" not in err
    assert max(len(ln) for ln in lines if " GET " in ln) <= 80


def test_an_access_line_fits_80_columns_whatever_the_path():
    from edgeship.updates.server import access_line

    for path in ("/healthz", "/targets/" + "x" * 300, "/targets/bundles/" + "0123456789abcdef" * 4 + ".m-1.0.0.tar.gz"):
        line = access_line("GET", path, 200, 12_345_678, "203.0.113.7", when=0)
        assert len(line) <= 80 and line.endswith(" 200 12.3 MB") and " GET " in line
    line = access_line("GET", "/targets/bundles/" + "0123456789abcdef" * 4 + ".m-1.0.0.tar.gz", 206, 10, "::1", when=0)
    assert line.endswith(" GET /targets/bundles/01234567….m-1.0.0.tar.gz 206 10 B")
