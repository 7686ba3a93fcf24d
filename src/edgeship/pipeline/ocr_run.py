"""``ocr``: every text line of images, read by a pipeline release bundle (its signature checked
first when a key is given), in this process or in a limited child: the bundle's models are files
from outside, so the command line runs them where a crafted one cannot crash or exhaust it, as
``classify`` does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..bundle import verify_bundle
from ..config import OcrConfig
from ..errors import InputError, UnsupportedError
from ..isolate import in_child, run_isolated
from ..runtime import Pipeline

__all__ = ["bundle_task", "ocr_bundle", "ocr_bundle_child"]


def bundle_task(bundle: str | Path) -> str:
    """What a release bundle folder serves: ``"ocr"`` (a pipeline, ``pipeline.json``) or
    ``"classify"`` (one classifier, degrading along its fallback order)."""
    from ..readers import read_json

    folder = Path(bundle)
    doc = read_json(folder / "bundle.json", "release bundle record", links=False,
                    hint="give a bundle folder written by edgeship deploy or package (or extract its .tar.gz)")
    if not isinstance(doc, dict):
        raise InputError(f"{folder / 'bundle.json'} is not a release bundle record (not a JSON object)",
                         hint="give a bundle folder written by edgeship deploy or package")
    return str(doc.get("task") or "ocr") if doc.get("pipeline") else "classify"


def ocr_bundle(bundle: str | Path, images: Sequence[Any], *, isolate: bool = False, errors: str = "raise",
               **options: Any) -> dict[str, Any]:
    """Read every image with a pipeline release bundle: ``{"served_by": {stage: artifact},
    "skipped": [...], "results": [{"lines": [...], "text"}, ...]}``, one result per image. With
    ``errors="report"`` an image that cannot be read is ``{"error": {...}}`` in its place and the
    others are still read. ``isolate`` runs the models in a limited child."""
    cfg = OcrConfig.build(**options)
    if cfg.key is not None:
        verify_bundle(bundle, cfg.key)
    if bundle_task(bundle) == "classify":
        raise UnsupportedError(f"{bundle} holds a classifier, not a pipeline that reads text",
                               hint=f"classify with it: edgeship classify {bundle} IMAGE")
    if isolate and not in_child():
        return run_isolated("edgeship.pipeline.ocr_run:ocr_bundle_child",
                            {"bundle": str(bundle), "images": [str(i) for i in images], "errors": errors,
                             "options": {**cfg.model_dump(mode="json"), "key": None}}, what=str(bundle))
    pipe = Pipeline.from_bundle(bundle, threads=cfg.threads)
    try:
        results: list[dict[str, Any]] = []
        for img in images:
            try:
                results.append(pipe.read(img).to_dict())
            except InputError as e:  # missing, not an image, damaged: the others are still read
                if errors != "report":
                    raise
                results.append({"error": e.to_dict()})
        return {"served_by": dict(pipe.served_by), "skipped": list(pipe.skipped), "results": results}
    finally:
        pipe.close()


def ocr_bundle_child(bundle: str, images: list[str], options: dict[str, Any], errors: str = "raise") -> dict[str, Any]:
    return ocr_bundle(bundle, images, errors=errors, **options)
