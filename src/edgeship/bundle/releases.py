"""The releases an output folder has made, newest first, the version the next one gets, and
pruning the old ones.

Every deploy that changes what ships packages a release (~the size of its artifacts); left alone
they pile up. ``prune(outdir, keep)`` keeps the newest ``keep`` by semantic version (and always
the one the manifest names as current) and removes the others, folder and tarball — except a
release an update repository still serves: ``edgeship publish`` of a tarball in an output
folder's ``release/`` notes the repository in that folder's manifest (``stages.published``), and
a release whose tarball that repository still holds (content-addressed, by sha256) is kept.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from ..artifact import sha256_file
from ..errors import EdgeshipError
from ..manifest import read_manifest, write_manifest
from ..readers import read_json
from .semver import SEMVER, precedence

__all__ = ["Release", "released", "releases", "next_version", "prune", "record_published", "DEFAULT_KEEP", "BUNDLE_JSON"]

#: the record of a release, in its folder
BUNDLE_JSON = "bundle.json"

#: how many releases a deploy keeps in OUT/release by default (said in its output)
DEFAULT_KEEP = 3


@dataclasses.dataclass(frozen=True)
class Release:
    folder: Path
    tarball: Path | None
    version: str
    doc: dict[str, Any]

    def sha256(self) -> str | None:
        return sha256_file(self.tarball) if self.tarball is not None and self.tarball.is_file() else None


def released(dest: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, bundle.json) of every release already in ``dest`` (unreadable ones left out)."""
    out = []
    for p in sorted(Path(dest).glob(f"*/{BUNDLE_JSON}")) if Path(dest).is_dir() else []:
        if p.parent.name.startswith("."):
            continue  # a release being written
        try:
            doc = read_json(p, "release record", links=False)
        except EdgeshipError:
            continue
        if isinstance(doc, dict):
            out.append((p.parent, doc))
    return out


def releases(dest: str | Path) -> list[Release]:
    """The releases in ``dest``, newest first (semantic-version precedence); a folder whose version
    cannot be ordered is left out (and so never pruned)."""
    out = []
    for folder, doc in released(dest):
        try:
            key = precedence(doc.get("version"))
        except ValueError:
            continue
        tar = folder.parent / f"{folder.name}.tar.gz"
        out.append((key, Release(folder, tar if tar.is_file() else None, str(doc["version"]), doc)))
    return [r for _, r in sorted(out, key=lambda kr: kr[0], reverse=True)]


def next_version(dest: str | Path) -> str:
    """The version a new release in ``dest`` gets by default: the next patch after the newest
    semantic version there, else 0.1.0."""
    found = releases(dest)
    if not found:
        return "0.1.0"
    newest = SEMVER.match(found[0].version)
    assert newest is not None  # releases() keeps semantic versions only
    major, minor, patch = int(newest.group(1)), int(newest.group(2)), int(newest.group(3))
    # the release of a pre-release (1.0.0-rc.1 -> 1.0.0) is newer than it; else the next patch
    return f"{major}.{minor}.{patch}" if newest.group(4) else f"{major}.{minor}.{patch + 1}"


def _served(release: Release, published: list[Any]) -> str | None:
    """The repository that still serves ``release`` (its tarball, by content), else None."""
    sha = None
    for p in published:
        if not isinstance(p, dict) or p.get("version") != release.version or not isinstance(p.get("repo"), str):
            continue
        repo = Path(p["repo"]) / "targets"
        if not repo.is_dir():
            continue
        sha = sha or release.sha256() or str(p.get("sha256") or "")
        if sha and any(repo.rglob(f"{sha}.*")):
            return p["repo"]
    return None


def prune(outdir: str | Path, keep: int = DEFAULT_KEEP, dest: str | Path | None = None,
          dry_run: bool = False) -> dict[str, Any]:
    """Remove all but the newest ``keep`` releases of ``outdir`` (in ``dest``, default
    ``outdir/release``), never the current one (``stages.bundle``) nor one a repository still
    serves. Returns ``{"kept", "removed", "served": [{version, repo}], "dest"}``."""
    outdir = Path(outdir)
    dest = Path(dest) if dest is not None else outdir / "release"
    m = read_manifest(outdir) or {}
    stages = m.get("stages") if isinstance(m.get("stages"), dict) else {}
    current = (stages.get("bundle") or {}).get("version") if isinstance(stages.get("bundle"), dict) else None
    published = stages.get("published") if isinstance(stages.get("published"), list) else []
    kept, removed, served = [], [], []
    for i, r in enumerate(releases(dest)):
        if i < max(keep, 0) or r.version == current:
            kept.append(r.version)
            continue
        repo = _served(r, published)
        if repo is not None:
            kept.append(r.version)
            served.append({"version": r.version, "repo": repo})
            continue
        removed.append(r.version)
        if not dry_run:
            if r.tarball is not None:
                r.tarball.unlink(missing_ok=True)
            shutil.rmtree(r.folder, ignore_errors=True)
            pub = dest / f"{r.folder.name}.pub.pem"
            if pub.is_file():
                pub.unlink()
    return {"ok": True, "dest": str(dest), "keep": keep, "kept": kept, "removed": removed, "served": served,
            "dry_run": dry_run}


def record_published(tarball: Path, repo: Path, channel: str, version: str, sha256: str) -> Path | None:
    """Note in the manifest of the output folder a release tarball lives in (``OUT/release/``)
    that ``repo`` now serves it, so pruning keeps it. None when the tarball is not in one."""
    outdir = Path(tarball).resolve().parent.parent
    try:
        m = read_manifest(outdir)
    except EdgeshipError:
        return None
    if m is None:
        return None
    stages = m.setdefault("stages", {})
    entries = [p for p in stages.get("published") or [] if isinstance(p, dict)
               and not (p.get("version") == version and p.get("repo") == str(Path(repo).resolve()))]
    entries.append({"version": version, "repo": str(Path(repo).resolve()), "channel": channel, "sha256": sha256})
    stages["published"] = entries
    return write_manifest(outdir, m)
