"""manifest.json: one record of a deploy run, designed to grow.

Top-level keys (schema ``edgeship.manifest/1``):

``schema``, ``edgeship_version``, ``created``  — what wrote it and when
``source``      — the model that was deployed (kind, origin, digest, I/O, preprocessing)
``config``      — the resolved options of the run
``artifacts``   — one record per artifact: id, target, format, precision, path, files with
                  sha256 and size, digest, I/O, preprocessing, verification figures, provenance
``stages``      — per-stage results keyed by stage name (``convert``, ``benchmark``, ``analysis``,
                  ``predictions``, ``compare_cloud``, ``bundle``...); each stage adds its own key.
                  Every measured figure names the ``digest`` of the artifact it measured: when
                  that artifact's bytes change, its figures move to the stage's ``stale`` list
                  (:func:`settle_figures`) and are never shown as the new file's
``timings_s``   — wall time of each step
``environment`` — python, platform, CPU count, tool versions

Readers must ignore keys they do not know; writers only add keys.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import shutil
from pathlib import Path
from typing import Any

from ._util import atomic_write_text, confined, tool_versions
from .errors import FormatError, UsageError, printable

SCHEMA = "edgeship.manifest/1"
MANIFEST = "manifest.json"


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "tool_versions": tool_versions("torch", "onnx", "onnxruntime", "onnxscript", "onnxslim", "numpy"),
    }


def build_manifest(*, source: dict[str, Any], config: dict[str, Any], artifacts: list[dict[str, Any]],
                   stages: dict[str, Any], timings: dict[str, float]) -> dict[str, Any]:
    from ._version import __version__

    return {
        "schema": SCHEMA,
        "edgeship_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "source": source,
        "config": config,
        "artifacts": artifacts,
        "stages": stages,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "environment": environment(),
    }


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    path = Path(out) / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of an output folder, or None when it has none; FormatError when unreadable."""
    from .readers import RECORD_LIMIT, read_json

    path = Path(out) / MANIFEST
    if not path.exists() and not path.is_symlink():
        return None
    hint = "re-run edgeship deploy to write it again (or give another folder)"
    doc = read_json(path, "edgeship manifest", max_bytes=RECORD_LIMIT, links=False, hint=hint)
    if not isinstance(doc, dict) or not isinstance(doc.get("artifacts", []), list) \
            or not isinstance(doc.get("source", {}), dict):
        raise FormatError(f"{path} is not an edgeship manifest (no artifacts list)",
                          hint="re-run edgeship deploy to write it again (or give another folder)")
    return doc


# ---- reading a value as data: a wrong type is a gap, never a crash ----------------------------

def as_num(x: Any) -> float | None:
    """A finite number from the manifest, else None (a string, a bool, NaN, an absurd 1e300: a gap,
    not a crash)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) and abs(x) < 1e18 else None


def as_pos(x: Any) -> float | None:
    """A duration or a size: a positive number, else a gap."""
    v = as_num(x)
    return v if v is not None and v > 0 else None


def as_text(x: Any, limit: int = 300) -> str:
    """A string from the manifest as data: no control characters, bounded length."""
    s = printable("" if x is None else str(x))
    return s if len(s) <= limit else s[:limit - 1] + "…"


def as_dict(x: Any) -> dict[str, Any]:
    """An object from the manifest, else an empty one."""
    return x if isinstance(x, dict) else {}


def as_list(x: Any) -> list[Any]:
    """A list from the manifest, else an empty one."""
    return x if isinstance(x, list) else []


@dataclasses.dataclass(frozen=True)
class BenchFigures:
    """``stages.benchmark`` with the current/stale rule (:func:`is_current`) applied once.

    ``doc``: the stage ({} when none); ``results``: its figures measured on the bytes their artifact
    has now, the baseline's included, in order; ``stale``: ids whose figures the manifest moved to
    a ``stale`` list (the stage's, then the top-level one); ``other_bytes``: ids of results of
    bytes other than their artifact's now (not in ``results``); ``not_measured``: (id, reason)
    of the artifacts the benchmark left out or did not finish."""

    doc: dict[str, Any]
    results: tuple[dict[str, Any], ...]
    stale: tuple[str, ...]
    other_bytes: tuple[str, ...]
    not_measured: tuple[tuple[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The one typed reader of an output folder's manifest.json, for every part that reads one
    (analysis, the roofline, the benchmark, the report, the CLI). Keys it does not know are kept in
    ``doc``. Its views give what a reader needs with the types checked (a part of the wrong type
    reads as empty) and the current/stale rule applied (:meth:`bench_figures`, :meth:`cloud`);
    :func:`as_num` and its siblings read the values inside them as data."""

    folder: Path
    doc: dict[str, Any]

    @property
    def source(self) -> dict[str, Any]:
        s = self.doc.get("source")
        return s if isinstance(s, dict) else {}

    @property
    def config(self) -> dict[str, Any]:
        c = self.doc.get("config")
        return c if isinstance(c, dict) else {}

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for r in self.doc.get("artifacts") or [] if isinstance(r, dict)]

    @property
    def stages(self) -> dict[str, Any]:
        s = self.doc.get("stages")
        return s if isinstance(s, dict) else {}

    @property
    def environment(self) -> dict[str, Any]:
        return as_dict(self.doc.get("environment"))

    @property
    def timings(self) -> dict[str, Any]:
        return as_dict(self.doc.get("timings_s"))

    @property
    def digests(self) -> dict[str, str | None]:
        """Artifact id -> the digest of its bytes now (:func:`record_digests`)."""
        return record_digests(self.doc)

    def stage(self, name: str) -> dict[str, Any]:
        """The record of stage ``name`` ({} when it did not run, or is not an object)."""
        return as_dict(self.stages.get(name))

    def bench_figures(self) -> BenchFigures:
        """The benchmark's figures, those of other bytes than their artifact's now set apart."""
        bench = self.stage("benchmark")
        digests = self.digests
        results, other = [], []
        for r in as_list(bench.get("results")):
            if not isinstance(r, dict):
                continue
            if r.get("role") != "baseline" and not is_current(r, digests):
                if isinstance(r.get("id"), str):
                    other.append(r["id"])
                continue
            results.append(r)
        stale = [r["id"] for r in [*as_list(bench.get("stale")), *as_list(self.stages.get("stale"))]
                 if isinstance(r, dict) and isinstance(r.get("id"), str)]
        missing = [(r["id"], r.get("reason")) for r in as_list(bench.get("not_measured")) + as_list(bench.get("incomplete"))
                   if isinstance(r, dict) and isinstance(r.get("id"), str) and r.get("role") != "baseline"]
        return BenchFigures(bench, tuple(results), tuple(stale), tuple(other), tuple(missing))

    def cloud(self) -> dict[str, Any]:
        """``edgeship compare-cloud``'s record, {} when none or when it measured bytes the folder
        no longer holds."""
        c = self.stage("compare_cloud")
        if isinstance(c.get("artifact_id"), str) and not is_current({"id": c["artifact_id"], "digest": c.get("digest")},
                                                                     self.digests):
            return {}
        return c

    def artifact_folder(self, record: dict[str, Any]) -> Path:
        """The folder of an artifact record, confined to the output folder (SecurityError if a
        crafted manifest points elsewhere)."""
        name = record.get("path") or record.get("id")
        if not isinstance(name, str) or not name:
            raise FormatError(f"{self.folder / MANIFEST}: an artifact record names no folder (its path is {name!r})",
                              hint="re-run edgeship deploy to write it again (or give another folder)")
        return confined(self.folder, name, f"{self.folder / MANIFEST}: an artifact path")

    def benchmark(self, artifact_id: str | None = None) -> dict[str, Any] | None:
        """What ``deploy --benchmark`` measured for ``artifact_id`` (the first artifact if None):
        ``{"artifact", "latency_ms" (warm p50), "threads", "runtime"}``, or None. A figure measured
        on other bytes than the artifact's now (its digest) is not one of them."""
        for r in self.bench_figures().results:
            if r.get("role") == "baseline":
                continue
            if artifact_id is not None and r.get("id") != artifact_id:
                continue
            p50 = (r.get("latency_ms") or {}).get("p50") if isinstance(r.get("latency_ms"), dict) else None
            if isinstance(p50, (int, float)):
                out = {"artifact": r.get("id"), "latency_ms": float(p50), "threads": r.get("threads"),
                       "runtime": r.get("runtime")}
                return {k: v for k, v in out.items() if v is not None}
        return None


def record_digests(doc: dict[str, Any]) -> dict[str, str | None]:
    """Artifact id -> the digest of its bytes, as the manifest's artifact records say (None for a
    record that names none)."""
    out: dict[str, str | None] = {}
    for r in doc.get("artifacts") or []:
        if isinstance(r, dict) and isinstance(r.get("id") or r.get("path"), str):
            out[str(r.get("id") or r.get("path"))] = r["digest"] if isinstance(r.get("digest"), str) else None
    return out


def is_current(figure: dict[str, Any], digests: dict[str, str | None]) -> bool:
    """Whether a measured figure (``{"id", "digest"?}``) is of the bytes its artifact has now. A
    figure with no digest (written before figures named one), or of a record with none, counts as
    current; a figure of bytes the manifest does not list (by id) is not."""
    aid = figure.get("id")
    if not isinstance(aid, str):
        return False
    if aid not in digests:
        return figure.get("digest") is None
    return figure.get("digest") is None or digests[aid] is None or figure.get("digest") == digests[aid]


def _stale_entry(figure: dict[str, Any], why: str) -> dict[str, Any]:
    lat = figure.get("latency_ms") if isinstance(figure.get("latency_ms"), dict) else {}
    keep = {k: figure.get(k) for k in ("id", "digest", "threads", "measured") if figure.get(k) is not None}
    if isinstance(lat.get("p50"), (int, float)):
        keep["p50_ms"] = lat["p50"]
    return {**keep, "why": why}


def settle_figures(doc: dict[str, Any], before: dict[str, str] | None = None) -> list[str]:
    """Move every measured figure of ``doc`` whose artifact's bytes changed out of the stage that
    shows it, into the stage's ``stale`` list (what was measured, on which digest, and why it no
    longer counts). ``before``: artifact id -> digest when the figures without a digest of their
    own were measured (the manifest's records then); such figures are given that digest.
    Returns the ids whose figures went stale."""
    digests = record_digests(doc)
    before = before or {}
    stages = doc.get("stages") if isinstance(doc.get("stages"), dict) else {}
    gone: list[str] = []

    def why(aid: Any) -> str:
        return ("its artifact is no longer listed" if aid not in digests
                else f"measured on other bytes than {aid}'s now ({str(digests[aid])[:12]}…)")

    bench = stages.get("benchmark")
    if isinstance(bench, dict) and isinstance(bench.get("results"), list):
        keep, stale = [], list(bench.get("stale") or []) if isinstance(bench.get("stale"), list) else []
        for r in bench["results"]:
            if isinstance(r, dict) and r.get("role") != "baseline":
                if r.get("digest") is None and isinstance(r.get("id"), str) and r["id"] in before:
                    r = {**r, "digest": before[r["id"]]}
                if not is_current(r, digests):
                    stale.append(_stale_entry(r, why(r.get("id"))))
                    gone.append(str(r.get("id")))
                    continue
            keep.append(r)
        bench["results"] = keep
        if stale:
            bench["stale"] = stale
        if not any(isinstance(r, dict) and r.get("role") != "baseline" for r in keep):
            stages.pop("benchmark")  # nothing of it describes this folder's files any more
            stages["stale"] = [*(stages.get("stale") or []), *[{**s, "stage": "benchmark"} for s in stale]]
    cloud = stages.get("compare_cloud")
    if isinstance(cloud, dict):
        aid = cloud.get("artifact_id")
        fig = {"id": aid, "digest": cloud.get("digest") or (before.get(aid) if isinstance(aid, str) else None)}
        if isinstance(aid, str) and not is_current(fig, digests):
            stages.pop("compare_cloud")
            stages["stale"] = [*(stages.get("stale") or []), {**_stale_entry(fig, why(aid)), "stage": "compare_cloud"}]
            gone.append(aid)
    return list(dict.fromkeys(gone))


def carry_figures(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """A later run into the same folder keeps what an earlier one measured of the bytes it did not
    change: the benchmark results (and its baseline, for the same source) and compare-cloud of
    ``old`` that are still current in ``new`` are added where ``new`` has none of its own. Returns
    the artifact ids whose figures were carried."""
    before = record_digests(old)
    olds = old.get("stages") if isinstance(old.get("stages"), dict) else {}
    stages = new.setdefault("stages", {})
    digests = record_digests(new)
    carried: list[str] = []
    ob = olds.get("benchmark")
    if isinstance(ob, dict) and isinstance(ob.get("results"), list):
        same_source = (old.get("source") or {}).get("digest") == (new.get("source") or {}).get("digest")
        nb = stages.get("benchmark")
        if not isinstance(nb, dict):
            nb = {k: v for k, v in ob.items() if k not in ("results", "stale")}
            nb["results"] = []
            nb["notes"] = [*[n for n in nb.get("notes") or [] if isinstance(n, str)],
                           f"carried from the run of {old.get('created') or 'an earlier run'}: "
                           "the figures of artifacts whose bytes did not change"]
            stages["benchmark"] = nb
        have = {(r.get("id"), r.get("threads")) for r in nb.get("results") or [] if isinstance(r, dict)}
        has_base = any(isinstance(r, dict) and r.get("role") == "baseline" for r in nb.get("results") or [])
        for r in ob["results"]:
            if not isinstance(r, dict) or (r.get("id"), r.get("threads")) in have:
                continue
            if r.get("role") == "baseline":
                if same_source and not has_base:
                    nb["results"].append(r)
                continue
            r = {**r, "digest": r.get("digest") or before.get(str(r.get("id")))}
            if is_current(r, digests):
                nb["results"].append({**r, "carried": True})
                carried.append(str(r.get("id")))
        if not any(isinstance(r, dict) and r.get("role") != "baseline" for r in nb["results"]):
            stages.pop("benchmark")
    oc = olds.get("compare_cloud")
    if isinstance(oc, dict) and "compare_cloud" not in stages and isinstance(oc.get("artifact_id"), str):
        fig = {"id": oc["artifact_id"], "digest": oc.get("digest") or before.get(oc["artifact_id"])}
        if is_current(fig, digests):
            stages["compare_cloud"] = oc
            carried.append(oc["artifact_id"])
    return list(dict.fromkeys(carried))


def load_manifest(out: Path) -> Manifest | None:
    """The typed manifest of an output folder, None when it has none (FormatError when unreadable)."""
    doc = read_manifest(out)
    if doc is None:
        return None
    m = Manifest(Path(out), doc)
    for record in m.records:  # every path checked on reading, whether or not this reader opens it
        m.artifact_folder(record)
    return m


def listed_paths(manifest: dict[str, Any]) -> list[str]:
    """The artifact folder names a manifest lists (one path component each; others are ignored)."""
    out = []
    for rec in manifest.get("artifacts") or []:
        name = str((rec or {}).get("path") or (rec or {}).get("id") or "") if isinstance(rec, dict) else ""
        if name and "/" not in name and "\\" not in name and name not in (".", ".."):
            out.append(name)
    return out


@dataclasses.dataclass(frozen=True)
class FolderClaim:
    """What writing a model's artifacts into an output folder will do to what is there.

    ``old``: records of the same model's artifacts already listed there (those a run does not
    rebuild stay listed); ``previous``: the same model's manifest there (its figures and release
    carry over); ``remove``: folders that ``overwrite`` replaces (another model's)."""

    out: Path
    old: tuple[dict[str, Any], ...] = ()
    previous: dict[str, Any] | None = None
    remove: tuple[str, ...] = ()
    replaces_other_model: bool = False


def claim_folder(out: Path, source: dict[str, Any], names: list[str], overwrite: bool,
                 flag: str = "--overwrite") -> FolderClaim:
    """Check, before any work, that artifacts ``names`` of ``source`` (a Source record) may be written
    into ``out``. The same model's folder is updated in place; another model's manifest, or a folder
    of one of ``names`` that no manifest of this model lists, needs ``overwrite``. Writes nothing."""
    out = Path(out)
    if not out.is_dir():
        return FolderClaim(out=out)
    try:
        old = read_manifest(out)
    except FormatError:
        if not overwrite:
            raise
        old = {"artifacts": [], "source": {}}
    if old is None:
        clash = [n for n in names if (out / n).exists()]
        if clash and not overwrite:
            raise UsageError(f"{out / clash[0]} exists and no manifest in {out} says what it is",
                             hint=f"give another --out, or {flag} to replace it")
        return FolderClaim(out=out, remove=tuple(clash), replaces_other_model=bool(clash))
    old_src = old.get("source") or {}
    same = bool(old_src.get("digest")) and old_src.get("digest") == source.get("digest")
    listed = listed_paths(old)
    if not same:
        if not overwrite:
            what = old_src.get("name") or "another model"
            origin = f" ({old_src['origin']})" if old_src.get("origin") not in (None, "", what) else ""
            new = source.get("name") or "this model"
            if source.get("origin") and source.get("origin") != new:
                new += f" ({source['origin']})"
            raise UsageError(f"{out} holds the artifacts of {what}{origin}, not of {new}",
                             hint=f"give another --out, or {flag} to replace its manifest and its "
                                  f"{len(listed)} artifact folder(s) as one step")
        clash = [n for n in names if (out / n).exists() and n not in listed]
        return FolderClaim(out=out, remove=tuple(dict.fromkeys([*listed, *clash])), replaces_other_model=True)
    clash = [n for n in names if (out / n).exists() and n not in listed]
    if clash and not overwrite:
        raise UsageError(f"{out / clash[0]} exists but the manifest in {out} does not list it",
                         hint=f"move it away, give another --out, or {flag} to replace it")
    kept = tuple(r for r in old.get("artifacts") or [] if isinstance(r, dict)
                 and str(r.get("path") or "") in listed and (out / str(r.get("path"))).is_dir())
    return FolderClaim(out=out, old=kept, previous=old, remove=tuple(clash))


def commit_folder(claim: FolderClaim, stage: Path, built: list[str], manifest: dict[str, Any]) -> Path:
    """Move the artifact folders ``built`` from ``stage`` into the output folder, remove what the
    claim replaces, then write the manifest (last: until then the old one stands). Each step is a
    rename on one file system; the replaced folders are deleted only after the manifest is written."""
    out = claim.out
    out.mkdir(parents=True, exist_ok=True)
    trash = stage / ".replaced"
    trash.mkdir(exist_ok=True)
    for name in dict.fromkeys([*claim.remove, *built]):
        if (out / name).exists() or (out / name).is_symlink():
            os.replace(out / name, trash / name)
    for name in built:
        os.replace(stage / name, out / name)
    path = write_manifest(out, manifest)
    shutil.rmtree(trash, ignore_errors=True)
    return path


def add_to_manifest(out: Path, record: dict[str, Any], parent_path: str | None = None) -> tuple[Path, list[str]] | None:
    """Add (or replace, by path) one artifact record in the output folder's manifest, atomically;
    the figures measured on a replaced artifact's old bytes go stale (:func:`settle_figures`).
    Returns (the manifest's path, the ids whose figures went stale), or None when the folder has
    no manifest."""
    m = read_manifest(out)
    if m is None:
        return None
    before = record_digests(m)
    arts = [r for r in m.get("artifacts") or [] if not (isinstance(r, dict) and r.get("path") == record["path"])]
    if parent_path is not None:  # keep a derived artifact beside its parent
        at = next((i + 1 for i, r in enumerate(arts) if isinstance(r, dict) and r.get("path") == parent_path), len(arts))
        arts.insert(at, record)
    else:
        arts.append(record)
    m["artifacts"] = arts
    stale = settle_figures(m, before)
    return write_manifest(out, m), stale
