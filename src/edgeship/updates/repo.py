"""The repository side: role keys, TUF metadata, channels, atomic publishing (see the package doc)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._util import atomic_write_text
from ..errors import EdgeshipError, FormatError, InputError, SecurityError, UsageError

__all__ = ["init_repo", "publish", "refresh_timestamp", "in_rollout", "rollout_bucket", "read_channel", "CHANNEL_SCHEMA",
           "ROLES", "EXPIRY_DAYS"]

ROLES = ("root", "targets", "snapshot", "timestamp")
#: default lifetime of each role's metadata; a device refuses expired metadata (freeze attacks)
EXPIRY_DAYS = {"root": 365, "targets": 90, "snapshot": 30, "timestamp": 7}
CHANNEL_SCHEMA = "edgeship.channel/1"
_CHANNEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


def _expiry(role: str, days: dict[str, int] | None = None) -> _dt.datetime:
    return _now() + _dt.timedelta(days=(days or EXPIRY_DAYS)[role])


def rollout_bucket(device_id: str, channel: str, version: str | int) -> float:
    """Where a device falls for a release, 0..99.99: a stable hash of (device, channel, the
    release's version). It is in a rollout of ``percent`` when this is under it."""
    h = int.from_bytes(hashlib.sha256(f"{device_id}\0{channel}\0{version}".encode()).digest()[:8], "big")
    return (h % 10000) / 100


def in_rollout(device_id: str, channel: str, version: str | int, percent: float) -> bool:
    """Whether a device is in a release's staged rollout: :func:`rollout_bucket` of (device,
    channel, version) falls under ``percent``. The same device gets the same answer on every poll
    (and stays in when the percentage grows); a new release draws a new sample. Releases are named
    by their version, not their counter: two destination folders both count from 1."""
    if percent >= 100:
        return True
    if percent <= 0:
        return False
    return rollout_bucket(device_id, channel, version) < percent


def _signers(repo: Path) -> dict[str, Any]:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    out = {}
    for role in ROLES:
        path = repo / "keys" / f"{role}.pem"
        try:
            out[role] = CryptoSigner(load_pem_private_key(path.read_bytes(), password=None))
        except (OSError, ValueError, TypeError) as e:
            raise InputError(f"{path}: the {role} key is not readable ({str(e)[:120]})",
                             hint="make the repository with edgeship repo init") from None
    return out


def _write(md: Any, path: Path) -> None:
    from tuf.api.serialization.json import JSONSerializer

    atomic_write_text(path, md.to_bytes(JSONSerializer(compact=False)).decode())


def init_repo(repo: str | Path, expiry_days: dict[str, int] | None = None) -> dict[str, Any]:
    """A new TUF repository in ``repo`` (which must not hold one): an ed25519 key per role, root
    version 1 naming them, and empty targets, snapshot and timestamp metadata."""
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp

    repo = Path(repo)
    if (repo / "metadata").exists() or (repo / "keys").exists():
        raise UsageError(f"{repo} already holds a repository", hint="give another folder; a root is never replaced by init")
    keys = repo / "keys"
    keys.mkdir(parents=True)
    os.chmod(keys, 0o700)
    signers = {role: CryptoSigner.generate_ed25519() for role in ROLES}
    for role, s in signers.items():
        fd = os.open(keys / f"{role}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(s.private_bytes)
    root = Root(expires=_expiry("root", expiry_days), consistent_snapshot=True)
    for role, s in signers.items():
        root.add_key(s.public_key, role)
    md_root = Metadata(root)
    md_root.sign(signers["root"])
    targets = Metadata(Targets(expires=_expiry("targets", expiry_days)))
    targets.sign(signers["targets"])
    snapshot = Metadata(Snapshot(expires=_expiry("snapshot", expiry_days), meta={"targets.json": MetaFile(version=1)}))
    snapshot.sign(signers["snapshot"])
    timestamp = Metadata(Timestamp(expires=_expiry("timestamp", expiry_days), snapshot_meta=MetaFile(version=1)))
    timestamp.sign(signers["timestamp"])
    meta = repo / "metadata"
    meta.mkdir()
    (repo / "targets").mkdir()
    _write(md_root, meta / "1.root.json")
    _write(targets, meta / "1.targets.json")
    _write(snapshot, meta / "1.snapshot.json")
    _write(timestamp, meta / "timestamp.json")
    return {"repo": str(repo), "root": str(meta / "1.root.json"), "keys": str(keys),
            "expires": {r: _expiry(r, expiry_days).isoformat() for r in ROLES}}


def _load(repo: Path) -> tuple[Any, Any, Any]:
    """(targets, snapshot, timestamp) metadata the repository serves now (timestamp names them)."""
    from tuf.api.metadata import Metadata, Snapshot, Targets, Timestamp

    meta = repo / "metadata"
    try:
        ts = Metadata[Timestamp].from_file(str(meta / "timestamp.json"))
        snap = Metadata[Snapshot].from_file(str(meta / f"{ts.signed.snapshot_meta.version}.snapshot.json"))
        tgt = Metadata[Targets].from_file(str(meta / f"{snap.signed.meta['targets.json'].version}.targets.json"))
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{repo} is not a readable edgeship update repository: {str(e)[:200]}",
                         hint="make one with edgeship repo init") from None
    return tgt, snap, ts


def read_channel(repo: str | Path, channel: str) -> dict[str, Any]:
    """The channel list the repository serves now (an empty one for a new channel)."""
    repo = Path(repo)
    tgt, _, _ = _load(repo)
    info = tgt.signed.targets.get(f"channels/{channel}.json")
    if info is None:
        return {"schema": CHANNEL_SCHEMA, "channel": channel, "releases": []}
    from ..readers import read_json

    path = repo / "targets" / "channels" / f"{info.hashes['sha256']}.{channel}.json"
    doc = read_json(path, "channel record", max_bytes=16 << 20, links=False)
    if not isinstance(doc, dict) or not isinstance(doc.get("releases"), list):
        raise FormatError(f"{path} is not a channel record (no releases list)")
    return doc


def _add_target(repo: Path, target_path: str, data_path: Path, custom: dict[str, Any] | None = None) -> Any:
    """Copy a file into ``targets/`` under its content-addressed name (consistent snapshots) and
    describe it as a TUF TargetFile."""
    from tuf.api.metadata import TargetFile

    info = TargetFile.from_file(target_path, str(data_path), ["sha256"])
    if custom:
        info.unrecognized_fields["custom"] = custom
    parent, _, name = target_path.rpartition("/")
    dest = repo / "targets" / parent / f"{info.hashes['sha256']}.{name}"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        shutil.copyfile(data_path, tmp)
        os.replace(tmp, dest)
    return info


def publish(bundle: str | Path, repo: str | Path, channel: str = "stable", rollout: float = 100.0,
            key: str | Path | None = None, expiry_days: dict[str, int] | None = None,
            _crash_before_timestamp: Callable[[], None] | None = None) -> dict[str, Any]:
    """Add a signed bundle's ``.tar.gz`` to ``channel`` at ``rollout`` percent.

    With ``key`` (the bundle's public key) its signature is checked first; a bundle whose semantic
    version is not newer than the newest already on the channel (semver precedence, build metadata
    ignored: :mod:`.semver`) is refused (devices never go back).
    New files first, ``timestamp.json`` last: a crash in between leaves the previous state served.
    """
    import tempfile

    from tuf.api.metadata import MetaFile

    from ..bundle import BUNDLE_JSON, verify_bundle

    bundle, repo = Path(bundle), Path(repo)
    if not _CHANNEL.match(channel):
        raise UsageError(f"channel {channel!r} is not a plain name", hint="use lower-case letters, digits, . _ -, e.g. stable")
    if not 0 <= rollout <= 100:
        raise UsageError(f"--rollout {rollout:g} is not a percentage", hint="give 0..100")
    from ..readers import regular_file

    regular_file(bundle, "bundle tarball", hint="give the .tar.gz edgeship package wrote")
    if not bundle.name.endswith(".tar.gz"):
        raise InputError(f"{bundle} is not a bundle tarball", hint="give the .tar.gz edgeship package wrote")
    if key is not None:
        verify_bundle(bundle, key)  # SecurityError naming what changed
    from .._archive import safe_extract

    with tempfile.TemporaryDirectory(prefix="edgeship-publish-") as tmp:
        names = safe_extract(bundle, Path(tmp) / "x")
        top = {n.split("/", 1)[0] for n in names}
        from ..readers import read_json

        try:
            doc = read_json(Path(tmp) / "x" / top.pop() / BUNDLE_JSON, "release record", links=False)
            version, release, name = str(doc["version"]), int(doc["release"]), str(doc["name"])
        except (EdgeshipError, ValueError, KeyError, TypeError, AttributeError, OverflowError) as e:
            raise InputError(f"{bundle} holds no readable {BUNDLE_JSON}: {str(e)[:120]}") from None
    from ..bundle.semver import newest, precedence

    try:
        precedence(version)
    except ValueError:
        raise InputError(f"{bundle}: its version {version!r} is not a semantic version, which releases are ordered by",
                         hint="package it again with --version MAJOR.MINOR.PATCH, e.g. 1.2.0 (or 1.2.0-rc.1)") from None
    signers = _signers(repo)
    tgt, snap, ts = _load(repo)
    current = read_channel(repo, channel)
    latest = newest(current["releases"])
    if latest is not None and precedence(version) <= precedence(latest["version"]):
        same = precedence(version) == precedence(latest["version"])
        raise SecurityError(
            f"{bundle.name}: version {version} is not newer than {latest['version']}, the latest on channel {channel}"
            + (" (build metadata after + does not order releases)" if same and version != latest["version"] else ""),
            hint="devices never go back: package it with a higher --version (semver: 1.2.0-rc.1 < 1.2.0 < 1.2.1 < 1.10.0)",
            version=version, latest=latest["version"], channel=channel)
    bundle_target = f"bundles/{bundle.name}"
    entry = {"version": version, "release": release, "name": name, "target": bundle_target,
             "rollout": rollout, "published": _now().isoformat()}
    current["releases"] = [*current["releases"], entry]
    tgt.signed.targets[bundle_target] = _add_target(repo, bundle_target, bundle,
                                                    {"version": version, "release": release})
    with tempfile.TemporaryDirectory(prefix="edgeship-channel-") as tmp:
        cpath = Path(tmp) / f"{channel}.json"
        cpath.write_text(json.dumps(current, indent=1) + "\n")
        tgt.signed.targets[f"channels/{channel}.json"] = _add_target(repo, f"channels/{channel}.json", cpath)
    meta = repo / "metadata"
    tgt.signed.version += 1
    tgt.signed.expires = _expiry("targets", expiry_days)
    tgt.signatures.clear()
    tgt.sign(signers["targets"])
    _write(tgt, meta / f"{tgt.signed.version}.targets.json")
    snap.signed.version += 1
    snap.signed.meta["targets.json"] = MetaFile(version=tgt.signed.version)
    snap.signed.expires = _expiry("snapshot", expiry_days)
    snap.signatures.clear()
    snap.sign(signers["snapshot"])
    _write(snap, meta / f"{snap.signed.version}.snapshot.json")
    if _crash_before_timestamp is not None:  # tests: a publish that dies here
        _crash_before_timestamp()
    ts.signed.version += 1
    ts.signed.snapshot_meta = MetaFile(version=snap.signed.version)
    ts.signed.expires = _expiry("timestamp", expiry_days)
    ts.signatures.clear()
    ts.sign(signers["timestamp"])
    _write(ts, meta / "timestamp.json")  # the one rename that makes the release visible
    return {"ok": True, "repo": str(repo), "channel": channel, "version": version, "release": release,
            "rollout": rollout, "target": bundle_target, "targets_version": tgt.signed.version,
            "releases_on_channel": len(current["releases"])}


def refresh_timestamp(repo: str | Path, days: int | None = None) -> dict[str, Any]:
    """Re-sign the timestamp with a new version and expiry (default :data:`EXPIRY_DAYS`), nothing
    else changed: run it (e.g. daily from cron) so devices do not refuse a repository that has not
    published for a while as frozen."""
    repo = Path(repo)
    signers = _signers(repo)
    _, _, ts = _load(repo)
    ts.signed.version += 1
    ts.signed.expires = _now() + _dt.timedelta(days=days if days is not None else EXPIRY_DAYS["timestamp"])
    ts.signatures.clear()
    ts.sign(signers["timestamp"])
    _write(ts, repo / "metadata" / "timestamp.json")
    return {"ok": True, "repo": str(repo), "timestamp_version": ts.signed.version, "expires": ts.signed.expires.isoformat()}
