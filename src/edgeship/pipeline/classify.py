"""``classify``: top-k labels of images from an artifact or a release bundle, in this process or
in a limited child (a crafted model file cannot crash or exhaust the caller)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..artifact import Artifact
from ..bundle import verify_bundle
from ..config import ClassifyConfig
from ..errors import InputError, UsageError
from ..isolate import in_child, run_isolated
from ..runtime import Classifier, Prediction
from ..sources import parse_preprocess, read_labels
from ..targets import load_artifact

__all__ = ["classify", "classify_bundle", "classify_child", "classify_bundle_child", "with_stated"]


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
    """Top-k (label, confidence) for each image (see :func:`edgeship.classify`)."""
    cfg = ClassifyConfig.build(**options)
    if cfg.key is not None:
        raise UsageError("--key checks a release bundle's signature; an artifact has none",
                         hint="give the bundle folder (edgeship-out/release/<model>-<version>), or drop --key")
    if isolate and not in_child():
        if isinstance(artifact, Artifact):
            artifact = artifact.location
        doc = run_isolated("edgeship.pipeline.classify:classify_child",
                           {"artifact": str(artifact), "images": [str(i) for i in images],
                            "options": cfg.model_dump(mode="json"), "errors": errors}, what=str(artifact))
        return [row if isinstance(row, dict) else [Prediction(p[0], p[1]) for p in row] for row in doc]
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    clf = Classifier(with_stated(art, cfg.preprocess, cfg.labels), threads=cfg.threads)
    return _each_image(images, lambda img: clf.classify(img, top_k=cfg.top_k, threshold=cfg.threshold),
                       errors == "report")


def classify_bundle(bundle: str | Path, images: Sequence[Any], *, isolate: bool = False, errors: str = "raise",
                    **options: Any) -> dict[str, Any]:
    """Classify with a release bundle, degrading along its fallback order (see
    :func:`edgeship.api.classify_bundle`)."""
    cfg = ClassifyConfig.build(**options)
    if cfg.key is not None:
        verify_bundle(bundle, cfg.key)
    if isolate and not in_child():
        return run_isolated("edgeship.pipeline.classify:classify_bundle_child",
                            {"bundle": str(bundle), "images": [str(i) for i in images], "errors": errors,
                             "options": {**cfg.model_dump(mode="json"), "key": None}}, what=str(bundle))
    clf = Classifier.from_bundle(bundle, threads=cfg.threads)
    return {"served_by": clf.served_by, "skipped": clf.skipped,
            "results": _each_image(images, lambda img: [(p.label, p.confidence) for p in
                                                        clf.classify(img, top_k=cfg.top_k, threshold=cfg.threshold)],
                                   errors == "report")}


def classify_bundle_child(bundle: str, images: list[str], options: dict[str, Any], errors: str = "raise") -> dict[str, Any]:
    res = classify_bundle(bundle, images, errors=errors, **options)
    return {**res, "results": [row if isinstance(row, dict) else [list(p) for p in row] for row in res["results"]]}


def classify_child(artifact: str, images: list[str], options: dict[str, Any], errors: str = "raise") -> list:
    return [row if isinstance(row, dict) else [list(p) for p in row]
            for row in classify(artifact, images, errors=errors, **options)]


def with_stated(art: Artifact, preprocess: str | None = None, labels: str | Path | None = None) -> Artifact:
    """The artifact with the preprocessing and labels the user stated (they win over its own)."""
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
