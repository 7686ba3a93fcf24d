"""Commands that make and try artifacts: deploy, classify, quantize, compress."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import typer
from rich.console import Console

from .. import targets as _registry  # noqa: F401 - importing the registry adds the targets' Options to DeployConfig
from .._table import print_table
from ..artifact import ARTIFACT_JSON, read_artifact
from ..config import ClassifyConfig, DeployConfig, QuantizeCommandConfig, load_config
from ..errors import EdgeshipError, InputError
from ..pruning.config import CompressConfig
from .options import JSON_OPT, options_from
from .run import progress, run_command
from .views import prediction_rows, print_compress, print_deploy, print_pipeline, print_plan, print_quantize

__all__ = ["classify", "compress", "deploy", "quantize"]


@options_from(DeployConfig.with_target_options(), skip=("model",))
def deploy(
    model: str = typer.Argument("efficientnet-lite0", metavar="MODEL", help="built-in name, factory pkg.mod:fn, or a model file"),
    config: Path | None = typer.Option(None, "--config", metavar="FILE", help="JSON/YAML file of option values"),
    as_json: bool = JSON_OPT,
    options: dict = None,  # type: ignore[assignment]
) -> None:
    """Convert, verify and write every artifact for MODEL, with manifest.json."""
    from .. import api

    def body():
        opts = dict(load_config(config)) if config else {}
        opts.update(options or {})
        opts["model"] = model
        cfg = DeployConfig.build(**opts)
        if cfg.dry_run:
            p = api.deploy(config=cfg)
            return {"ok": True, "plan": p.to_dict()}, lambda c: print_plan(c, p, p.jobs)
        try:
            with progress() as update:
                res = api.deploy(config=cfg, progress=update)
        except EdgeshipError as e:
            # some artifacts failed, the others were verified and written: show those before the error
            written = e.details.get("manifest_path")
            if written and Path(written).is_file():
                from ..manifest import read_manifest

                partial = SimpleNamespace(out=cfg.out, manifest_path=written, manifest=read_manifest(Path(written).parent))
                e.human = lambda c: print_deploy(c, partial)  # type: ignore[attr-defined]
            raise
        if isinstance(res, api.PipelineResult):
            return {"ok": True, "out": str(res.out), "pipeline": res.record}, lambda c: print_pipeline(c, res)
        doc = {"ok": True, "out": str(res.out), "manifest_path": str(res.manifest_path), "manifest": res.manifest}
        if (Path(res.out) / "report.html").is_file():
            doc["report"] = str(Path(res.out) / "report.html")
        return doc, lambda c: print_deploy(c, res)

    run_command(as_json, body)


def _image_results(images: list[Path], rows: list[Any]) -> list[dict[str, Any]]:
    """One result per image: its predictions, or the error that kept it from being read."""
    return [{"image": str(img), "error": row["error"]} if isinstance(row, dict) else
            {"image": str(img), "predictions": [{"label": p[0], "confidence": p[1]} for p in row]}
            for img, row in zip(images, rows)]


def _unread(doc: dict[str, Any], human: Callable[[Console], None]) -> tuple[dict, Callable[[Console], None]]:
    """``(doc, human)``, or, when some images could not be read, an InputError (exit 3) that first
    shows every answer (``human``; in --json the whole document under ``details``) and then names
    each image that was not read."""
    bad = [r for r in doc["results"] if "error" in r]
    if not bad:
        return doc, human
    e = InputError(f"{len(bad)} of {len(doc['results'])} images could not be read: "
                   + "; ".join(r["error"]["message"] for r in bad[:3]) + ("; ..." if len(bad) > 3 else ""),
                   hint="the others were answered above; give JPEG, PNG, BMP or WebP files", **{**doc, "ok": False})
    e.human = human  # type: ignore[attr-defined]
    raise e


def _classify_bundle(api: Any, bundle: Path, images: list[Path], cfg: Any) -> tuple[dict, Callable[[Console], None]]:
    res = api.classify_bundle(bundle, images, isolate=True, errors="report", **cfg.model_dump())
    results = _image_results(images, res["results"])
    doc = {"ok": True, "bundle": str(bundle), "served_by": res["served_by"], "skipped": res["skipped"],
           "signature": "checked" if cfg.key else "not checked (give --key)", "results": results}

    def human(c: Console) -> None:
        print_table(c, f"served by {res['served_by']}  (top {cfg.top_k}, threshold {cfg.threshold})",
                    ["image", "label", "confidence"], prediction_rows(results), right=("confidence",),
                    wrap=("image", "label"))
        for s in res["skipped"]:
            c.print(f"skipped {s['artifact']}: {s['reason']}", markup=False, highlight=False)
        if not cfg.key:
            c.print("signature not checked: give --key PUB to refuse a tampered bundle", markup=False, highlight=False)

    return _unread(doc, human)


@options_from(ClassifyConfig)
def classify(
    artifact: Path = typer.Argument(..., metavar="ARTIFACT", help="artifact folder (or its model file) written by edgeship "
                                                                  "deploy, or a release bundle folder"),
    images: list[Path] = typer.Argument(..., metavar="IMAGE", help="one or more image files"),
    as_json: bool = JSON_OPT,
    options: dict = None,  # type: ignore[assignment]
) -> None:
    """Classify images with an artifact, using the artifact's own preprocessing and labels."""
    from .. import api

    def body():
        if (Path(artifact) / "bundle.json").is_file():
            return _classify_bundle(api, artifact, images, ClassifyConfig.build(**(options or {})))
        p = Path(artifact)
        bare = p.is_file() and p.name != ARTIFACT_JSON and not (p.parent / ARTIFACT_JSON).is_file()
        name = p.stem if bare else read_artifact(p).name  # JSON only: the model file is read in the child
        cfg = ClassifyConfig.build(**(options or {}))
        top_k, threshold = cfg.top_k, cfg.threshold
        rows = api.classify(p, images, isolate=True, errors="report", **cfg.model_dump())
        results = _image_results(images, rows)
        doc = {"ok": True, "artifact": name, "results": results}

        def human(c: Console) -> None:
            print_table(c, f"{name}  (top {top_k}, threshold {threshold})", ["image", "label", "confidence"],
                        prediction_rows(results), right=("confidence",), wrap=("image", "label"))

        return _unread(doc, human)

    run_command(as_json, body)


@options_from(QuantizeCommandConfig)
def quantize(
    model: str = typer.Argument("efficientnet-lite0", metavar="MODEL", help="an fp32 ONNX artifact folder, or any model deploy takes"),
    as_json: bool = JSON_OPT,
    options: dict = None,  # type: ignore[assignment]
) -> None:
    """Quantise to int8 (or fp16) within an accuracy budget; report per tensor and per layer."""
    from .. import api

    def body():
        with progress() as update:
            art = api.quantize(model, progress=update, **(options or {}))
        q = art.details.get("quantization", {})
        full = api.quantization_report(art)
        doc = {"ok": True, "artifact": {**art.record(), "path": str(art.root)}, "report": full}
        return doc, lambda c: print_quantize(c, art, q, full)

    run_command(as_json, body)


@options_from(CompressConfig, skip=("dynamic_batch",),
              panels={"method": "Pruning", "eval_samples": "Fine-tuning", "latency": "Benchmark"})
def compress(
    model: str = typer.Argument(..., metavar="MODEL", help="a torch model: built-in name, factory pkg.mod:fn, .pt2 or "
                                                           "checkpoint"),
    prune: str = typer.Option(..., "--prune", metavar="RATIO,...", help="share of the channels (or, with --method "
                                                                         "magnitude, weights) to remove, e.g. 0.5; "
                                                                         "several make a sweep: 0.25,0.5,0.75"),
    as_json: bool = JSON_OPT,
    options: dict = None,  # type: ignore[assignment]
) -> None:
    """Prune a torch model into a smaller one deploy takes (OUT/model.pt2), with what it gained and lost."""
    from .. import api

    def body():
        with progress() as update:
            rec = api.compress(model, progress=update, prune=prune, **(options or {}))
        return {"ok": True, "compress": rec}, lambda c: print_compress(c, rec)

    run_command(as_json, body)
