"""The public API, a facade: each function takes what a user types and hands it to the part that
does the work (the deploy engine is :mod:`edgeship.pipeline`). The CLI is a thin layer over these."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import cache
from ._util import Progress, noop_progress
from .analysis import analyze as _analyze
from .analysis.config import AnalyzeConfig
from .artifact import Artifact, sha256_file
from .bench import run_benchmark
from .bundle import keygen as _keygen
from .bundle import package as _package
from .bundle import verify_bundle as _verify_bundle
from .bundle.releases import prune, record_published
from .cloud import compare_cloud as _compare_cloud
from .config import DeployConfig
from .errors import EdgeshipError, InputError, UsageError
from .isolate import in_child, run_isolated
from .manifest import read_manifest, write_manifest
from .pipeline import DeployResult, Plan, convert, plan
from .pipeline import deploy as _deploy
from .pipeline.classify import classify, classify_bundle
from .pipeline.compress import compress as _compress
from .pipeline.multi import PipelineResult, deploy_pipeline
from .pipeline.ocr_run import ocr_bundle
from .pipeline.quantize import quantization_report
from .pipeline.quantize import quantize as _quantize
from .pipeline.stages import record_benchmark, refresh_report
from .reporting import build, write_report
from .sources import Source, load_source
from .targets import available_targets, get_target
from .tasks.spec import is_pipeline_file

__all__ = ["load", "analyze", "convert", "plan", "deploy", "quantize", "quantization_report", "classify", "classify_bundle",
           "ocr_bundle", "benchmark", "package", "report", "verify_bundle", "keygen", "cache_info", "cache_clear", "DeployResult", "Plan"]


def load(model: str = "efficientnet-lite0", **options: Any) -> Source:
    """Load a model source (built-in name, factory, or file) with the source options."""
    cfg = DeployConfig.build(model=model, **options)
    return load_source(cfg.model, **cfg.source_kwargs())


def analyze(model: Any = "efficientnet-lite0", **options: Any) -> dict[str, Any]:
    """Analyse a model before converting it: per-layer MACs/params/memory, lighter-layer advice, a
    roofline estimate and a per-target compatibility preview (JSON-ready; schema in
    :mod:`edgeship.analysis`). ``options`` are :class:`edgeship.analysis.config.AnalyzeConfig` fields."""
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


def _analyze_child(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """analyze() inside the isolated child; the report is JSON already."""
    return analyze(model, **options)


def deploy(model: str | None = None, *, progress: Progress = noop_progress,
           **options: Any) -> DeployResult | Plan | PipelineResult:
    """Load ``model``, build and verify every requested target, write artifacts and manifest.json.

    ``options`` are :class:`edgeship.config.DeployConfig` fields (or ``config=`` one). With
    ``dry_run=True`` nothing is built or written: the resolved :class:`Plan` is returned (the
    steps, what is skipped and why, the extras missing), as ``edgeship deploy --dry-run`` prints it.
    A pipeline file (``pipeline.yaml``: several models and the glue between them) deploys each
    model and the whole (:func:`edgeship.pipeline.multi.deploy_pipeline`): a :class:`PipelineResult`.
    """
    if model is not None:
        options["model"] = model
    cfg = options.pop("config", None) or DeployConfig.build(**options)
    if is_pipeline_file(cfg.model):
        if cfg.dry_run:
            raise UsageError("--dry-run plans one model; a pipeline file's models each plan on their own",
                             hint="edgeship deploy MODEL.onnx --dry-run for one of its models")
        return deploy_pipeline(cfg, progress)
    return _deploy(cfg, progress)


def quantize(model: str | Path | Artifact = "efficientnet-lite0", *, progress: Progress = noop_progress,
             **options: Any) -> Artifact:
    """Build a verified int8 (or fp16) ONNX artifact within the accuracy budget.

    ``model`` is an fp32 ONNX artifact written by edgeship (its folder or model file), or any model
    deploy takes (it is exported to ONNX first). ``options`` are
    :class:`edgeship.config.QuantizeCommandConfig` fields (precision, method, calibration, calib, eval,
    max_drop, ...). The report is ``quantization.json`` in the artifact folder and, summarised,
    ``artifact.details["quantization"]`` (in full: :func:`quantization_report`).
    """
    return _quantize(model, progress, **options)


def compress(model: str | Path = "efficientnet-lite0", *, progress: Progress = noop_progress, **options: Any) -> dict[str, Any]:
    """Prune a torch model (``prune=0.5``, or a sweep ``prune="0.25,0.5,0.75"``; ``method="channel"|
    "magnitude"``), fine-tune it with distillation when ``train_data`` is given, and write a new torch
    source, ``out/model.pt2`` (a sweep: ``out/prune-R/model.pt2`` each), that :func:`deploy` takes.
    Returns the record (also ``out/compress.json``, with ``out/report.html``): params, MACs, size,
    accuracy or fidelity to the original, and the latency of the original and the pruned model on
    ONNX Runtime and LiteRT, measured side by side in one run. ``options`` are
    :class:`edgeship.pruning.config.CompressConfig` fields. A failure leaves ``out`` as it was."""
    return _compress(model, progress, **options)


def benchmark(artifacts: str | Path | Artifact | Sequence[str | Path | Artifact], *, progress: Progress = noop_progress,
              **options: Any) -> Any:
    """Benchmark artifact folders, out dirs or Artifacts, each in its own pinned process.

    ``options`` are :class:`edgeship.bench.BenchConfig` fields (threads, cpus, runs, warmup, rounds,
    baseline, profile, timeout, ...). Returns a :class:`edgeship.bench.BenchReport`; ``.data`` is
    the JSON document (schema in :mod:`edgeship.bench`), ``.write_csv(path)`` the CSV. A deploy's
    output folder gets the figures in its manifest (``stages.benchmark``) and its report.
    """
    report = run_benchmark(artifacts, progress=progress, **options)
    one = artifacts[0] if isinstance(artifacts, (list, tuple)) and len(artifacts) == 1 else artifacts
    if isinstance(one, (str, Path)) and Path(one).is_dir() and read_manifest(Path(one)) is not None:
        record_benchmark(Path(one), report.data, progress)
    return report


def report(outdir: str | Path = "edgeship-out", old: str | Path | None = None, dest: str | Path | None = None) -> dict[str, Any]:
    """Write the HTML report of a deploy output folder from its manifest (``outdir/report.html``),
    or, with ``old``, the comparison of ``old`` (before) and ``outdir`` (after) in
    ``outdir/report-vs-<old>.html``. Returns ``{"path", "headline", "recommendations",
    "comparison"?: {"regressed", "rows", "layers_worse", ...}}`` (:mod:`edgeship.reporting`)."""
    doc = build(outdir, old)
    dest = write_report(outdir, old, dest, doc=doc)
    res = {"path": str(dest), "headline": doc["report"]["headline"], "recommendations": doc["report"]["recommendations"]}
    if "comparison" in doc:
        res["comparison"] = doc["comparison"]
    return res


def package(outdir: str | Path = "edgeship-out", version: str | None = None, sign_key: str | Path | None = None,
            dest: str | Path | None = None, progress: Progress | None = None, allow_unverified: bool | None = None) -> Any:
    """A signed release bundle of a deploy output folder (:mod:`edgeship.bundle`): the bundle
    folder and its .tar.gz in ``dest`` (default ``outdir/release``) at ``version`` (default: the
    next patch after the newest there, else 0.1.0), signed with ``sign_key`` or
    with a key made in ``outdir/keys``. Artifacts judged only on random inputs go in only with
    ``allow_unverified`` (None: as the deploy that wrote ``outdir`` was told). Returns a
    :class:`edgeship.bundle.Bundle`."""
    res = _package(outdir, version=version, sign_key=sign_key, dest=dest, progress=progress,
                   allow_unverified=allow_unverified)
    refresh_report(Path(outdir))
    return res


def verify_bundle(bundle: str | Path, key: str | Path) -> dict[str, Any]:
    """Check a bundle folder or .tar.gz against its public key; SecurityError naming every extra,
    missing and changed file when it does not hold."""
    return _verify_bundle(bundle, key)


def keygen(out: str | Path) -> tuple[Path, Path]:
    """A new EC signing key pair in ``out`` (private key mode 0600): (private, public)."""
    return _keygen(out)


def cache_info() -> dict[str, Any]:
    """What edgeship's cache of task results holds (:func:`edgeship.cache.info`)."""
    return cache.info()


def cache_clear(older_than_days: float | None = None) -> dict[str, Any]:
    """Remove cached task results, all or those unused for ``older_than_days`` (:func:`edgeship.cache.clear`)."""
    return cache.clear(older_than_days)


def targets_info() -> list[dict[str, Any]]:
    """Every registered target: what it takes and builds, what it misses here and how to install it."""
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


def release_prune(outdir: str | Path = "edgeship-out", keep: int = 3, dry_run: bool = False) -> dict[str, Any]:
    """Remove all but the newest ``keep`` releases of an output folder (:func:`edgeship.bundle.releases.prune`)."""
    out = Path(outdir)
    if read_manifest(out) is None:
        raise InputError(f"{out} holds no manifest.json", hint="give an output folder written by edgeship deploy")
    return prune(out, keep, dry_run=dry_run)


def compare_cloud(target: str | Path = "edgeship-out", **options: Any) -> dict[str, Any]:
    """Edge against cloud for an artifact (:func:`edgeship.cloud.compare_cloud`); a deploy's folder
    gets the comparison in its manifest and its report."""
    doc = _compare_cloud(target, **options)
    out = doc.get("outdir")
    m = read_manifest(Path(out)) if out else None
    if m is not None:
        m.setdefault("stages", {})["compare_cloud"] = doc
        write_manifest(Path(out), m)
        refresh_report(Path(out))
    return doc


def serve(artifact: str | Path, host: str = "127.0.0.1", port: int = 8000, cfg: Any = None, on_ready: Any = None) -> None:
    """Serve ``artifact`` (an artifact, or a pipeline's release bundle) over HTTP until SIGINT/SIGTERM
    (:mod:`edgeship.serving`)."""
    from .serving import serve as _serve  # FastAPI and uvicorn: only for this command

    _serve(artifact, host=host, port=port, cfg=cfg, on_ready=on_ready)


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
    from .updates import publish as _publish

    doc = _publish(bundle, repo, channel, rollout, key=key)
    if Path(bundle).is_file() and isinstance(doc.get("version"), str):
        record_published(Path(bundle), Path(repo), channel, doc["version"], sha256_file(Path(bundle)))
    return doc


def serve_updates(repo: str | Path, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve an update repository over HTTP until interrupted."""
    from .updates.server import serve as _serve

    if not (Path(repo) / "metadata" / "timestamp.json").is_file():
        raise InputError(f"{repo} is not an update repository (no metadata/timestamp.json)",
                         hint="make one with edgeship repo init REPO")
    _serve(repo, host=host, port=port)


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
    """The update agent's state: installed version, slots, last check (:func:`edgeship.updates.agent.status`)."""
    from .updates.agent import status

    return status(state)
