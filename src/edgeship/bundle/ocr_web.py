"""The web page of an OCR pipeline bundle: ``integration/web/ocr.html`` and its two modules.

::

    integration/web/ocr.html                pick or drop an image: its text boxes drawn on it, its
                                            lines listed; ``window.edgeshipOcr(urlOrBlob)`` answers
                                            {lines: [{box, text, score, turned}], servedBy}
    integration/web/edgeship-ocr.js         the glue of edgeship.tasks.ocr ported line for line to
                                            plain JavaScript (an ES module, no build step, no
                                            browser API: it runs in a worker or Node too)
    integration/web/edgeship-ocr-bundle.js  the bundle's models on onnxruntime-web (wasm), from the
                                            web artifacts' vendored runtime; which serves, and why

The page reaches everything as the classifier page does, relative to the bundle root
(``../../`` from ``integration/web/``): ``pipeline.json`` (stages, task parameters, the set and
fallback orders), ``bundle.json`` (each artifact's format, folder, model file and session
config), the character list, ``golden/golden.json`` (each artifact checked before it serves) and,
per web artifact, ``artifacts/<id>/model.onnx`` and ``artifacts/<id>/ort/``. Nothing about the
models is pasted into the code: the page is the same for every OCR pipeline bundle, only its
title differs. An artifact serves when it loads here and passes its golden vectors; the others
are skipped, each with its reason. What serves follows ``edgeship.runtime.Pipeline``: the first
set of pipeline.json's ``set_order`` (artifact sets measured end to end) made of web artifacts
that all load and pass; a pipeline.json without a set order is served per stage, by the first
web artifact of each stage's ``fallback_order`` that does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FormatError
from .integration import INTEGRATION_DIR, _env

__all__ = ["write_ocr_web", "web_stages", "OCR_PAGE", "OCR_SCRIPT", "OCR_BUNDLE_SCRIPT"]

OCR_PAGE = f"{INTEGRATION_DIR}/web/ocr.html"
OCR_SCRIPT = f"{INTEGRATION_DIR}/web/edgeship-ocr.js"
OCR_BUNDLE_SCRIPT = f"{INTEGRATION_DIR}/web/edgeship-ocr-bundle.js"
REQUIRED_STAGES = ("det", "rec")


def web_stages(pipeline_doc: dict[str, Any], bundle_doc: dict[str, Any]) -> dict[str, list[str]]:
    """Per stage of the pipeline, its web artifacts in the pipeline's fallback order (what the
    page tries, first to last)."""
    if pipeline_doc.get("kind") != "ocr":
        raise FormatError(f"pipeline.json: kind {pipeline_doc.get('kind')!r}, the OCR page reads 'ocr' pipelines",
                          hint="write the page for an OCR pipeline bundle only")
    stages = list(pipeline_doc.get("stages") or [])
    missing = [s for s in REQUIRED_STAGES if s not in stages]
    if missing:
        raise FormatError(f"pipeline.json: no {' or '.join(missing)} stage (stages: {', '.join(stages) or 'none'})",
                          hint="an OCR pipeline has a det and a rec stage (cls is optional)")
    formats = {a.get("id"): a.get("format") for a in bundle_doc.get("artifacts") or []}
    order = pipeline_doc.get("fallback_order") or {}
    return {s: [i for i in order.get(s) or [] if formats.get(i) == "web"] for s in stages}


def write_ocr_web(bundle_folder: Path, pipeline_doc: dict[str, Any], bundle_doc: dict[str, Any]) -> list[Path]:
    """Write ``integration/web/ocr.html``, ``edgeship-ocr.js`` and ``edgeship-ocr-bundle.js``
    into ``bundle_folder`` (the artifacts already under ``artifacts/``); return the files written.
    Nothing is written (an empty list) when a stage has no web artifact, or pipeline.json's
    ``set_order`` has no set made of web artifacts: no browser could run the pipeline."""
    from .._version import __version__

    web = web_stages(pipeline_doc, bundle_doc)
    if not all(web.values()):
        return []
    sets = pipeline_doc.get("set_order")
    if isinstance(sets, list) and not any(all((s.get("artifacts") or {}).get(n) in ids for n, ids in web.items())
                                          for s in sets if isinstance(s, dict)):
        return []
    name = pipeline_doc.get("name") or bundle_doc.get("name") or "ocr"
    version = bundle_doc.get("version")
    ctx = {"edgeship_version": __version__, "title": f"{name} {version}" if version else str(name)}
    env = _env()
    written = []
    for rel, template in ((OCR_SCRIPT, "edgeship-ocr.js.j2"), (OCR_BUNDLE_SCRIPT, "edgeship-ocr-bundle.js.j2"),
                          (OCR_PAGE, "ocr.html.j2")):
        path = Path(bundle_folder) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template(template).render(ctx), encoding="utf-8")
        written.append(path)
    return written
