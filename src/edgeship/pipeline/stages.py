"""The stages that run once the artifacts are verified: sample predictions, the analysis, the
benchmark; and the report an output folder's manifest is drawn into. A stage's failure is recorded
in its place (:func:`after_verification`), never the end of the run."""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._util import Progress, noop_progress
from ..analysis import analyze
from ..artifact import Artifact
from ..bench import deploy_stage
from ..bench.peaks import QUIET_BUSY, cpu_model, wait_for_quiet
from ..bundle import PRECISION_ORDER
from ..config import DeployConfig
from ..errors import EdgeshipError, MissingExtraError, UnsupportedError
from ..manifest import carry_figures, read_manifest, settle_figures, write_manifest
from ..reporting import REPORT_HTML, write_report
from ..sources import Source
from .build import cell_failure
from .keys import TaskKeys

__all__ = ["after_verification", "analysis_stage", "sample_predictions", "benchmark_choice", "benchmark_stage",
           "record_benchmark", "write_folder_report", "refresh_report", "ANALYSIS_LAYER_KEYS"]

ANALYSIS_LAYER_KEYS = ("index", "name", "module", "kind", "type", "macs", "params", "output_bytes", "bound", "est_us")


def after_verification(stage: str, compute: Callable[[], dict[str, Any]], progress: Progress) -> dict[str, Any]:
    """A stage that runs once the artifacts are verified (predictions, analysis, benchmark): its
    failure is recorded in its place in the manifest and said, never the end of the run: the
    verified artifacts are written all the same. Ctrl-C still stops the run."""
    try:
        return compute()
    except Exception as e:  # noqa: BLE001 - the artifacts it describes are verified: keep them
        f = cell_failure(stage, "-", e)
        progress(f"{stage}: failed ({f['message']}); the verified artifacts are written all the same")
        return {"error": {k: v for k, v in f.items() if k not in ("target", "precision")}}


def analysis_stage(source: Source, artifacts: Sequence[Artifact]) -> dict[str, Any]:
    """``stages.analysis`` of the manifest: the analysis of the fp32 ONNX artifact when the run
    built one (its layers are the ones the int8 report names), else of the source, kept compact
    (per layer only what the report draws; the ten largest savings). Never fatal: a model the
    analysis cannot count gets ``{"error": ...}``."""
    onnx = next((a for a in artifacts if a.format.value == "onnx" and a.precision == "fp32"), None)
    try:
        rep = analyze(onnx.model_path if onnx is not None else source, targets=[])
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


def sample_predictions(source: Source, artifacts: Sequence[Artifact], top_k: int = 3) -> dict[str, Any]:
    """Top-k labels of each sample photo from the source and from every artifact, side by side."""
    import numpy as np

    from ..data import preprocess_image, sample_photos
    from ..fidelity import softmax
    from ..runtime import Classifier

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


def benchmark_choice(artifacts: list[Artifact], every: bool = False) -> tuple[list[Artifact], list[dict[str, str]]]:
    """What ``deploy --benchmark`` measures: per target its fp32 (the baseline) and the reduced
    precision it would ship, the lowest that verified (what the report can recommend over fp32);
    every artifact when ``every``. Returns (to measure, [{id, reason} of the others])."""
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


def benchmark_stage(cfg: DeployConfig, source: Source, artifacts: list[Artifact], keys: TaskKeys | None,
                    progress: Progress) -> dict[str, Any]:
    """``deploy --benchmark``: measured, or the figures an identical run measured on this machine
    (the same artifacts by digest, source, benchmark options, CPU model and core count), which
    say so (``cached``: when and where they were measured)."""
    machine = {"cpu": cpu_model(), "cpus": os.cpu_count(), "host": platform.node()}
    artifacts, left = benchmark_choice(artifacts, cfg.benchmark_all)

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


def record_benchmark(out: Path, data: dict[str, Any], progress: Progress) -> None:
    """A benchmark of a deploy's output folder is that folder's benchmark: its figures (each
    naming the digest it measured) go into manifest.json's stages.benchmark, over the earlier
    ones of the same artifacts and thread counts (the others stay while their bytes are the
    same), and the report is written again."""
    m = read_manifest(out)
    if m is None or not any(isinstance(r, dict) and r.get("role") != "baseline" for r in data.get("results") or []):
        return
    new = {**m, "stages": {**(m.get("stages") or {}), "benchmark": json.loads(json.dumps(data))}}
    carry_figures(m, new)
    settle_figures(new)
    write_manifest(out, new)
    progress(f"recorded in {out / 'manifest.json'} (stages.benchmark)")
    refresh_report(out)


def write_folder_report(out: Path, progress: Progress = noop_progress) -> Path:
    """report.html of the output folder ``out``, from its manifest."""
    progress("writing report.html")
    return write_report(out)


def refresh_report(out: Path) -> None:
    """A command that changed an output folder's manifest rewrites the report that is there."""
    if (Path(out) / REPORT_HTML).is_file():
        write_folder_report(Path(out))
