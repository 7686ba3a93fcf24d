"""The device agent: TUF-verified updates installed A/B, health-checked, committed or rolled back.

State folder (``edgeship agent init --state DIR --root root.json --bundle-key PUB``)::

    config.json          channel, device id, the bundle signer's public key (set at provisioning)
    bundle-key.pem       that public key
    tuf/metadata/        TUF's trusted metadata (root.json given once, then kept up to date by TUF)
    tuf/downloads/       downloads in progress
    slots/a, slots/b     the two slots; each holds one unpacked, verified bundle
    current.json         the switch: {slot, bundle, release, version, state: trial|committed,
                         previous: {...}}; replaced in one rename
    status.json          last check, last failure and its reason, the versions that failed

One check (:func:`check_once`): refresh TUF metadata (``tuf.ngclient.Updater``: rollback, freeze,
mix-and-match and endless-data protection), read the channel list, pick the newest release (by
semantic version, :mod:`.semver`) this device is in the rollout of, that is newer than the active
one (never a downgrade, never the same version again) and not known bad, download it
(hash-checked by TUF), verify its own signature and files (its bundle.json must name the version
the channel said), unpack it into
the inactive slot, switch (state ``trial``), health check (the Python runtime loads it and passes
its golden vectors), then commit. Any failure after the switch switches back. An agent killed
mid-way finds a ``trial`` switch on restart and finishes the health check first.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._util import atomic_write_text
from ..bundle.semver import precedence
from ..errors import EdgeshipError, FormatError, InputError, SecurityError, UsageError, ValidationError
from .fetch import ResumingFetcher
from .repo import in_rollout

__all__ = ["init_state", "check_once", "status", "CURRENT", "run", "check_failed"]  # the runtime reads CURRENT itself

CURRENT = "current.json"
STATUS = "status.json"
CONFIG = "config.json"
SLOTS = ("a", "b")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _read(path: Path) -> dict[str, Any] | None:
    from ..readers import read_json

    if not path.exists() and not path.is_symlink():
        return None
    try:
        doc = read_json(path, "agent state", max_bytes=16 << 20, links=False)
        return doc if isinstance(doc, dict) else None
    except EdgeshipError:
        return None


def init_state(state: str | Path, root: str | Path, bundle_key: str | Path, channel: str = "stable",
               device_id: str | None = None) -> dict[str, Any]:
    """Provision a device: the trusted TUF root, the bundle signer's key, the channel."""
    import uuid

    state, root, bundle_key = Path(state), Path(root), Path(bundle_key)
    if (state / CONFIG).exists():
        raise UsageError(f"{state} is already provisioned", hint="give another --state, or remove it to start over")
    for p, what in ((root, "--root"), (bundle_key, "--bundle-key")):
        if not p.is_file():
            raise InputError(f"{what} {p}: no such file")
    from ..readers import read_json

    try:
        signed = read_json(root, "TUF root metadata", max_bytes=16 << 20)["signed"]
        if signed.get("_type") != "root":
            raise ValueError("not root metadata")
    except (EdgeshipError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{root} is not TUF root metadata ({str(e)[:100]})",
                         hint="give the repository's metadata/1.root.json") from None
    (state / "tuf" / "metadata").mkdir(parents=True, exist_ok=True)
    (state / "tuf" / "downloads").mkdir(exist_ok=True)
    (state / "slots").mkdir(exist_ok=True)
    shutil.copyfile(root, state / "tuf" / "metadata" / "root.json")
    shutil.copyfile(bundle_key, state / "bundle-key.pem")
    cfg = {"channel": channel, "device_id": device_id or uuid.uuid4().hex, "bundle_key": "bundle-key.pem"}
    atomic_write_text(state / CONFIG, json.dumps(cfg, indent=1) + "\n")
    return {"ok": True, "state": str(state), **cfg}


def set_device_id(state: str | Path, device_id: str) -> None:
    state = Path(state)
    cfg = _config(state)
    if cfg.get("device_id") != device_id:
        atomic_write_text(state / CONFIG, json.dumps({**cfg, "device_id": device_id}, indent=1) + "\n")


def _config(state: Path) -> dict[str, Any]:
    cfg = _read(state / CONFIG)
    if cfg is None:
        raise InputError(f"{state} is not a provisioned agent state", hint="run edgeship agent init --state DIR --root root.json")
    return cfg


def _record(state: Path, **update: Any) -> dict[str, Any]:
    st = _read(state / STATUS) or {"bad_releases": []}
    st.update(update)
    atomic_write_text(state / STATUS, json.dumps(st, indent=1) + "\n")
    return st


def _blame(state: Path, rel: dict[str, Any], reason: str, result: str) -> None:
    """Record a release's failure and remember its version as bad: it is not tried again."""
    st = _read(state / STATUS) or {}
    bad = {*st.get("bad_releases", []), str(rel["version"])}
    _record(state, bad_releases=sorted(bad, key=str),
            last_failure={"time": _now(), "reason": reason, "version": str(rel["version"]), "release": rel.get("release")},
            last_result=result)


def _key(version: Any) -> tuple | None:
    try:
        return precedence(version)
    except ValueError:
        return None


def _is_bad(rel: dict[str, Any], bad: list[Any]) -> bool:
    """Whether a channel record names a release that failed here: by version (an agent before
    semantic ordering remembered release counters, which still match the record's counter)."""
    return str(rel.get("version")) in bad or any(isinstance(b, int) and b == rel.get("release") for b in bad)


def _newer(rel: dict[str, Any], cur: dict[str, Any] | None) -> bool:
    """Whether a channel record is newer than the active release: by semantic version; an active
    release whose version is not one (a state no edgeship wrote) falls back to the counters."""
    key = _key(rel.get("version"))
    if key is None:
        return False
    if not cur:
        return True
    active = _key(cur.get("version"))
    if active is not None:
        return key > active
    try:
        return int(rel["release"]) > int(cur["release"])
    except (KeyError, TypeError, ValueError):
        return False


def _healthy(bundle: Path) -> str | None:
    """None when the Python runtime loads the bundle and an artifact passes its golden vectors (a
    classifier's, a pipeline's, a stream's or an embedder's, as the bundle says), else why not."""
    from ..readers import read_json
    from ..runtime import Classifier, Embedder, Pipeline, Stream

    try:
        doc = read_json(bundle / "bundle.json", "release bundle record", links=False)
        task = doc.get("task") if isinstance(doc, dict) else None
        kind = task.get("kind") if isinstance(task, dict) else None
        if isinstance(doc, dict) and doc.get("pipeline"):
            Pipeline.from_bundle(bundle).close()
        elif kind == "voice_activity":  # golden audio streamed through the artifact
            Stream.from_bundle(bundle).close()
        elif kind == "embedding":  # golden sentences tokenised and embedded
            Embedder.from_bundle(bundle).close()
        else:
            Classifier.from_bundle(bundle).runner.close()
    except EdgeshipError as e:
        return e.message
    return None


def _as_previous(cur: dict[str, Any] | None) -> dict[str, Any] | None:
    """The active release as the one to roll back to, with its own previous one (one level), so
    a rollback restores what ``agent status`` showed before."""
    if not cur:
        return None
    keys = ("slot", "bundle", "release", "version")
    before = cur.get("previous")
    return {**{k: cur[k] for k in keys}, "previous": {k: before[k] for k in keys if k in before} if before else None}


def _switch(state: Path, doc: dict[str, Any]) -> None:
    atomic_write_text(state / CURRENT, json.dumps(doc, indent=1) + "\n")


def _finish_trial(state: Path, cur: dict[str, Any], hook: Callable[[str], None]) -> dict[str, Any]:
    """Health-check a switched-to release; commit it, or switch back to the previous one."""
    hook("health_check")
    why = _healthy(state / cur["bundle"])
    if why is None:
        hook("commit")
        cur = {**cur, "state": "committed", "committed": _now()}
        _switch(state, cur)
        _record(state, last_result=f"installed {cur['version']} (release {cur['release']})", last_failure=None)
        return {"ok": True, "action": "installed", "release": cur["release"], "version": cur["version"]}
    prev = cur.get("previous")
    if prev:
        _switch(state, {**prev, "state": "committed"})
    else:
        (state / CURRENT).unlink(missing_ok=True)
    reason = f"{cur['version']} (release {cur['release']}) failed its health check and was rolled back: {why}"
    _blame(state, cur, reason, "rolled back")
    return {"ok": False, "action": "rolled_back", "release": cur["release"], "version": cur["version"], "reason": reason}


def check_once(state: str | Path, server: str, hook: Callable[[str], None] = lambda _s: None,
               chunk: int = 1 << 20) -> dict[str, Any]:
    """One update check (see the module doc). ``hook(step)`` is called before each step, and as
    "downloading" after each ``chunk`` bytes of a bundle and "unpacking" after each file written
    (fault tests kill the agent there)."""
    from tuf.ngclient import Updater

    from .._archive import safe_extract
    from ..bundle import verify_bundle

    state = Path(state)
    cfg = _config(state)
    cur = _read(state / CURRENT)
    if cur and cur.get("state") == "trial":  # killed between the switch and the commit
        return _finish_trial(state, cur, hook)
    active = f"{cur.get('version')} (release {cur.get('release')})" if cur else "none"
    _record(state, last_check=_now(), channel=cfg["channel"])
    fetcher = ResumingFetcher(state / "tuf" / "partial", chunk=chunk, on_chunk=lambda _n: hook("downloading"))
    try:
        hook("refresh")
        up = Updater(metadata_dir=str(state / "tuf" / "metadata"), metadata_base_url=f"{server.rstrip('/')}/metadata/",
                     target_base_url=f"{server.rstrip('/')}/targets/", target_dir=str(state / "tuf" / "downloads"),
                     fetcher=fetcher)
        up.refresh()
        info = up.get_targetinfo(f"channels/{cfg['channel']}.json")
        if info is None:
            _record(state, last_result=f"channel {cfg['channel']} has no releases")
            return {"ok": True, "action": "none", "reason": f"channel {cfg['channel']} has no releases"}
        from ..readers import read_json

        channel = read_json(Path(up.download_target(info)), "channel metadata", max_bytes=16 << 20)
        if not isinstance(channel, dict):
            raise FormatError(f"channel {cfg['channel']} metadata is not an object")
        bad = list((_read(state / STATUS) or {}).get("bad_releases", []))
        records = [r for r in channel.get("releases", []) if isinstance(r, dict)]
        eligible = [r for r in records if _newer(r, cur) and not _is_bad(r, bad)
                    and in_rollout(cfg["device_id"], cfg["channel"], str(r["version"]), float(r.get("rollout", 100)))]
        if not eligible:
            why = f"up to date: {active}; nothing newer on {cfg['channel']} for this device (rollout, bad releases)"
            _record(state, last_result=f"up to date ({active})", last_failure=None)
            return {"ok": True, "action": "none", "release": cur.get("release") if cur else None,
                    "version": cur.get("version") if cur else None, "reason": why}
        rel = max(eligible, key=lambda r: precedence(r["version"]))
        hook("download")
        tinfo = up.get_targetinfo(rel["target"])
        if tinfo is None:
            raise InputError(f"the channel names {rel['target']}, which the repository's targets do not list")
        tarball = Path(up.download_target(tinfo))
        shutil.rmtree(state / "tuf" / "partial", ignore_errors=True)
    except EdgeshipError:
        raise
    except Exception as e:  # noqa: BLE001 - TUF and network failures are reported, the model keeps serving
        from tuf.api.exceptions import LengthOrHashMismatchError

        if isinstance(e, LengthOrHashMismatchError):  # what was kept to resume is not the target: start over
            shutil.rmtree(state / "tuf" / "partial", ignore_errors=True)
        reason = f"{type(e).__name__}: {str(e)[:300]}" + (f" ({type(e.__cause__).__name__}: {str(e.__cause__)[:200]})" if e.__cause__ else "")
        _record(state, last_failure={"time": _now(), "reason": reason}, last_result="check failed")
        return {"ok": False, "action": "none", "kind": _failure_kind(e), "server": server, "reason": reason}
    try:
        hook("verify")
        doc = verify_bundle(tarball, state / cfg["bundle_key"])
        said = f"{rel['version']} (release {rel.get('release')})"
        held = f"{doc.get('version')} (release {doc.get('release')})"
        if str(doc.get("version")) != str(rel["version"]) or ("release" in rel and doc.get("release") != rel["release"]):
            raise InputError(f"{rel['target']} holds {held}, the channel said {said}")
        if not _newer(doc, cur):  # the channel's own order is checked above; this is the bundle's word
            raise InputError(f"{rel['target']} holds {held}, not newer than the active {active}")
        slot = next(s for s in SLOTS if not cur or cur.get("slot") != s)
        hook("unpack")
        dest = state / "slots" / slot
        for junk in (state / "slots").glob(".*"):  # what an agent killed mid-unpack left
            shutil.rmtree(junk, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)
        try:
            names = safe_extract(tarball, dest, progress=lambda _m: hook("unpacking"))  # temp folder, then renamed
        except OSError as e:  # the device, not the release: a full disk; tried again next time
            for junk in (state / "slots").glob(".*"):
                shutil.rmtree(junk, ignore_errors=True)
            reason = f"{rel['version']} (release {rel.get('release')}) not installed: unpacking failed: {e.strerror or e}"
            _record(state, last_failure={"time": _now(), "reason": reason, "version": rel["version"],
                                         "release": rel.get("release")}, last_result="unpack failed")
            return {"ok": False, "action": "none", "kind": "unpack", "release": rel.get("release"),
                    "version": rel["version"], "reason": reason}
        top = sorted({n.split("/", 1)[0] for n in names})[0]
    except EdgeshipError as e:
        reason = f"{rel['version']} (release {rel.get('release')}) refused: {e.message}"
        _blame(state, rel, reason, "refused")
        return {"ok": False, "action": "refused", "release": rel.get("release"), "version": rel["version"], "reason": reason}
    finally:
        for p in (state / "tuf" / "downloads").glob("*"):
            p.unlink(missing_ok=True)
    hook("switch")
    resumed = fetcher.resumed_bytes
    trial = {"slot": slot, "bundle": f"slots/{slot}/{top}", "release": int(doc["release"]), "version": doc["version"],
             "state": "trial", "switched": _now(),
             "previous": _as_previous(cur)}
    _switch(state, trial)
    return {**_finish_trial(state, trial, hook), **({"resumed_bytes": resumed} if resumed else {})}


def _failure_kind(e: BaseException) -> str:
    """What kind of failure a check's exception is: ``unreachable`` (no connection), ``slow`` (no
    answer in time), ``http`` (an error status), ``expired`` (metadata past its expiry: a frozen
    feed), ``untrusted`` (TUF refused what was served: a signature, a version gone back, a hash),
    else ``failed``."""
    from tuf.api import exceptions as x

    if isinstance(e, x.ExpiredMetadataError):
        return "expired"
    if isinstance(e, x.RepositoryError):
        return "untrusted"
    if isinstance(e, x.DownloadHTTPError):
        return "http"
    if isinstance(e, x.SlowRetrievalError):
        return "slow"
    if isinstance(e, x.DownloadError):
        return "unreachable"
    return "failed"


def check_failed(res: dict[str, Any], server: str) -> EdgeshipError:
    """The error a failed check (``res`` from :func:`check_once`, ``ok`` false) is for a caller
    that ends with it (``edgeship agent --once`` exits non-zero): what failed, the server, what to
    do. The check itself already changed nothing that serves."""

    reason = str(res.get("reason") or "no reason given")
    kind, action = res.get("kind"), res.get("action")
    serving = "the active release keeps serving"
    retry = "without --once the agent retries with backoff"
    if action == "rolled_back":
        return ValidationError(f"update rolled back: {reason}",
                               hint=f"{serving}; this version is not tried again: publish a fixed one with a higher version",
                               **res)
    if action == "refused":
        return SecurityError(f"update refused: {reason}",
                             hint="not installed and not tried again; check that it was signed with the key this device "
                                  "trusts (agent init --bundle-key)", **res)
    if kind == "unreachable":
        return EdgeshipError(f"update check failed: no connection to the update server at {server} "
                             f"({reason.rsplit(': ', 1)[-1]})",
                             hint=f"is edgeship serve-updates running there? check --server (host and port); {serving}; "
                                  + retry, **res)
    if kind == "slow":
        return EdgeshipError(f"update check failed: the update server at {server} did not answer in time: {reason}",
                             hint=f"check the server and the network; {serving}; {retry}", **res)
    if kind == "http":
        return EdgeshipError(f"update check failed: the update server at {server} answered with an error: {reason}",
                             hint="--server must be the address edgeship serve-updates listens on (metadata/ and targets/ "
                                  f"are under it); {serving}", **res)
    if kind == "expired":
        return SecurityError(f"update check refused the repository at {server}: its metadata expired (a frozen feed): "
                             f"{reason}", hint="re-sign it where the repository is kept: edgeship repo refresh REPO (daily, "
                                               f"e.g. from cron); nothing was installed, {serving}", **res)
    if kind == "untrusted":
        return SecurityError(f"update check refused what {server} served: {reason}",
                             hint=f"a tampered, replayed or damaged repository or download; nothing was installed, {serving}",
                             **res)
    if kind == "unpack":
        return EdgeshipError(f"update not installed: {reason}",
                             hint=f"free space on the device; it is tried again at the next check; {serving}", **res)
    return EdgeshipError(f"update check failed against {server}: {reason}", hint=serving, **res)


def run(state: str | Path, server: str, once: bool = False, interval: float = 60.0, max_backoff: float = 900.0,
        say: Callable[[str], None] = lambda _m: None, checks: int | None = None,
        sleep: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Check now, then every ``interval`` seconds, waiting twice as long after each failed check
    (the server down or slow) up to ``max_backoff``; ``once``: one check; ``checks``: that many.
    The active model keeps serving whatever happens."""
    import time

    pause = sleep or time.sleep
    wait, done = interval, 0
    while True:
        res = check_once(state, server)
        done += 1
        say(json.dumps(res))
        if once or (checks is not None and done >= checks):
            return res
        wait = interval if res.get("ok") else min(max_backoff, wait * 2)
        pause(wait)


def status(state: str | Path) -> dict[str, Any]:
    state = Path(state)
    cfg = _config(state)
    cur = _read(state / CURRENT)
    st = _read(state / STATUS) or {}
    return {"ok": True, "state": str(state), "device_id": cfg["device_id"], "channel": cfg["channel"],
            "active": {k: cur.get(k) for k in ("release", "version", "slot", "state", "bundle")} if cur else None,
            "previous": (cur or {}).get("previous"), "last_check": st.get("last_check"),
            "last_result": st.get("last_result"), "last_failure": st.get("last_failure"),
            "bad_releases": st.get("bad_releases", [])}


