"""``deploy``: plan, build every step (in this process or in workers), verify, run the stages
after verification, and commit the output folder in one move; a failed cell never takes the
verified ones with it, and a run that fails leaves the folder as it was."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from .. import cache
from .._util import Progress, noop_progress, safe_name, staging_dir
from ..artifact import Artifact
from ..bundle import next_version, same_release
from ..bundle import package as package_release
from ..bundle.releases import prune
from ..config import DeployConfig
from ..errors import UsageError, ValidationError, error_class
from ..isolate import in_child, run_isolated
from ..manifest import (
    FolderClaim,
    build_manifest,
    carry_figures,
    claim_folder,
    commit_folder,
    record_digests,
    write_manifest,
)
from ..pruning import lineage
from ..sources import Source, load_source
from ..targets import load_artifact
from .build import build_steps, failure_error, failures_text, limits_for
from .keys import TaskKeys, mark_cached
from .plan import Plan, check_plan, plan
from .stages import after_verification, analysis_stage, benchmark_stage, sample_predictions, write_folder_report
from .workers import build_parallel, child_progress

__all__ = ["DeployResult", "deploy", "deploy_child"]


@dataclasses.dataclass(frozen=True)
class DeployResult:
    out: Path
    manifest_path: Path
    manifest: dict[str, Any]
    artifacts: tuple[Artifact, ...]


def deploy(cfg: DeployConfig, progress: Progress = noop_progress) -> DeployResult | Plan:
    """Load the model, build and verify every requested target, write artifacts and manifest.json.

    With ``cfg.dry_run`` nothing is built or written: the resolved :class:`Plan` is returned."""
    timings: dict[str, float] = {}
    p = plan(cfg)
    if cfg.dry_run:
        return mark_cached(cfg, p)
    check_plan(p)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if cfg.isolate and Path(cfg.model).exists() and not in_child():
        # a model file is untrusted input for native parsers: do all the work in a limited child
        progress(f"working on {cfg.model} in an isolated child process")
        doc = run_isolated("edgeship.pipeline.orchestration:deploy_child", {"options": cfg.model_dump(mode="json")},
                           what=str(cfg.model), limits=limits_for(p.steps))
        manifest = doc["manifest"]
        arts = tuple(load_artifact(out / a["path"]) for a in manifest["artifacts"])
        return DeployResult(out=out, manifest_path=Path(doc["manifest_path"]), manifest=manifest, artifacts=arts)
    t0 = time.perf_counter()
    progress(f"loading {cfg.model}")
    source = load_source(cfg.model, **cfg.source_kwargs())
    timings["load"] = time.perf_counter() - t0
    names = [safe_name(f"{s.target}-{s.precision}") for s in p.steps]
    # before any work: may this model's artifacts go into this folder? (another model's need --overwrite)
    claim = claim_folder(out, source.record(), names, cfg.overwrite)
    with staging_dir(out) as stage:
        return _deploy_into(cfg, p, source, claim, stage, timings, t0, progress)


def deploy_child(options: dict[str, Any]) -> dict[str, Any]:
    """deploy() inside the isolated child; the result crosses back as JSON."""
    res = deploy(DeployConfig.build(**options), progress=child_progress)
    assert isinstance(res, DeployResult)
    return {"manifest": res.manifest, "manifest_path": str(res.manifest_path)}


def _deploy_into(cfg: DeployConfig, p: Plan, source: Source, claim: FolderClaim, stage: Path,
                 timings: dict[str, float], t0: float, progress: Progress) -> DeployResult:
    """Build every step into ``stage``; only when the run succeeds do the artifacts and the manifest
    move into the output folder (a failed run leaves it as it was)."""
    out = Path(cfg.out)
    keys = TaskKeys(cfg, source, p) if cache.enabled(cfg.cache) else None
    if p.jobs > 1:
        artifacts, failed, workers = build_parallel(cfg, p, source, stage, keys, p.jobs, timings, progress)
    else:
        artifacts, failed = build_steps(cfg, source, p.steps, stage, keys, timings, progress)
        workers = None
    if failed and not artifacts:  # nothing to write: the output folder stays as it was
        first = failure_error(failed[0])
        others = failures_text(failed[1:])
        raise type(first)(f"no artifact written: {first.message}" + (f" (also: {others})" if others else ""),
                          hint=first.hint, **{**first.details, "failed": failed})
    stages = _stages(cfg, p, source, artifacts, failed, keys, timings, progress)
    if workers is not None:
        stages["convert"]["workers"] = workers
    timings["total"] = time.perf_counter() - t0
    records = []
    for a in artifacts:
        rec = a.record()
        rec["id"] = a.root.name
        rec["path"] = a.root.name
        records.append(rec)
    built = [a.root.name for a in artifacts]
    kept = [r for r in claim.old if r.get("path") not in built]  # the same model's, not rebuilt: still listed
    stages["convert"]["kept"] = [r.get("path") for r in kept]
    differs = _kept_inputs_differ(kept, records)
    if differs:  # e.g. --tflite-nhwc rebuilt tflite fp32/int8 while the earlier tflite-fp16 stays NCHW
        stages["convert"]["inputs_differ"] = differs
        for d in differs:
            progress(f"note: {d}")
    if claim.replaces_other_model:
        stages["convert"]["replaced"] = list(claim.remove)
    manifest = build_manifest(source=source.record(), config=cfg.model_dump(mode="json"), artifacts=records + kept,
                              stages=stages, timings=timings)
    _carry_from_earlier(out, claim, manifest, progress)
    path = commit_folder(claim, stage, built, manifest)
    artifacts = [a.model_copy(update={"root": out / a.root.name}) for a in artifacts]
    if failed:
        write_folder_report(out, progress)
        which = failures_text(failed)
        kind = ValidationError if any(issubclass(error_class(f["error"]), ValidationError) for f in failed) \
            else type(failure_error(failed[0]))
        raise kind(f"{len(artifacts)} of {len(artifacts) + len(failed)} artifacts written, {len(failed)} failed "
                   f"(not written): {which}",
                   hint=f"the other {len(artifacts)} artifact(s) were written to {out} (manifest.json, "
                        "stages.convert.failed; no release was packaged: edgeship package to make one)"
                        + ("; raise --max-drop or lower --min-cosine only if this loss is acceptable" if kind is ValidationError else ""),
                   failed=failed, manifest_path=str(path))
    manifest = _package(cfg, out, path, manifest, t0, progress)
    write_folder_report(out, progress)
    return DeployResult(out=out, manifest_path=path, manifest=manifest, artifacts=tuple(artifacts))


def _stages(cfg: DeployConfig, p: Plan, source: Source, artifacts: list[Artifact], failed: list[dict[str, Any]],
            keys: TaskKeys | None, timings: dict[str, float], progress: Progress) -> dict[str, Any]:
    """The manifest's stages: what was converted (and failed, skipped, reused), then the stages
    after verification (predictions, analysis, benchmark), each recorded in its place."""
    stages: dict[str, Any] = {"convert": {"steps": [f"{s.target}-{s.precision}" for s in p.steps],
                                          "skipped": list(p.skipped),
                                          "verified": all(a.verification is not None and a.verification.verified
                                                          for a in artifacts) and not failed, "failed": failed,
                                          **{k: [a.root.name for a in artifacts if a.verification is not None
                                                 and a.verification.status == k] for k in ("unverified", "structural")}}}
    if keys is not None:
        stages["convert"]["cache"] = keys.record()
    made = lineage(source)  # a model edgeship compress made: what it gained and lost, beside what deploy measures
    if made is not None:
        stages["compression"] = made
    if source.preprocess is not None and source.labels and len(source.inputs) == 1:
        progress("classifying the sample photos")
        if keys is None:
            stages["predictions"] = after_verification("predictions", lambda: sample_predictions(source, artifacts), progress)
        else:
            stages["predictions"] = after_verification("predictions", lambda: keys.document(
                "predictions", lambda: sample_predictions(source, artifacts),
                artifacts=[(a.root.name, a.digest) for a in artifacts])[0], progress)
    progress("analysing the model: per-layer cost, advice, roofline")
    t1 = time.perf_counter()
    stages["analysis"] = after_verification("analysis", lambda: analysis_stage(source, artifacts), progress)
    timings["analysis"] = time.perf_counter() - t1
    if cfg.benchmark:
        t1 = time.perf_counter()
        stages["benchmark"] = after_verification("benchmark", lambda: benchmark_stage(cfg, source, artifacts, keys, progress),
                                                 progress)
        timings["benchmark"] = time.perf_counter() - t1
    return stages


def _package(cfg: DeployConfig, out: Path, path: Path, manifest: dict[str, Any], t0: float,
             progress: Progress) -> dict[str, Any]:
    """``deploy --package``: a signed release of what was committed, unless the release the folder
    holds already ships these bytes; older releases beyond ``--keep-releases`` removed."""
    unchanged = manifest["stages"].get("bundle") if cfg.package and not cfg.release_version else None
    if unchanged:  # nothing a release ships changed: the release already made is this build's
        progress(f"release {unchanged['version']} already holds these artifacts, byte for byte: no new release "
                 "(--release-version makes one)")
        manifest["stages"]["bundle"] = {**unchanged, "unchanged": True}
        write_manifest(out, manifest)
        return manifest
    if not cfg.package:
        return manifest
    t1 = time.perf_counter()
    progress("packaging a signed release bundle")
    dest = out / "release"
    made = package_release(out, version=cfg.release_version or next_version(dest), sign_key=cfg.sign_key, dest=dest,
                           progress=progress, record=False)
    manifest["stages"]["bundle"] = made.stage  # the release's record, written once with the timings
    manifest["timings_s"]["package"] = round(time.perf_counter() - t1, 3)
    manifest["timings_s"]["total"] = round(time.perf_counter() - t0, 3)
    write_manifest(out, manifest)
    if cfg.keep_releases:  # after the record: pruning never removes the folder's current release
        gone = prune(out, cfg.keep_releases)
        if gone["removed"]:
            progress(f"removed release(s) {', '.join(gone['removed'])} from {dest}: keeping the newest "
                     f"{cfg.keep_releases} (--keep-releases; edgeship release prune)")
    return manifest


def _input_text(rec: dict[str, Any]) -> str:
    ins = [i for i in rec.get("inputs") or [] if isinstance(i, dict)]
    return ", ".join(f"{i.get('layout') or ''} {i.get('dtype')} {list(i.get('shape') or [])}".strip() for i in ins)


def _kept_inputs_differ(kept: list[dict[str, Any]], built: list[dict[str, Any]]) -> list[str]:
    """Artifacts an earlier run made that stay listed beside this run's of the same target but take
    other inputs (layout, dtype, shape): said, as an app feeding one must not feed the other's."""
    out = []
    for k in kept:
        same = [b for b in built if b.get("target") == k.get("target")]
        if same and _input_text(k) != _input_text(same[0]):
            out.append(f"{k.get('path')} (kept from an earlier run) takes {_input_text(k)}, while {same[0].get('path')} "
                       f"takes {_input_text(same[0])}: rebuild it with this run's options to match (or remove it)")
    return out


def _carry_from_earlier(out: Path, claim: FolderClaim, manifest: dict[str, Any], progress: Progress) -> None:
    """A run into a folder the same model's run wrote before: the figures measured there of bytes
    this run left as they were stay (:func:`edgeship.manifest.carry_figures`); an artifact rebuilt
    with other bytes is named (``stages.convert.changed``), and its old figures are not kept."""
    old = claim.previous
    if old is None:
        return
    before, now = record_digests(old), record_digests(manifest)
    changed = [i for i in now if i in before and before[i] != now[i]]
    if changed:
        manifest["stages"]["convert"]["changed"] = changed
        progress(f"replacing {', '.join(changed)}: rebuilt with other bytes than the folder held "
                 "(its earlier figures no longer count)")
    carried = carry_figures(old, manifest)
    if carried:
        progress(f"keeping the earlier figures of {len(carried)} unchanged artifact(s)")
    published = (old.get("stages") or {}).get("published")
    if isinstance(published, list):  # the folder's releases an update repository serves (pruning keeps them)
        manifest["stages"]["published"] = published
    bundle = (old.get("stages") or {}).get("bundle")
    if isinstance(bundle, dict):  # the release of the run before: still this folder's while it ships the same bytes
        if same_release(out, {**manifest, "stages": {**manifest["stages"], "bundle": bundle}}) is not None:
            manifest["stages"]["bundle"] = {**bundle, "key_created": False}
