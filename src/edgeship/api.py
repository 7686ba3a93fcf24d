"""The public API. The CLI is a thin layer over these functions."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._util import article, atomic_dir, atomic_write_text, refuse_release, safe_name, staging_dir
from .artifact import ARTIFACT_JSON, LABELS_TXT, Artifact
from .config import DeployConfig
from .errors import (
    EdgeshipError,
    InputError,
    MissingExtraError,
    UnsupportedError,
    UsageError,
    ValidationError,
    first_line,
    printable,
)
from .isolate import Limits, in_child, run_isolated
from .manifest import (
    FolderClaim,
    add_to_manifest,
    build_manifest,
    carry_figures,
    claim_folder,
    commit_folder,
    read_manifest,
    record_digests,
    write_manifest,
)
from .sources import BUILTIN_MODELS, Source, load_source, sniff_format
from .targets import available_targets, default_targets, get_target, known_precisions, load_artifact
from .verify import observed_outputs, raise_if_failed

__all__ = ["load", "analyze", "convert", "plan", "deploy", "quantize", "quantization_report", "classify", "classify_bundle",
           "benchmark", "package", "report", "verify_bundle", "keygen", "cache_info", "cache_clear", "DeployResult", "Plan"]

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def load(model: str = "efficientnet-lite0", **options: Any) -> Source:
    """Load a model source (built-in name, factory, or file) with the source options."""
    cfg = DeployConfig.build(model=model, **options)
    return load_source(cfg.model, **cfg.source_kwargs())


def analyze(model: Any = "efficientnet-lite0", **options: Any) -> dict[str, Any]:
    """Analyse a model before converting it: per-layer MACs/params/memory, lighter-layer advice, a
    roofline estimate and a per-target compatibility preview (JSON-ready; schema in
    :mod:`edgeship.analysis`). ``options`` are :class:`edgeship.analysis.config.AnalyzeConfig` fields."""
    from .analysis import analyze as _analyze
    from .analysis.config import AnalyzeConfig

    cfg = AnalyzeConfig.build(**options)
    if cfg.isolate and isinstance(model, (str, Path)) and Path(model).exists() and not in_child():
        # a model file is input for native parsers (onnx, torch.export, LiteRT): analyse it in a limited child
        return run_isolated("edgeship.api:_analyze_child",
                            {"model": str(model), "options": {**cfg.model_dump(mode="json"), "isolate": False}},
                            what=str(model))
    src = cfg.source_kwargs()
    shapes = src.pop("input_shapes")
    return _analyze(model, cfg.targets, cfg.profile if cfg.roofline else False, input_shapes=shapes,
                    top=cfg.top, source_options=src)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What deploy will do, as a task graph: ``steps`` (one conversion each: ``id``, what it runs
    ``after``, the worker ``group`` it shares a process with), the ``shared`` tasks several steps
    wait for (the source's learned rounding), and what is ``skipped`` and why."""

    model: str
    source_kind: str
    out: Path
    steps: tuple[dict[str, Any], ...]
    skipped: tuple[dict[str, Any], ...] = ()
    shared: tuple[dict[str, Any], ...] = ()
    jobs: int = 1  # worker processes at once (1: in this process)

    @property
    def ready(self) -> bool:
        return all(not s["missing"] and s["accepts_source"] for s in self.steps)

    @property
    def groups(self) -> list[list[dict[str, Any]]]:
        """The steps by worker group, in plan order: a target family (onnx with ort and web, which
        are built from its artifacts) runs in one process, one step after another."""
        out: dict[str, list[dict[str, Any]]] = {}
        for s in self.steps:
            out.setdefault(s["group"], []).append(s)
        return list(out.values())

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "source_kind": self.source_kind, "out": str(self.out),
                "ready": self.ready, "jobs": self.jobs, "steps": list(self.steps), "shared": list(self.shared),
                "skipped": list(self.skipped)}


def source_kind(model: str) -> str:
    if model in BUILTIN_MODELS:
        return "torch"
    p = Path(model)
    if p.exists():
        kind = sniff_format(p)
        return {"torch-zip": "torch", "torch-pickle": "torch"}.get(kind, kind)
    if ":" in model:
        return "torch"
    raise InputError(f"no such model file: {model}",
                     hint=f"give a model file, a factory 'package.module:function', or a built-in name ({', '.join(BUILTIN_MODELS)})")


def plan(cfg: DeployConfig) -> Plan:
    """Resolve targets and check the whole chain before any work: unknown targets, missing extras.

    One step per (target, precision): fp32 always, then each ``--quantize`` precision the target
    offers. A precision a target does not offer is listed in ``skipped`` with the reason.
    """
    names = default_targets() if "all" in cfg.targets else list(dict.fromkeys(cfg.targets))
    targets = [get_target(name) for name in names]  # UsageError on unknown names
    # a target built from another's artifact (ort, web from onnx) comes after it, to reuse it
    targets.sort(key=lambda t: t.derives_from in names)
    if cfg.quantize:  # the precisions are the registered targets' (a plugin may add one)
        known = known_precisions()
        bad = [q for q in cfg.quantize if q not in known]
        if bad:
            raise UsageError(f"unknown precision {bad[0]!r}", hint=f"choose {', '.join(known)} or none")
    kind = source_kind(cfg.model)
    steps = []
    skipped = []
    every = "all" in cfg.targets
    for t in targets:
        missing = t.check_environment()
        refused = t.refuses(source_kind=kind)
        if every and (refused or missing):
            # 'all' means every target that can take this model here; named targets still fail loudly
            reason = refused or f"missing {', '.join(missing)}: {t.install_hint(missing)}"
            skipped.extend({"target": t.name, "precision": pr, "reason": reason}
                           for pr in ["fp32", *cfg.quantize] if pr in t.precisions)
            continue
        for precision in ["fp32", *cfg.quantize]:
            refused = t.refuses(precision=precision)
            if refused:
                skipped.append({"target": t.name, "precision": precision, "reason": refused})
                continue
            steps.append({
                "id": safe_name(f"{t.name}-{precision}"), "target": t.name, "format": t.format.value,
                "precision": precision, "stages": ["convert", "verify"], "accepts_source": kind in t.accepts,
                "missing": missing, "install": t.install_hint(missing) if missing else None,
            })
    shared = _link(steps, cfg, kind)
    p = Plan(model=cfg.model, source_kind=kind, out=cfg.out, steps=tuple(steps), skipped=tuple(skipped),
             shared=tuple(shared))
    return dataclasses.replace(p, jobs=_jobs(cfg, p))


ROUNDING_TASK = "learned-rounding"


def _link(steps: list[dict[str, Any]], cfg: DeployConfig, kind: str) -> list[dict[str, Any]]:
    """Give each step what it runs ``after`` and its worker ``group``; return the shared tasks.

    A reduced precision comes after its target's fp32; a target built from another's artifact
    (ort, web from onnx) after that artifact at its precision, in the same group; the int8 of a
    target that starts from the torch source (tflite, executorch, openvino) after the one learned
    rounding of the source they share, when it is asked for (``--rounding adaround``; ``auto`` climbs
    to it only when the rungs below miss the budget, and then the first target to need it computes
    it for the others: :func:`edgeship.quant.rounding.rounded_source` holds one in flight)."""
    ids = {s["id"] for s in steps}
    wants_rounding = kind in ("torch", "pt2") and cfg.rounding == "adaround"
    shared_by = []
    for s in steps:
        t = get_target(s["target"])
        after = []
        if t.derives_from and safe_name(f"{t.derives_from}-{s['precision']}") in ids:
            after.append(safe_name(f"{t.derives_from}-{s['precision']}"))
        if s["precision"] != "fp32" and safe_name(f"{t.name}-fp32") in ids:
            after.append(safe_name(f"{t.name}-fp32"))
        if s["precision"] == "int8" and t.int8_from_torch and wants_rounding:
            after.append(ROUNDING_TASK)
            shared_by.append(s["id"])
        s["after"] = after
        s["group"] = t.derives_from if t.derives_from and any(x["target"] == t.derives_from for x in steps) else t.name
    if not shared_by:
        return []
    return [{"id": ROUNDING_TASK, "what": f"AdaRound of the source's weights ({cfg.rounding_iters} steps per layer), "
             "shared by " + ", ".join(shared_by), "for": shared_by}]


def _mark_cached(cfg: DeployConfig, p: Plan) -> None:
    """For ``--dry-run``: which steps the cache holds (``cached``: a re-run copies them). Only for a
    model that is not a file: a file is parsed in the isolated child, never for a dry run (None)."""
    from . import cache

    if not cache.enabled(cfg.cache) or Path(cfg.model).exists() or not p.ready:
        return
    try:
        source = load_source(cfg.model, **cfg.source_kwargs())
    except EdgeshipError:
        return  # the real run says what is wrong with the model
    keys = _TaskKeys(cfg, source, p)
    for s in p.steps:
        s["cached"] = cache.has(keys.convert(s["target"], s["precision"]))
    for t in p.shared:
        t["cached"] = source.module is not None and _rounding_cached(cfg, source, keys)


def check_plan(p: Plan) -> None:
    """Refuse before any work a plan none of whose targets can take the model, or one that names a
    target whose extra is missing. A named target that cannot take this kind of model beside others
    that can is one failed cell (its reason in the manifest), and the others are built."""
    if p.steps and not any(s["accepts_source"] for s in p.steps):
        s = p.steps[0]
        accepts = ", ".join(get_target(s["target"]).accepts)
        raise UnsupportedError(f"target {s['target']!r} cannot convert {article(p.source_kind)} model",
                               hint=f"it converts from: {accepts}")
    for s in p.steps:
        if s["missing"]:
            get_target(s["target"]).ensure_environment()


def convert(source: Source, target: str, out_dir: str | Path, cfg: DeployConfig | None = None,
            progress: Progress = _noop, precision: str = "fp32", parent: Artifact | None = None) -> Artifact:
    """Convert ``source`` for ``target`` at ``precision``, verify it, write it to ``out_dir`` atomically.

    An artifact that fails verification is never written: ValidationError with the figures.
    """
    cfg = cfg or DeployConfig.build(model=source.origin)
    t = get_target(target)
    t.ensure_environment()
    if source.kind not in t.accepts:
        raise UnsupportedError(f"target {t.name!r} cannot convert {article(source.kind)} model",
                               hint=f"it converts from: {', '.join(t.accepts)}")
    if precision not in t.precisions:
        raise UnsupportedError(f"target {t.name!r} does not build {precision}",
                               hint=f"it builds: {', '.join(t.precisions)}")
    final = Path(out_dir)
    t.progress = lambda msg: progress(f"{t.name} {precision}: {msg}")
    with atomic_dir(final) as tmp:
        progress(f"{t.name} {precision}: converting")
        art = t.convert(source, tmp, cfg, precision=precision, parent=parent)
        progress(f"{t.name} {precision}: verifying against the source")
        v = t.verify(source, art, cfg)
        # the outputs as the artifact returns them (a declared shape that does not fit is replaced)
        art = art.model_copy(update={"verification": v, "outputs": observed_outputs(art, v)})
        raise_if_failed(art, v)
        if v.status == "unverified":
            progress(f"{t.name} {precision}: UNVERIFIED (random inputs only): give --eval real data")
        art = _note_float_tables(source, art, parent)
        if art.labels:
            atomic_write_text(tmp / LABELS_TXT, "\n".join(art.labels) + "\n")
        atomic_write_text(tmp / ARTIFACT_JSON, json.dumps(art.record(), indent=2) + "\n")
    return art.model_copy(update={"root": final})


def _note_float_tables(source: Source, art: Artifact, parent: Artifact | None) -> Artifact:
    """An int8 artifact that hardly shrank because its toolchain leaves embedding tables in float
    says so, with the tables and their size (``details.float_weights``), instead of looking int8."""
    if art.precision != "int8" or parent is None or not parent.size_bytes:
        return art
    ratio = art.size_bytes / parent.size_bytes
    if ratio >= 1.0:  # a tiny model: the scales, zero points and Q/DQ nodes outweigh the bytes saved
        note = (f"int8 is larger than fp32 ({art.size_bytes / 1e3:.1f} kB vs {parent.size_bytes / 1e3:.1f} kB): "
                "in a model this small the quantisation parameters (scales, zero points, quantise/dequantise "
                "nodes) outweigh the weight bytes int8 saves; not recommended, ship fp32 (or fp16)")
        art = art.model_copy(update={"notes": (*art.notes, note), "details": {
            **art.details, "larger_than_fp32": {"bytes": art.size_bytes, "fp32_bytes": parent.size_bytes}}})
    tables = source.embedding_tables()
    big = sum(b for _, b in tables)
    if ratio < 0.6 or big < 0.25 * parent.size_bytes:
        return art
    names = ", ".join(n for n, _ in tables[:4]) + (f" and {len(tables) - 4} more" if len(tables) > 4 else "")
    note = (f"int8 is {ratio:.0%} of the fp32 size: {art.target}'s int8 toolchain quantises conv/linear weights, "
            f"not embedding tables, so {names} ({big / 1e6:.2f} MB) {'stays' if len(tables) == 1 else 'stay'} float32"
            + ("; the onnx target quantises them (int8 rows, dequantised after the lookup)" if art.target != "onnx" else ""))
    return art.model_copy(update={"notes": (*art.notes, note),
                                  "details": {**art.details, "float_weights": {
                                      "tables": [n for n, _ in tables], "bytes": big, "size_ratio": round(ratio, 4)}}})


@dataclasses.dataclass(frozen=True)
class DeployResult:
    out: Path
    manifest_path: Path
    manifest: dict[str, Any]
    artifacts: tuple[Artifact, ...]


def deploy(model: str | None = None, *, progress: Progress = _noop, **options: Any) -> DeployResult | Plan:
    """Load ``model``, build and verify every requested target, write artifacts and manifest.json.

    With ``dry_run=True`` nothing is built or written: the resolved :class:`Plan` is returned (the
    steps, what is skipped and why, the extras missing), as ``edgeship deploy --dry-run`` prints it.
    """
    if model is not None:
        options["model"] = model
    cfg = options.pop("config", None) or DeployConfig.build(**options)
    timings: dict[str, float] = {}
    p = plan(cfg)
    if cfg.dry_run:
        _mark_cached(cfg, p)
        return p
    check_plan(p)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if cfg.isolate and Path(cfg.model).exists() and not in_child():
        # a model file is untrusted input for native parsers: do all the work in a limited child
        progress(f"working on {cfg.model} in an isolated child process")
        doc = run_isolated("edgeship.api:_deploy_child", {"options": cfg.model_dump(mode="json")},
                           what=str(cfg.model), limits=_limits_for(p.steps))
        manifest = doc["manifest"]
        arts = tuple(load_artifact(out / a["path"]) for a in manifest["artifacts"])
        return DeployResult(out=out, manifest_path=Path(doc["manifest_path"]), manifest=manifest, artifacts=arts)
    t0 = time.perf_counter()
    progress(f"loading {cfg.model}")
    source = load_source(cfg.model, **cfg.source_kwargs())
    timings["load"] = time.perf_counter() - t0
    names = [safe_name(f"{s['target']}-{s['precision']}") for s in p.steps]
    # before any work: may this model's artifacts go into this folder? (another model's need --overwrite)
    claim = claim_folder(out, source.record(), names, cfg.overwrite)
    with staging_dir(out) as stage:
        return _deploy_into(cfg, p, source, claim, stage, timings, t0, progress)


def _deploy_into(cfg: DeployConfig, p: Plan, source: Source, claim: FolderClaim, stage: Path,
                 timings: dict[str, float], t0: float, progress: Progress) -> DeployResult:
    """Build every step into ``stage``; only when the run succeeds do the artifacts and the manifest
    move into the output folder (a failed run leaves it as it was)."""
    out = Path(cfg.out)
    from . import cache

    keys = _TaskKeys(cfg, source, p) if cache.enabled(cfg.cache) else None
    if p.jobs > 1:
        artifacts, failed, workers = _build_parallel(cfg, p, source, stage, keys, p.jobs, timings, progress)
    else:
        artifacts, failed = _build_steps(cfg, source, list(p.steps), stage, keys, timings, progress)
        workers = None
    if failed and not artifacts:  # nothing to write: the output folder stays as it was
        first = failure_error(failed[0])
        others = _failures_text(failed[1:])
        raise type(first)(f"no artifact written: {first.message}" + (f" (also: {others})" if others else ""),
                          hint=first.hint, **{**first.details, "failed": failed})
    stages: dict[str, Any] = {"convert": {"steps": [f"{s['target']}-{s['precision']}" for s in p.steps],
                                          "skipped": list(p.skipped),
                                          "verified": all(a.verification is not None and a.verification.verified
                                                          for a in artifacts) and not failed, "failed": failed,
                                          **{k: [a.root.name for a in artifacts if a.verification is not None
                                                 and a.verification.status == k] for k in ("unverified", "structural")}}}
    if workers is not None:
        stages["convert"]["workers"] = workers
    if keys is not None:
        stages["convert"]["cache"] = keys.record()
    from .pruning import lineage

    made = lineage(source)  # a model edgeship compress made: what it gained and lost, beside what deploy measures
    if made is not None:
        stages["compression"] = made
    if source.preprocess is not None and source.labels and len(source.inputs) == 1:
        progress("classifying the sample photos")
        if keys is None:
            stages["predictions"] = _after_verification("predictions", lambda: _sample_predictions(source, artifacts), progress)
        else:
            stages["predictions"] = _after_verification("predictions", lambda: keys.document(
                "predictions", lambda: _sample_predictions(source, artifacts),
                artifacts=[(a.root.name, a.digest) for a in artifacts])[0], progress)
    progress("analysing the model: per-layer cost, advice, roofline")
    t1 = time.perf_counter()
    stages["analysis"] = _after_verification("analysis", lambda: _analysis_stage(source, artifacts), progress)
    timings["analysis"] = time.perf_counter() - t1
    if cfg.benchmark:
        t1 = time.perf_counter()
        stages["benchmark"] = _after_verification("benchmark", lambda: _benchmark_stage(cfg, source, artifacts, keys, progress),
                                                  progress)
        timings["benchmark"] = time.perf_counter() - t1
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
    manifest = build_manifest(
        source=source.record(),
        config=cfg.model_dump(mode="json"),
        artifacts=records + kept,
        stages=stages,
        timings=timings,
    )
    _carry_from_earlier(out, claim, manifest, progress)
    path = commit_folder(claim, stage, built, manifest)
    artifacts = [a.model_copy(update={"root": out / a.root.name}) for a in artifacts]
    if failed:
        _write_report(out, progress)
        which = _failures_text(failed)
        kind = ValidationError if any(f["error"] == "ValidationError" for f in failed) else type(failure_error(failed[0]))
        raise kind(f"{len(artifacts)} of {len(artifacts) + len(failed)} artifacts written, {len(failed)} failed "
                   f"(not written): {which}",
                   hint=f"the other {len(artifacts)} artifact(s) were written to {out} (manifest.json, "
                        "stages.convert.failed; no release was packaged: edgeship package to make one)"
                        + ("; raise --max-drop or lower --min-cosine only if this loss is acceptable" if kind is ValidationError else ""),
                   failed=failed, manifest_path=str(path))
    unchanged = manifest["stages"].get("bundle") if cfg.package and not cfg.release_version else None
    if unchanged:  # nothing a release ships changed: the release already made is this build's
        progress(f"release {unchanged['version']} already holds these artifacts, byte for byte: no new release "
                 "(--release-version makes one)")
        manifest["stages"]["bundle"] = {**unchanged, "unchanged": True}
        write_manifest(out, manifest)
    elif cfg.package:
        from .bundle import next_version
        from .bundle import package as _package

        t1 = time.perf_counter()
        progress("packaging a signed release bundle")
        dest = out / "release"
        _package(out, version=cfg.release_version or next_version(dest), sign_key=cfg.sign_key, dest=dest, progress=progress)
        if cfg.keep_releases:
            from .bundle.releases import prune

            gone = prune(out, cfg.keep_releases)
            if gone["removed"]:
                progress(f"removed release(s) {', '.join(gone['removed'])} from {dest}: keeping the newest "
                         f"{cfg.keep_releases} (--keep-releases; edgeship release prune)")
        manifest = json.loads(path.read_text())
        manifest["timings_s"]["package"] = round(time.perf_counter() - t1, 3)
        manifest["timings_s"]["total"] = round(time.perf_counter() - t0, 3)
        write_manifest(out, manifest)
    _write_report(out, progress)
    return DeployResult(out=out, manifest_path=path, manifest=manifest, artifacts=tuple(artifacts))


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
        from .bundle import same_release

        if same_release(out, {**manifest, "stages": {**manifest["stages"], "bundle": bundle}}) is not None:
            manifest["stages"]["bundle"] = {**bundle, "key_created": False}


def _build_steps(cfg: DeployConfig, source: Source, steps: list[dict[str, Any]], stage: Path, keys: _TaskKeys | None,
                 timings: dict[str, float], progress: Progress) -> tuple[list[Artifact], list[dict[str, Any]]]:
    """Build ``steps`` one after another into ``stage`` (each from the cache when it holds it):
    the artifacts written and the reduced precisions that were not (a failed fp32 raises)."""
    artifacts: list[Artifact] = []
    built: dict[tuple[str, str], Artifact] = {}
    failed: list[dict[str, Any]] = []
    for step in steps:
        t1 = time.perf_counter()
        target, precision, name = step["target"], step["precision"], step["id"]
        folder = stage / name
        base = get_target(target).derives_from
        k = keys.convert(target, precision) if keys is not None else None
        gone = None
        try:
            gone = next((f for f in failed if (f["target"], f["precision"]) in ((base, precision), (target, "fp32"))), None)
            if gone is not None:  # what it is built from was not written: neither is it, for the same reason
                kind = ValidationError if gone["error"] == "ValidationError" else UnsupportedError
                raise kind(f"{gone['target']} {gone['precision']}, which it is built from, was not written: {gone['message']}",
                           hint=gone["hint"])
            if precision != "fp32" and source.quantised:
                from .formats.onnx import requantising_refused

                raise requantising_refused(source.name, source.quantised, precision)
            art = keys.reuse(k, folder, name, progress) if keys is not None else None
            if art is None:
                # parent: the artifact it is built from (ort, web: onnx's at this precision), else its own fp32
                parent = built.get((base or "", precision)) or built.get((target, "fp32"))
                art = convert(source, target, folder, cfg, progress=progress, precision=precision, parent=parent)
                if keys is not None:
                    keys.keep(k, folder, name, time.perf_counter() - t1)
        except Exception as e:  # noqa: BLE001 - one cell's failure is a row of the outcome, never the run's end
            # an artifact that fails (below budget, an op its converter cannot take, a converter's own
            # crash) is reported and not written; the other cells are still built and the verified
            # ones land (what depends on it fails with it, naming it)
            failure = cell_failure(target, precision, e)
            if (keys is not None and gone is None and isinstance(e, (ValidationError, UnsupportedError))
                    and not isinstance(e, MissingExtraError) and not getattr(e, "from_cache", False)):
                keys.keep_failure(k, failure, time.perf_counter() - t1)
            failed.append(failure)
            progress(f"{target} {precision}: not written ({failure['message']})")
            continue
        built[(target, precision)] = art
        artifacts.append(art)
        timings[f"convert.{target}.{precision}"] = time.perf_counter() - t1
    return artifacts, failed


def _limits_for(steps: Sequence[dict[str, Any]]) -> Limits:
    """The limits of a child process that builds ``steps``: a runtime that reserves far more
    address space than it uses (the browser's V8 cage) is limited by its data segment, as the
    benchmark's workers are."""
    kinds = {get_target(s["target"]).memory_limit for s in steps}
    return dataclasses.replace(Limits.from_env(), memory_kind="data" if "data" in kinds else "address_space")


def _failures_text(failed: Sequence[dict[str, Any]]) -> str:
    """The failed cells in one line: 'target-precision: message; ...'."""
    return "; ".join(f"{f['target']}-{f['precision']}: {f['message']}" for f in failed)


def _after_verification(stage: str, compute: Callable[[], dict[str, Any]], progress: Progress) -> dict[str, Any]:
    """A stage that runs once the artifacts are verified (predictions, analysis, benchmark): its
    failure is recorded in its place in the manifest and said, never the end of the run: the
    verified artifacts are written all the same. Ctrl-C still stops the run."""
    try:
        return compute()
    except Exception as e:  # noqa: BLE001 - the artifacts it describes are verified: keep them
        f = cell_failure(stage, "-", e)
        progress(f"{stage}: failed ({f['message']}); the verified artifacts are written all the same")
        return {"error": {k: v for k, v in f.items() if k not in ("target", "precision")}}


def cell_failure(target: str, precision: str, e: BaseException) -> dict[str, Any]:
    """One cell's failure as the manifest keeps it: the error's type, message and hint; a failure
    that is not an edgeship error (a converter's or runtime's own exception) is an internal error
    named as such, with its traceback's last lines for the report."""
    if isinstance(e, EdgeshipError):
        out = {"target": target, "precision": precision, "error": type(e).__name__, "message": e.message, "hint": e.hint}
        if e.details:  # what JSON can hold of them (numbers from numpy as floats; the rest as text)
            def plain(x: Any) -> Any:
                return x.item() if hasattr(x, "item") and getattr(x, "ndim", 1) == 0 else str(x)

            details = {}
            for k, v in e.details.items():
                try:
                    details[k] = json.loads(json.dumps(v, default=plain))
                except (TypeError, ValueError, RecursionError):
                    continue
            out["details"] = details
        return out
    import traceback

    tb = traceback.format_exception(type(e), e, e.__traceback__)
    return {"target": target, "precision": precision, "error": "InternalError",
            "message": printable(f"internal error: {type(e).__name__}: {first_line(e, 300)}"),
            "hint": "a bug in edgeship or the converter it calls: please report it with the traceback kept in "
                    "manifest.json (stages.convert.failed)",
            "traceback": printable("".join(tb[-6:]))[-3000:]}


def failure_error(f: dict[str, Any]) -> EdgeshipError:
    """The typed error a failure record stands for (an internal error: the base EdgeshipError)."""
    from . import errors

    cls = getattr(errors, str(f.get("error")), None)
    cls = cls if isinstance(cls, type) and issubclass(cls, EdgeshipError) else EdgeshipError
    return cls(f"{f['target']} {f['precision']}: {f['message']}", hint=f.get("hint"), **(f.get("details") or {}))


#: the memory a worker is assumed to need before one has been measured for this model (bytes)
WORKER_MEMORY_GUESS = 3 << 30


def _jobs(cfg: DeployConfig, p: Plan) -> int:
    """How many worker processes build the plan: 1 (in this process) for a single group, else
    ``--jobs``, or with 0 ``$EDGESHIP_JOBS`` or as many as CPUs (the free memory is checked as
    each starts)."""
    import os

    groups = len(p.groups) + (1 if p.shared else 0)
    env = os.environ.get("EDGESHIP_JOBS", "").strip()
    jobs = cfg.jobs or (int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1))
    return 1 if groups < 2 else min(groups, jobs)


def _memory_available() -> int | None:
    """MemAvailable from /proc/meminfo (bytes), None where there is none."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _build_parallel(cfg: DeployConfig, p: Plan, source: Source, stage: Path, keys: _TaskKeys | None, jobs: int,
                    timings: dict[str, float], progress: Progress) -> tuple[list[Artifact], list[dict[str, Any]], dict[str, Any]]:
    """Run the plan's groups in up to ``jobs`` isolated worker processes (:func:`run_isolated`, the
    one child mechanism), each group's steps one after another in its worker, the shared learned
    rounding first in a worker of its own while the groups that do not need it start. A worker
    starts only while the free memory covers what one needs (as measured for this model before,
    else :data:`WORKER_MEMORY_GUESS`), one at least. Results come back through the staging folder;
    figures, failures and timings as JSON. A failed fp32 stops the run: no new worker starts, the
    running ones finish, and the first error is raised. Ctrl-C stops every worker."""
    import concurrent.futures as cf
    import subprocess
    import sys

    from .isolate import kill_group

    options = cfg.model_dump(mode="json")
    private = str(stage / ".tasks") if keys is None else None  # --no-cache: the run's own, for the shared rounding
    groups = p.groups
    early: tuple[list[Artifact], list[dict[str, Any]]] = ([], [])
    refs = {s["target"]: portable_target(s["target"]) for s in p.steps}
    # here, not in a worker: a group the cache holds whole (a worker would only add its start-up), and a
    # target registered in this process that a new process cannot import (a class made in a function)
    here = [g for g in groups if any(refs[s["target"]] is None for s in g)
            or (keys is not None and all(keys.cache.has(keys.convert(s["target"], s["precision"])) for s in g))]
    if here:
        early = _build_steps(cfg, source, [s for g in here for s in g], stage, keys, timings, progress)
        groups = [g for g in groups if g not in here]
    todo = [s for g in groups for s in g]
    units: list[dict[str, Any]] = []
    if any(ROUNDING_TASK in s["after"] for s in todo) and not _rounding_cached(cfg, source, keys):
        units.append({"name": ROUNDING_TASK, "after": set(), "func": "edgeship.api:_rounding_child",
                      "kwargs": {"options": options, "private_cache": private}})
    for g in groups:
        after = {a for s in g for a in s["after"] if a == ROUNDING_TASK and units and units[0]["name"] == a}
        units.append({"name": g[0]["group"], "after": after, "func": "edgeship.api:_group_child",
                      "kwargs": {"options": options, "steps": g, "stage": str(stage), "private_cache": private}})
    context = {"sys_path": list(sys.path), "targets": {n: r for n, r in refs.items() if r is not None}}
    for u in units:  # a worker imports what this process did: the factory's module, plugin targets
        u["kwargs"]["context"] = context
        u["limits"] = _limits_for(u["kwargs"].get("steps", []))
    if len(units) < 2:  # one group left to build: in this process, no worker to start
        arts, fails = _build_steps(cfg, source, todo, stage, keys, timings, progress)
        arts, fails = _in_plan_order(p, [*early[0], *arts]), [*early[1], *fails]
        return arts, fails, {"jobs": 1, "units": [], "note": "what was not in the cache is one group: built in this process"}
    last = {u["name"]: keys.last_worker(u["name"]) if keys is not None else (None, None) for u in units}
    need = {n: int(peak * 1.25) if peak else WORKER_MEMORY_GUESS for n, (peak, _) in last.items()}  # 1.25x last peak
    # the longest first (what each took for this model last time, else the most steps), so the last
    # to start is a short one and the run does not end waiting on one worker (the shared rounding,
    # which others wait for, stays first)
    units.sort(key=lambda u: (u["name"] != ROUNDING_TASK, -(last[u["name"]][1] or 0.0), -len(u["kwargs"].get("steps", []))))
    slots = _cpu_slots(jobs)  # each running worker on CPUs of its own: runtimes size their thread pools to them
    free_slots = list(range(len(slots)))
    done: set[str] = set()
    results: dict[str, dict[str, Any]] = {}
    running: dict[cf.Future, dict[str, Any]] = {}
    started: list[subprocess.Popen] = []
    errors: dict[str, BaseException] = {}  # unit -> why it failed: its steps are failed cells, the rest go on
    t0 = time.perf_counter()
    progress(f"building in {jobs} worker processes: " + ", ".join(u["name"] for u in units))
    pool = cf.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="edgeship-worker")
    try:
        while units or running:
            free = _memory_available()
            for u in list(units):
                if len(running) >= jobs:
                    break
                if u["after"] & set(errors):
                    units.remove(u)  # what it waits for failed: its steps fail with it (below)
                    continue
                if not u["after"] <= done:
                    continue
                reserved = sum(need[r["name"]] for r in running.values())
                if running and free is not None and reserved + need[u["name"]] > free:
                    continue  # wait for a running worker: the memory would not hold both
                units.remove(u)
                u["t0"] = time.perf_counter() - t0
                u["slot"] = free_slots.pop(0)
                kwargs = {**u["kwargs"], "context": {**u["kwargs"]["context"], "cpus": slots[u["slot"]]}}
                progress(f"worker: {u['name']} started")
                running[pool.submit(run_isolated, u["func"], kwargs, what=f"{cfg.model} ({u['name']})",
                                    started=started, limits=u["limits"])] = u
            if not running:
                if units:  # nothing could start: what they wait for failed
                    break
                continue
            finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for f in finished:
                u = running.pop(f)
                free_slots.append(u["slot"])
                free_slots.sort()
                try:
                    results[u["name"]] = {**(f.result() or {}), "started_s": round(u["t0"], 2),
                                          "seconds": round(time.perf_counter() - t0 - u["t0"], 2)}
                    done.add(u["name"])
                    progress(f"worker: {u['name']} done in {results[u['name']]['seconds']:.0f} s")
                except Exception as e:  # noqa: BLE001 - a worker that died: its cells fail, the others go on
                    errors[u["name"]] = e
                    progress(f"worker: {u['name']} failed ({first_line(e, 200)})")
    except BaseException:
        for proc in started:  # Ctrl-C: the workers run in their own sessions and would not see it
            if proc.poll() is None:
                kill_group(proc)
        raise
    finally:
        pool.shutdown(wait=True)
    artifacts: list[Artifact] = list(early[0])
    failed: list[dict[str, Any]] = list(early[1])
    by_name = {f["name"]: f for r in results.values() for f in r.get("steps", [])}
    why = next(iter(errors.values()), None)
    for s in p.steps:
        r = by_name.get(s["id"])
        if r is None:
            if s in todo:  # its worker died, or what it waited for did
                e = errors.get(s["group"]) or why
                failed.append(cell_failure(s["target"], s["precision"], e) if e is not None else
                              {"target": s["target"], "precision": s["precision"], "error": "InternalError",
                               "message": "its worker returned no result", "hint": "run again with --jobs 1"})
            continue
        if r.get("failed"):
            failed.append(r["failed"])
            continue
        art = load_artifact(stage / s["id"])
        artifacts.append(art.model_copy(update={"root": stage / s["id"]}))
        timings[f"convert.{s['target']}.{s['precision']}"] = r["seconds"]
    artifacts = _in_plan_order(p, artifacts)
    if keys is not None:
        for r in results.values():
            for k in ("reused", "built", "notes"):
                getattr(keys, k).extend(r.get("cache", {}).get(k, []))
    for name, r in results.items():
        if keys is not None and r.get("peak_rss_bytes"):
            keys.remember_memory(name, int(r["peak_rss_bytes"]), float(r["seconds"]))
    workers = {"jobs": jobs, "seconds": round(time.perf_counter() - t0, 2),
               "units": [{"name": n, "started_s": r["started_s"], "seconds": r["seconds"],
                          "peak_rss_mb": round(r.get("peak_rss_bytes", 0) / 2**20)} for n, r in results.items()]}
    return artifacts, failed, workers


def _in_plan_order(p: Plan, artifacts: list[Artifact]) -> list[Artifact]:
    order = {s["id"]: i for i, s in enumerate(p.steps)}
    return sorted(artifacts, key=lambda a: order.get(a.root.name, len(order)))


def _rounding_cached(cfg: DeployConfig, source: Source, keys: _TaskKeys | None) -> bool:
    """Whether the cache holds the source's learned rounding already (no worker needed for it)."""
    if keys is None or source.module is None:
        return False
    from .quant.rounding import rounding_key

    return keys.cache.has(rounding_key(source, cfg))


def _cpu_slots(jobs: int) -> list[list[int]]:
    """The CPUs this process may use, split into ``jobs`` shares (a share per running worker);
    fewer CPUs than jobs: the shares overlap."""
    from ._util import allowed_cpus

    cpus = allowed_cpus()
    if len(cpus) < jobs:
        return [[cpus[i % len(cpus)]] for i in range(jobs)]
    per = len(cpus) // jobs
    return [cpus[i * per:(i + 1) * per] if i < jobs - 1 else cpus[i * per:] for i in range(jobs)]


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def portable_target(target: str) -> str | None:
    """How a worker process registers ``target`` as this process has it: its 'module:Class'
    (None for a class it cannot import: made inside a function)."""
    from .targets import registered_ref

    ref = registered_ref(target)
    if ref is None or isinstance(ref, str):
        return ref
    if "<locals>" in ref.__qualname__ or ref.__module__ == "__main__":
        return None
    return f"{ref.__module__}:{ref.__qualname__}"


def worker_context(context: dict[str, Any] | None, private_cache: str | None) -> None:
    """In a worker: its CPUs, this deploy's import path and targets, and the run's private cache folder."""
    import os
    import sys

    from . import cache
    from .targets import register_target, registered_ref

    context = context or {}
    cpus = context.get("cpus")
    if cpus and hasattr(os, "sched_setaffinity"):  # before torch or a runtime sizes its thread pool
        os.sched_setaffinity(0, cpus)
        os.environ["OMP_NUM_THREADS"] = str(len(cpus))
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(len(cpus))
    for entry in reversed(context.get("sys_path") or []):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    for name, ref in (context.get("targets") or {}).items():
        if registered_ref(name) != ref:
            register_target(name, ref)
    cache.use_private(private_cache)


def _group_child(options: dict[str, Any], steps: list[dict[str, Any]], stage: str,
                 private_cache: str | None = None, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """One worker: load the source and build one group's steps into ``stage`` (in order)."""
    from . import cache

    worker_context(context, private_cache)
    cfg = DeployConfig.build(**options)
    source = load_source(cfg.model, **cfg.source_kwargs())
    keys = _TaskKeys(cfg, source, Plan(cfg.model, source.kind, cfg.out, tuple(steps))) if cache.enabled(cfg.cache) else None
    timings: dict[str, float] = {}
    artifacts, failed = _build_steps(cfg, source, steps, Path(stage), keys, timings, _child_progress)
    out = [{"name": a.root.name, "seconds": round(timings.get(f"convert.{a.target}.{a.precision}", 0.0), 3)}
           for a in artifacts]
    out += [{"name": safe_name(f"{f['target']}-{f['precision']}"), "failed": f} for f in failed]
    return {"steps": out, "cache": keys.record() if keys is not None else {}, "peak_rss_bytes": _peak_rss()}


def _rounding_child(options: dict[str, Any], private_cache: str | None = None,
                    context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The worker of the shared learned rounding: computed once and stored in the cache (or the
    run's private folder), where every int8 worker that starts from the torch source finds it."""
    from .quant.rounding import rounded_source

    worker_context(context, private_cache)
    cfg = DeployConfig.build(**options)
    source = load_source(cfg.model, **cfg.source_kwargs())
    rounded_source(source, cfg, lambda m: _child_progress(f"shared: {m}"))
    return {"peak_rss_bytes": _peak_rss()}


def cache_info() -> dict[str, Any]:
    """What edgeship's cache of task results holds (:func:`edgeship.cache.info`)."""
    from . import cache

    return cache.info()


def cache_clear(older_than_days: float | None = None) -> dict[str, Any]:
    """Remove cached task results, all or those unused for ``older_than_days`` (:func:`edgeship.cache.clear`)."""
    from . import cache

    return cache.clear(older_than_days)


class _TaskKeys:
    """The cache keys of a deploy's conversions (:mod:`edgeship.cache`), and what was reused."""

    def __init__(self, cfg: DeployConfig, source: Source, p: Plan) -> None:
        from . import cache

        self.cfg, self.source, self.cache = cfg, source, cache
        self.source_key = cache.source_key(source)
        reduced = any(s["precision"] != "fp32" for s in p.steps)
        self.data = {"calib": cache.data_key(cfg.calib, source, cfg.calib_samples, "calibration")} if reduced else {}
        if reduced or cfg.eval:  # fp32 is verified on --eval data too
            self.data["eval"] = cache.data_key(cfg.eval, source, cfg.eval_samples, "evaluation")
        self.keys: dict[tuple[str, str], str] = {}
        self.reused: list[str] = []
        self.built: list[str] = []
        self.notes: list[str] = []

    def convert(self, target: str, precision: str) -> str:
        if (target, precision) in self.keys:
            return self.keys[(target, precision)]
        t = get_target(target)
        # the key of what it is built from, by the rule deploy picks its parent (onnx's for ort/web, else
        # its own fp32; an fp32 is never its own parent)
        parent = self.keys.get((t.derives_from or "", precision)) or (
            self.keys.get((target, "fp32")) if precision != "fp32" else None)
        own = t.Options.model_fields if t.Options is not None else ()
        # a plugin target's code is not edgeship's: its file is part of the key
        k = self.cache.convert_key(self.cfg, self.source_key, target, precision, own, self.data,
                                   parent, self.cache.class_digest(type(t)))
        self.keys[(target, precision)] = k
        return k

    def reuse(self, k: str, folder: Path, name: str, progress: Progress) -> Artifact | None:
        """The artifact stored under ``k``, copied into ``folder`` and checked; raises the stored
        failure of a precision that did not meet its budget; None: build it."""
        doc = self.cache.fetch_json(k)
        if doc is not None and isinstance(doc.get("failed"), dict):
            f = doc["failed"]
            self.reused.append(name)
            progress(f"{name}: the same build failed before (cache); --no-cache tries again")
            kind = ValidationError if f.get("error") == "ValidationError" else UnsupportedError
            err = kind(str(f.get("message", "")), hint=str(f.get("hint") or ""))
            err.from_cache = True  # type: ignore[attr-defined]
            raise err
        meta, why = self.cache.fetch_dir(k, folder)
        if why:
            self.notes.append(f"{name}: cache entry {why}")
            progress(f"{name}: cache entry {why}")
        if meta is None:
            return None
        art = load_artifact(folder)
        self.reused.append(name)
        took = meta.get("seconds")
        progress(f"{name}: reused from the cache, files re-verified" + (f" (built in {took:.0f} s)" if took else ""))
        return art.model_copy(update={"root": folder})

    def keep(self, k: str, folder: Path, name: str, seconds: float) -> None:
        self.built.append(name)
        self.cache.store_dir(k, folder, {"kind": "artifact", "name": name, "seconds": round(seconds, 2)})

    def keep_failure(self, k: str, failure: dict[str, Any], seconds: float) -> None:
        self.cache.store_json(k, {"failed": failure}, {"kind": "failure", "seconds": round(seconds, 2)})

    def document(self, kind: str, compute: Callable[[], dict[str, Any]], keep: Callable[[dict[str, Any]], bool] | None = None,
                 **parts: Any) -> tuple[dict[str, Any], bool]:
        """A JSON result of this source (figures, predictions) computed once per ``parts`` (JSON-ready):
        (the document, whether it came from the cache). ``keep(doc)`` False: not stored."""
        k = self.cache.key(kind, source=self.source_key, **parts)
        doc = self.cache.fetch_json(k)
        if doc is not None:
            return doc, True
        doc = compute()
        if keep is None or keep(doc):
            self.cache.store_json(k, doc, {"kind": kind})
        return doc, False

    def last_worker(self, unit: str) -> tuple[int | None, float | None]:
        """(peak memory, seconds) a worker of ``unit`` needed the last time this source was built."""
        doc = self.cache.fetch_json(self.cache.key("memory", source=self.source_key, unit=unit)) or {}
        peak, secs = doc.get("peak_rss_bytes"), doc.get("seconds")
        return (peak if isinstance(peak, int) else None, float(secs) if isinstance(secs, (int, float)) else None)

    def remember_memory(self, unit: str, peak: int, seconds: float | None = None) -> None:
        k = self.cache.key("memory", source=self.source_key, unit=unit)
        self.cache.store_json(k, {"peak_rss_bytes": peak, "seconds": seconds}, {"kind": "memory"}, replace=True)

    def record(self) -> dict[str, Any]:
        return {"dir": str(self.cache.tasks_dir()), "reused": self.reused, "built": self.built, "notes": self.notes}


def benchmark_choice(artifacts: list[Artifact], every: bool = False) -> tuple[list[Artifact], list[dict[str, str]]]:
    """What ``deploy --benchmark`` measures: per target its fp32 (the baseline) and the reduced
    precision it would ship, the lowest that verified (what the report can recommend over fp32);
    every artifact when ``every``. Returns (to measure, [{id, reason} of the others])."""
    from .bundle import PRECISION_ORDER

    if every:
        return list(artifacts), []
    chosen: list[Artifact] = []
    for target in dict.fromkeys(a.target for a in artifacts):
        mine = [a for a in artifacts if a.target == target]
        chosen += [a for a in mine if a.precision == "fp32"]
        ok = [a for a in mine if a.precision != "fp32" and a.verification is not None
              and a.verification.status in ("verified", "structural")]
        ok.sort(key=lambda a: PRECISION_ORDER.get(a.precision, 1))  # in the order a release ships them
        chosen += ok[:1]
    left = [{"id": a.root.name, "reason": "not measured by default (--benchmark-all measures every artifact)"}
            for a in artifacts if a not in chosen]
    return [a for a in artifacts if a in chosen], left


def _benchmark_stage(cfg: DeployConfig, source: Source, artifacts: list[Artifact], keys: _TaskKeys | None,
                     progress: Progress) -> dict[str, Any]:
    """``deploy --benchmark``: measured, or the figures an identical run measured on this machine
    (the same artifacts by digest, source, benchmark options, CPU model and core count), which
    say so (``cached``: when and where they were measured)."""
    import datetime
    import os
    import platform

    from .bench import deploy_stage
    from .bench.peaks import QUIET_BUSY, cpu_model, wait_for_quiet

    machine = {"cpu": cpu_model(), "cpus": os.cpu_count(), "host": platform.node()}

    chosen, left = benchmark_choice(artifacts, cfg.benchmark_all)
    artifacts = chosen

    def measure() -> dict[str, Any]:
        stage = deploy_stage(cfg, source, artifacts, progress)
        if left:
            stage = {**stage, "not_measured": left,
                     "notes": [*stage.get("notes", []), f"{len(left)} artifact(s) not measured: each target's fp32 and "
                               "its lowest verified precision are (--benchmark-all measures every artifact)"]}
        return {"stage": stage, "measured": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}

    # figures measured while other work ran are not kept as this machine's: the share of the CPUs
    # busy just before (the load average would still count this deploy's own conversions), after
    # waiting a few seconds at most for work that just ended to settle
    busy = wait_for_quiet(progress, "latencies")
    if keys is None:
        return measure()["stage"]

    def quiet(doc: dict[str, Any]) -> bool:
        return busy is not None and busy <= QUIET_BUSY

    doc, cached = keys.document("benchmark", measure, keep=quiet, artifacts=[(a.root.name, a.digest) for a in artifacts],
                                options=cfg.model_dump(mode="json", include={"bench_threads", "bench_runs", "bench_seconds", "bench_rounds"}),
                                machine=machine)
    stage = doc["stage"]
    if not cached:
        return stage
    progress(f"benchmark: the figures measured {doc['measured']} on this machine (cache; --no-cache measures again)")
    note = (f"measured {doc['measured']} on this machine by an identical earlier run, reused from the cache "
            "(--no-cache measures again)")
    return {**stage, "notes": [*stage.get("notes", []), note], "cached": {"measured": doc["measured"], **machine}}


def _write_report(out: Path, progress: Progress = _noop) -> Path:
    from .reporting import write_report

    progress("writing report.html")
    return write_report(out)


def _refresh_report(out: Path) -> None:
    """A command that changed an output folder's manifest rewrites the report that is there."""
    from .reporting import REPORT_HTML

    if (Path(out) / REPORT_HTML).is_file():
        _write_report(Path(out))


def report(outdir: str | Path = "edgeship-out", old: str | Path | None = None, dest: str | Path | None = None) -> dict[str, Any]:
    """Write the HTML report of a deploy output folder from its manifest (``outdir/report.html``),
    or, with ``old``, the comparison of ``old`` (before) and ``outdir`` (after) in
    ``outdir/report-vs-<old>.html``. Returns ``{"path", "headline", "recommendations",
    "comparison"?: {"regressed", "rows", "layers_worse", ...}}`` (:mod:`edgeship.reporting`)."""
    from .reporting import build, write_report

    doc = build(outdir, old)
    dest = write_report(outdir, old, dest, doc=doc)
    res = {"path": str(dest), "headline": doc["report"]["headline"], "recommendations": doc["report"]["recommendations"]}
    if "comparison" in doc:
        res["comparison"] = doc["comparison"]
    return res


def compress(model: str | Path = "efficientnet-lite0", *, progress: Progress = _noop, **options: Any) -> dict[str, Any]:
    """Prune a torch model (``prune=0.5``, or a sweep ``prune="0.25,0.5,0.75"``; ``method="channel"|
    "magnitude"``), fine-tune it with distillation when ``train_data`` is given, and write a new torch
    source, ``out/model.pt2`` (a sweep: ``out/prune-R/model.pt2`` each), that :func:`deploy` takes.
    Returns the record (also ``out/compress.json``, with ``out/report.html``): params, MACs, size,
    accuracy or fidelity to the original, and the latency of the original and the pruned model on
    ONNX Runtime and LiteRT, measured side by side in one run. ``options`` are
    :class:`edgeship.pruning.config.CompressConfig` fields. A failure leaves ``out`` as it was."""
    from . import pruning
    from .pruning.config import CompressConfig

    cfg = CompressConfig.build(**options)
    for t in cfg.latency:
        get_target(t)  # an unknown runtime is refused before any work
    source = load_source(str(model), **cfg.source_kwargs())
    pruning.check_request(source, cfg)
    out = Path(cfg.out)
    sweep = len(cfg.prune) > 1
    data = pruning.load_data(source, cfg, progress)
    names = [f"prune-{r:g}" for r in cfg.prune]  # each ratio's folder in a sweep; a single ratio: out itself
    subs = names if sweep else [""]
    with atomic_dir(out) as tmp:
        records = []
        for ratio, sub in zip(cfg.prune, subs):
            say = (lambda m, r=ratio: progress(f"prune {r:g}: {m}")) if sweep else progress
            records.append(pruning.build(source, cfg, ratio, data, tmp / sub, out / sub, say))
        if cfg.latency:
            latency = _compress_latency(source, [tmp / sub for sub in subs], names, cfg, progress)
            for i, r in enumerate(records):
                r["latency"] = {t: {**v["original"], **v["pruned"][i]} for t, v in latency.items()}
        for r, sub in zip(records, subs):
            pruning.finish(tmp / sub, r)
        doc = {"schema": "edgeship.compress-sweep/1", "source": source.record(), "method": cfg.method,
               "out": str(out), "runs": records} if sweep else records[0]
        if sweep:
            pruning.finish(tmp, doc)
        from .reporting.compress import write_compress_report

        write_compress_report(tmp, doc)
    return {**doc, "report": str(out / "report.html")}


def _compress_latency(source: Source, folders: list[Path], names: list[str], cfg: Any,
                      progress: Progress) -> dict[str, Any]:
    """Per runtime, the original and each pruned model converted (fp32, verified) and timed at 1
    thread in one benchmark run, interleaved in the same rounds: {runtime: {"original": {...},
    "pruned": [{...} per folder]}}; a runtime that cannot be used here says why."""
    import tempfile

    from .bench import run_benchmark
    from .pruning import LABELS_FILE, MODEL_FILE, PREPROCESS_FILE

    pruned = [load_source(str(f / MODEL_FILE), preprocess=str(f / PREPROCESS_FILE) if (f / PREPROCESS_FILE).exists()
                          else None, labels=str(f / LABELS_FILE) if (f / LABELS_FILE).exists() else None)
              for f in folders]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgeship-compress-latency-") as td:
        arts: dict[str, list[Artifact]] = {}
        for t in cfg.latency:
            try:
                arts[t] = [convert(s, t, Path(td) / f"{t}-{name}", DeployConfig.build(model=s.origin), progress=progress)
                           for name, s in zip(["original", *names], [source, *pruned])]
            except EdgeshipError as e:  # this runtime cannot be used here: said, the rest measured
                out[t] = {"original": {"error": e.message}, "pruned": [{"error": e.message}] * len(pruned)}
        if arts:
            progress(f"timing {len(arts) * (1 + len(pruned))} models at 1 thread, side by side ({cfg.bench_runs} calls each)")
            rep = run_benchmark([a for v in arts.values() for a in v], progress=progress, threads=[1], runs=cfg.bench_runs,
                                rounds=3, auto_baseline=False, roofline=False)
            by_path = {r.get("path"): r for r in rep.data.get("results", [])}
            for t, v in arts.items():
                rs = [by_path.get(str(a.root), {}) for a in v]
                base = rs[0]
                out[t] = {"original": {"runtime": base.get("runtime"), "original_p50_ms": _p50(base)},
                          "pruned": [{"pruned_p50_ms": _p50(r), "speedup": _speedup(base, r)} for r in rs[1:]]}
    return out


def _p50(r: dict[str, Any]) -> float | None:
    return (r.get("latency_ms") or {}).get("p50")


def _speedup(base: dict[str, Any], r: dict[str, Any]) -> float | None:
    """original / pruned: the median over rounds of each round's ratio (both timed in every round)."""
    import statistics

    pairs = [a / b for a, b in zip(base.get("p50_by_round_ms") or [], r.get("p50_by_round_ms") or []) if a and b]
    return round(statistics.median(pairs), 3) if pairs else None


def quantize(model: str | Path | Artifact = "efficientnet-lite0", *, progress: Progress = _noop,
             **options: Any) -> Artifact:
    """Build a verified int8 (or fp16) ONNX artifact within the accuracy budget.

    ``model`` is an fp32 ONNX artifact written by edgeship (its folder or model file), or any model
    deploy takes (it is exported to ONNX first). ``options`` are
    :class:`edgeship.config.QuantizeCommandConfig` fields (precision, method, calibration, calib, eval,
    max_drop, ...). The report is ``quantization.json`` in the artifact folder and, summarised,
    ``artifact.details["quantization"]``.
    """
    import dataclasses as _dc

    from .config import QuantizeCommandConfig
    from .sources import load_source as _load_source

    if options.get("method") == "fp16":  # `--method fp16` is the fp16 recipe
        options = {**options, "method": "auto", "precision": "fp16"}
    qc = QuantizeCommandConfig.build(**options)
    fields = set(DeployConfig.model_fields)
    shared = {k: v for k, v in qc.model_dump().items() if k in fields and k != "out"}
    art = model if isinstance(model, Artifact) else _artifact_or_none(model)
    if art is not None:
        if art.format.value != "onnx" or art.precision != "fp32":
            raise UsageError(f"{art.root} is {article(art.format.value)} {art.precision} artifact; quantize takes an fp32 ONNX one",
                             hint="give the onnx-fp32 folder written by edgeship deploy, or the model itself")
        out = Path(qc.out) if qc.out else art.root.parent / f"onnx-{qc.precision}"
        refuse_release(out)  # before any work: a signed release is never written into
        listed_in = _check_quantize_out(art, out, qc.overwrite)
        if qc.isolate and not in_child():
            # the model file is input for native parsers (onnx, ORT): do the work in a limited child
            progress(f"working on {art.model_path} in an isolated child process")
            doc = run_isolated("edgeship.api:_quantize_child",
                               {"model": str(art.root), "options": {**qc.model_dump(mode="json"), "out": str(out)}},
                               what=str(art.model_path))
            return load_artifact(doc["root"])
        cfg = DeployConfig.build(model=str(art.model_path), targets=["onnx"], **shared)
        source = _load_source(str(art.model_path))
        # the fp32 file is the one edgeship wrote from its source (its files were checked on loading):
        # the int8 made from it names that source, as deploy's does, so the same options give the same bytes
        source = _dc.replace(source, preprocess=art.preprocess, labels=art.labels, name=art.name.rsplit("-onnx", 1)[0],
                             digest=art.provenance.parent_digest or source.digest)
        current = _up_to_date(out, art, cfg, qc.precision)
        if current is not None:
            progress(f"{out} is up to date: made from this {art.root.name} with the same options "
                     "(--overwrite builds it again)")
            return current
        try:
            was = _artifact_or_none(out) if out.is_dir() else None
        except EdgeshipError:
            was = None
        new = convert(source, "onnx", out, cfg, progress=progress, precision=qc.precision, parent=art)
        if was is not None and was.digest != new.digest:
            same_model = {f.sha256 for f in was.files if f.path == was.model_file} == \
                {f.sha256 for f in new.files if f.path == new.model_file}
            progress(f"replaced {out}: " + ("the same model bytes, its report measured again" if same_model else
                                            f"its bytes changed ({was.digest[:12]}… → {new.digest[:12]}…)"))
        if listed_in is not None:  # the folder's manifest lists the parent: it lists the new artifact too
            rec = new.record()
            rec["id"] = rec["path"] = out.name
            added = add_to_manifest(listed_in, rec, parent_path=art.root.name)
            if added and added[1]:
                progress(f"the figures measured on the old {', '.join(added[1])} are stale now: moved to "
                         f"{listed_in / 'manifest.json'} stages.*.stale (edgeship benchmark {listed_in} measures again)")
            _refresh_report(listed_in)
        return new
    out_root = Path(qc.out) if qc.out else Path("edgeship-out")
    res = deploy(config=DeployConfig.build(model=str(model), targets=["onnx"], quantize=[qc.precision], out=out_root,
                                           package=False, **shared), progress=progress)
    return next(a for a in res.artifacts if a.precision == qc.precision)


def _up_to_date(out: Path, parent: Artifact, cfg: DeployConfig, precision: str) -> Artifact | None:
    """The artifact in ``out`` when it is what quantizing ``parent`` with ``cfg`` would make: the
    same parent, precision, recorded options and tool versions, on the built-in data (a --calib or
    --eval folder may have changed since), its files intact. Otherwise None."""
    from ._util import tool_versions
    from .targets.onnx import quantize_record

    if cfg.overwrite or cfg.calib is not None or cfg.eval is not None or not out.is_dir():
        return None
    try:
        there = load_artifact(out)
        there.verify_files()
    except EdgeshipError:
        return None
    prov = there.provenance
    tools = tool_versions("onnx", "onnxruntime")  # with edgeship's own
    same = (there.format.value == "onnx" and there.precision == precision and prov.parent_digest == parent.digest
            and prov.config == json.loads(json.dumps(quantize_record(cfg), default=str))
            and all(tools.get(k) == v for k, v in prov.tool_versions.items() if k in ("edgeship", "onnx", "onnxruntime")))
    return there if same else None


def _check_quantize_out(parent: Artifact, out: Path, overwrite: bool) -> Path | None:
    """Before any work: may ``quantize`` write ``out`` (derived from ``parent``)? An existing
    artifact there made from another model, something that is not an artifact, or another model's
    output folder needs ``--overwrite``. Returns the folder whose manifest gets the new artifact."""
    from .manifest import listed_paths

    if out.exists():
        try:
            there = load_artifact(out) if out.is_dir() else None
        except EdgeshipError:
            there = None
        same = there is not None and there.provenance.parent_digest in (parent.digest, parent.provenance.parent_digest)
        if not same and not overwrite:
            what = (f"an artifact of another model ({there.name})" if there is not None
                    else "something that is not an edgeship artifact")
            raise UsageError(f"{out} holds {what}", hint="give another --out, or --overwrite to replace it")
    folder = out.parent
    m = read_manifest(folder)
    if m is None:
        return None
    if folder.resolve() == parent.root.parent.resolve() and parent.root.name in listed_paths(m):
        return folder
    if not overwrite:
        raise UsageError(f"{folder} holds the artifacts of {(m.get('source') or {}).get('name') or 'another model'}, "
                         f"and {parent.root} is not one of them",
                         hint="give --out in another folder, or --overwrite to write there anyway (unlisted)")
    return None


def _artifact_or_none(model: str | Path) -> Artifact | None:
    p = Path(model)
    if p.is_dir() or (p.is_file() and (p.parent / ARTIFACT_JSON).is_file()):
        return load_artifact(p)
    return None


def _analyze_child(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """analyze() inside the isolated child; the report is JSON already."""
    return analyze(model, **options)


def _child_progress(msg: str) -> None:
    """Progress inside an isolated child: its stderr is the user's terminal (stdout carries the result)."""
    import sys

    print(f"· {msg}", file=sys.stderr, flush=True)


def _quantize_child(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """quantize() inside the isolated child; the new artifact's folder crosses back."""
    return {"root": str(quantize(model, progress=_child_progress, **options).root)}


def _deploy_child(options: dict[str, Any]) -> dict[str, Any]:
    """deploy() inside the isolated child; the result crosses back as JSON."""
    res = deploy(config=DeployConfig.build(**options), progress=_child_progress)
    return {"manifest": res.manifest, "manifest_path": str(res.manifest_path)}


ANALYSIS_LAYER_KEYS = ("index", "name", "module", "kind", "type", "macs", "params", "output_bytes", "bound", "est_us")


def _analysis_stage(source: Source, artifacts: Sequence[Artifact]) -> dict[str, Any]:
    """``stages.analysis`` of the manifest: :func:`analyze` of the fp32 ONNX artifact when the run
    built one (its layers are the ones the int8 report names), else of the source, kept compact
    (per layer only what the report draws; the ten largest savings). Never fatal: a model the
    analysis cannot count gets ``{"error": ...}``."""
    from .analysis import analyze as _analyze

    onnx = next((a for a in artifacts if a.format.value == "onnx" and a.precision == "fp32"), None)
    try:
        rep = _analyze(onnx.model_path if onnx is not None else source, targets=[])
    except EdgeshipError as e:
        return {"error": e.message, "of": onnx.root.name if onnx is not None else "source"}
    rep.pop("compatibility", None)
    rep["of"] = onnx.root.name if onnx is not None else "source"
    if onnx is not None and isinstance(rep.get("model"), dict):  # the artifact's folder, not the staging path it had
        rep["model"]["origin"] = f"{onnx.root.name}/{onnx.model_file}"
    rep["layers"] = [{k: r[k] for k in ANALYSIS_LAYER_KEYS if k in r} for r in rep["layers"]]
    adv = rep.get("advice") or {}
    if isinstance(adv.get("separable"), list):
        adv["separable_count"] = len(adv["separable"])
        adv["separable"] = adv["separable"][:10]
    return rep


def _sample_predictions(source: Source, artifacts: Sequence[Artifact], top_k: int = 3) -> dict[str, Any]:
    """Top-k labels of each sample photo from the source and from every artifact, side by side."""
    import numpy as np

    from .data import preprocess_image, sample_photos
    from .fidelity import softmax
    from .runtime import Classifier

    assert source.preprocess is not None and source.labels
    photos = sample_photos()
    clfs: list[Any] = []
    not_run: dict[str, str] = {}
    for a in artifacts:
        try:
            clfs.append(Classifier(a))
        except (UnsupportedError, MissingExtraError) as e:  # e.g. Core ML off macOS: its column stays empty
            clfs.append(None)
            not_run[a.root.name] = e.message
    table: dict[str, list[list[dict[str, Any]]]] = {}
    for name, img in photos.items():
        logits = source.run([preprocess_image(img, source.preprocess)])[0].reshape(-1).astype(np.float64)
        probs = logits if source.preprocess.output == "probabilities" else softmax(logits)
        order = np.argsort(-probs)[:top_k]
        row = [[{"label": source.labels[i], "confidence": round(float(probs[i]), 4)} for i in order]]
        for clf in clfs:
            row.append([] if clf is None else [{"label": p.label, "confidence": round(p.confidence, 4)}
                                               for p in clf.classify(img, top_k=top_k, threshold=0.0)])
        table[name] = row
    return {"artifacts": [f"source ({source.kind})", *[a.root.name for a in artifacts]], "photos": table,
            "not_run": not_run}


def benchmark(artifacts: str | Path | Artifact | Sequence[str | Path | Artifact], *, progress: Progress = _noop,
              **options: Any) -> Any:
    """Benchmark artifact folders, out dirs or Artifacts, each in its own pinned process.

    ``options`` are :class:`edgeship.bench.BenchConfig` fields (threads, cpus, runs, warmup, rounds,
    baseline, profile, timeout, ...). Returns a :class:`edgeship.bench.BenchReport`; ``.data`` is
    the JSON document (schema in :mod:`edgeship.bench`), ``.write_csv(path)`` the CSV.
    """
    from .bench import run_benchmark

    report = run_benchmark(artifacts, progress=progress, **options)
    one = artifacts[0] if isinstance(artifacts, (list, tuple)) and len(artifacts) == 1 else artifacts
    if isinstance(one, (str, Path)) and Path(one).is_dir() and read_manifest(Path(one)) is not None:
        _record_benchmark(Path(one), report.data, progress)
    return report


def _record_benchmark(out: Path, data: dict[str, Any], progress: Progress) -> None:
    """A benchmark of a deploy's output folder is that folder's benchmark: its figures (each
    naming the digest it measured) go into manifest.json's stages.benchmark, over the earlier
    ones of the same artifacts and thread counts (the others stay while their bytes are the
    same), and the report is written again."""
    from .manifest import settle_figures

    m = read_manifest(out)
    if m is None or not any(isinstance(r, dict) and r.get("role") != "baseline" for r in data.get("results") or []):
        return
    new = {**m, "stages": {**(m.get("stages") or {}), "benchmark": json.loads(json.dumps(data))}}
    carry_figures(m, new)
    settle_figures(new)
    write_manifest(out, new)
    progress(f"recorded in {out / 'manifest.json'} (stages.benchmark)")
    _refresh_report(out)


def package(outdir: str | Path = "edgeship-out", version: str | None = None, sign_key: str | Path | None = None,
            dest: str | Path | None = None, progress: Progress | None = None, allow_unverified: bool | None = None) -> Any:
    """A signed release bundle of a deploy output folder (:mod:`edgeship.bundle`): the bundle
    folder and its .tar.gz in ``dest`` (default ``outdir/release``) at ``version`` (default: the
    next patch after the newest there, else 0.1.0), signed with ``sign_key`` or
    with a key made in ``outdir/keys``. Artifacts judged only on random inputs go in only with
    ``allow_unverified`` (None: as the deploy that wrote ``outdir`` was told). Returns a
    :class:`edgeship.bundle.Bundle`."""
    from .bundle import package as _package

    res = _package(outdir, version=version, sign_key=sign_key, dest=dest, progress=progress,
                   allow_unverified=allow_unverified)
    _refresh_report(Path(outdir))
    return res


def verify_bundle(bundle: str | Path, key: str | Path) -> dict[str, Any]:
    """Check a bundle folder or .tar.gz against its public key; SecurityError naming every extra,
    missing and changed file when it does not hold."""
    from .bundle import verify_bundle as _verify

    return _verify(bundle, key)


def keygen(out: str | Path) -> tuple[Path, Path]:
    """A new EC signing key pair in ``out`` (private key mode 0600): (private, public)."""
    from .bundle import keygen as _keygen

    return _keygen(out)


def quantization_report(artifact: Artifact | str | Path) -> dict[str, Any]:
    """The full quantisation report of an artifact the onnx quantiser built (``quantization.json``:
    per tensor scale, zero point, MSE and SQNR; per layer the error it injects; every budget step),
    or ``{}`` when it has none (its summary is ``artifact.details["quantization"]``)."""
    from .errors import FormatError
    from .quant import REPORT_FILE

    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    path = art.root / REPORT_FILE
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise FormatError(f"{path} is not a readable quantisation report: {str(e)[:200]}",
                          hint="quantize the artifact again to rewrite it") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{path} is not a quantisation report (not a JSON object)",
                          hint="quantize the artifact again to rewrite it")
    return doc


def _each_image(images: Sequence[Any], classify_one: Callable[[Any], Any], report: bool) -> list[Any]:
    """``classify_one`` on every image; with ``report``, an image that cannot be read (an
    InputError: missing, not an image, damaged) is ``{"error": {...}}`` in its place and the others
    are still answered."""
    out: list[Any] = []
    for img in images:
        try:
            out.append(classify_one(img))
        except InputError as e:
            if not report:
                raise
            out.append({"error": e.to_dict()})
    return out


def classify(artifact: Artifact | str | Path, images: Sequence[Any], *, isolate: bool = False,
             errors: str = "raise", **options: Any) -> list[Any]:
    """Top-k (label, confidence) for each image, using the artifact's own preprocessing.
    ``errors="report"``: an image that cannot be read is ``{"error": {...}}`` in its place (the
    others are answered); by default it raises.

    ``options`` are :class:`edgeship.config.ClassifyConfig` fields (top_k, threshold, threads,
    preprocess, labels); ``preprocess`` and ``labels`` state what a bare model file (a foreign .onnx
    or .tflite) does not carry. With ``isolate`` (what the CLI does), the artifact is loaded and run
    in a limited child process, so a crafted model file cannot crash or exhaust the caller; images
    must then be paths.
    """
    from .config import ClassifyConfig
    from .runtime import Classifier, Prediction

    cfg = ClassifyConfig.build(**options)
    if cfg.key is not None:
        raise UsageError("--key checks a release bundle's signature; an artifact has none",
                         hint="give the bundle folder (edgeship-out/release/<model>-<version>), or drop --key")
    if isolate and not in_child():
        if isinstance(artifact, Artifact):
            artifact = artifact.location
        doc = run_isolated("edgeship.api:_classify_child",
                           {"artifact": str(artifact), "images": [str(i) for i in images],
                            "options": cfg.model_dump(mode="json"), "errors": errors}, what=str(artifact))
        return [row if isinstance(row, dict) else [Prediction(p[0], p[1]) for p in row] for row in doc]
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    clf = Classifier(with_stated(art, cfg.preprocess, cfg.labels), threads=cfg.threads)
    return _each_image(images, lambda img: clf.classify(img, top_k=cfg.top_k, threshold=cfg.threshold),
                       errors == "report")


def classify_bundle(bundle: str | Path, images: Sequence[Any], *, isolate: bool = False, errors: str = "raise",
                    **options: Any) -> dict[str, Any]:
    """Classify with a release bundle, degrading along its fallback order
    (:meth:`edgeship.Classifier.from_bundle`): ``{"served_by", "skipped": [{artifact, reason}],
    "results": [[(label, confidence), ...] per image]}``. With ``key`` (a ClassifyConfig field) the
    signature is checked first and a bundle that fails it is never loaded."""
    from .config import ClassifyConfig
    from .runtime import Classifier

    cfg = ClassifyConfig.build(**options)
    if cfg.key is not None:
        verify_bundle(bundle, cfg.key)
    if isolate and not in_child():
        return run_isolated("edgeship.api:_classify_bundle_child",
                            {"bundle": str(bundle), "images": [str(i) for i in images], "errors": errors,
                             "options": {**cfg.model_dump(mode="json"), "key": None}}, what=str(bundle))
    clf = Classifier.from_bundle(bundle, threads=cfg.threads)
    return {"served_by": clf.served_by, "skipped": clf.skipped,
            "results": _each_image(images, lambda img: [(p.label, p.confidence) for p in
                                                        clf.classify(img, top_k=cfg.top_k, threshold=cfg.threshold)],
                                   errors == "report")}


def _classify_bundle_child(bundle: str, images: list[str], options: dict[str, Any], errors: str = "raise") -> dict[str, Any]:
    res = classify_bundle(bundle, images, errors=errors, **options)
    return {**res, "results": [row if isinstance(row, dict) else [list(p) for p in row] for row in res["results"]]}


def with_stated(art: Artifact, preprocess: str | None = None, labels: str | Path | None = None) -> Artifact:
    """The artifact with the preprocessing and labels the user stated (they win over its own)."""
    from .sources import parse_preprocess, read_labels

    if preprocess is None and labels is None:
        return art
    update: dict[str, Any] = {}
    if preprocess is not None:
        pre = parse_preprocess(preprocess, art.inputs)
        update["preprocess"] = pre
        update["inputs"] = tuple(i.model_copy(update={"layout": pre.layout}) if i.name == pre.input else i
                                 for i in art.inputs)
    if labels is not None:
        update["labels"] = read_labels(labels, art.outputs)
    return art.model_copy(update=update)


def _classify_child(artifact: str, images: list[str], options: dict[str, Any], errors: str = "raise") -> list:
    return [row if isinstance(row, dict) else [list(p) for p in row]
            for row in classify(artifact, images, errors=errors, **options)]


def targets_info() -> list[dict[str, Any]]:
    out = []
    for name in available_targets():
        try:
            t = get_target(name)
            info = t.capabilities()
            info["missing"] = t.check_environment()
            info["install"] = t.install_hint(info["missing"]) if info["missing"] else None
            info["problem"] = None if info["missing"] else t.probe()
        except EdgeshipError as e:  # pragma: no cover - a broken plugin
            info = {"name": name, "error": str(e)}
        out.append(info)
    return out


# ---- updates ------------------------------------------------------------------------------

def repo_init(repo: str | Path) -> dict[str, Any]:
    """A new TUF update repository in ``repo`` (:func:`edgeship.updates.init_repo`)."""
    from .updates import init_repo

    return init_repo(repo)


def repo_refresh(repo: str | Path, days: int = 7) -> dict[str, Any]:
    """Re-sign an update repository's timestamp (:func:`edgeship.updates.refresh_timestamp`)."""
    from .updates import refresh_timestamp

    return refresh_timestamp(repo, days=days)


def publish(bundle: str | Path, repo: str | Path, channel: str = "stable", rollout: float = 100.0,
            key: str | Path | None = None) -> dict[str, Any]:
    """Add a signed bundle's .tar.gz to a channel of an update repository, atomically
    (:func:`edgeship.updates.publish`). A tarball in an output folder's ``release/`` is noted in
    that folder's manifest (``stages.published``): pruning never removes a release a repository
    serves."""
    from .artifact import sha256_file
    from .bundle.releases import record_published
    from .updates import publish as _publish

    doc = _publish(bundle, repo, channel, rollout, key=key)
    if Path(bundle).is_file() and isinstance(doc.get("version"), str):
        record_published(Path(bundle), Path(repo), channel, doc["version"], sha256_file(Path(bundle)))
    return doc


def release_prune(outdir: str | Path = "edgeship-out", keep: int = 3, dry_run: bool = False) -> dict[str, Any]:
    """Remove all but the newest ``keep`` releases of an output folder (:func:`edgeship.bundle.releases.prune`)."""
    from .bundle.releases import prune

    out = Path(outdir)
    if read_manifest(out) is None:
        raise InputError(f"{out} holds no manifest.json", hint="give an output folder written by edgeship deploy")
    return prune(out, keep, dry_run=dry_run)


def serve(artifact: str | Path, host: str = "127.0.0.1", port: int = 8000, cfg: Any = None, on_ready: Any = None) -> None:
    """Serve ``artifact`` over HTTP until SIGINT/SIGTERM (:mod:`edgeship.serving`)."""
    from .serving import serve as _serve

    _serve(artifact, host=host, port=port, cfg=cfg, on_ready=on_ready)


def compare_cloud(target: str | Path = "edgeship-out", **options: Any) -> dict[str, Any]:
    """Edge against cloud for an artifact (:func:`edgeship.cloud.compare_cloud`)."""
    from .cloud import compare_cloud as _compare

    doc = _compare(target, **options)
    out = doc.get("outdir")
    if out:  # a deploy's folder: the comparison goes into its manifest and its report
        m = read_manifest(Path(out))
        if m is not None:
            m.setdefault("stages", {})["compare_cloud"] = doc
            write_manifest(Path(out), m)
            _refresh_report(Path(out))
    return doc


def serve_updates(repo: str | Path, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve an update repository over HTTP until interrupted."""
    from .updates.server import serve

    if not (Path(repo) / "metadata" / "timestamp.json").is_file():
        raise InputError(f"{repo} is not an update repository (no metadata/timestamp.json)",
                         hint="make one with edgeship repo init REPO")
    serve(repo, host=host, port=port)


def agent_init(state: str | Path, root: str | Path, bundle_key: str | Path, channel: str = "stable",
               device_id: str | None = None) -> dict[str, Any]:
    """Provision a device's update agent (:func:`edgeship.updates.agent.init_state`)."""
    from .updates.agent import init_state

    return init_state(state, root, bundle_key, channel=channel, device_id=device_id)


def agent_run(state: str | Path, server: str, device_id: str | None = None, once: bool = False,
              interval: float = 60.0, max_backoff: float = 900.0, say: Progress | None = None) -> dict[str, Any]:
    """Run the update agent: one check with ``once``, else forever (:func:`edgeship.updates.agent.run`)."""
    from .updates import agent

    if interval <= 0 or max_backoff < interval:
        raise UsageError("--interval must be positive and --max-backoff at least --interval")
    if device_id is not None:
        agent.set_device_id(state, device_id)
    return agent.run(state, server, once=once, interval=interval, max_backoff=max_backoff,
                     **({"say": say} if say is not None else {}))


def agent_status(state: str | Path) -> dict[str, Any]:
    from .updates.agent import status

    return status(state)
