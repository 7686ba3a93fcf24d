"""App code for an OCR pipeline bundle: the glue between its models in Kotlin and Swift.

::

    integration/android/EdgeshipOcr.kt        the glue in plain Kotlin (no android.*: tested on a JVM)
                                              and the pipeline's task records (EdgeshipOcrPipeline)
    integration/android/EdgeshipOcrReader.kt  ONNX Runtime Android running the stages' models through it
    integration/ios/EdgeshipOcr.swift         the same glue in Swift (Foundation) and, where
                                              onnxruntime_objc is linked, a reader running the models

The glue is :mod:`edgeship.tasks.ocr` ported line for line (``tests/test_ocr_kotlin.py`` runs the
Kotlin on a JVM against it, bit for bit). The task records are rendered into the code from
``pipeline.json`` as the classifier's preprocessing constants are (``integration.py``); the
character list, like a classifier's labels, is read at run time from the file the record names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..tasks import parse_task, task_dict
from .integration import INTEGRATION_DIR, KOTLIN_PACKAGE, _env

__all__ = ["write_ocr_app_code", "OCR_APP_FILES", "RUNTIME_FORMATS"]

#: what write_ocr_app_code writes, relative to the bundle folder
OCR_APP_FILES = (f"{INTEGRATION_DIR}/android/EdgeshipOcr.kt", f"{INTEGRATION_DIR}/android/EdgeshipOcrReader.kt",
                 f"{INTEGRATION_DIR}/ios/EdgeshipOcr.swift")
#: the artifact formats ONNX Runtime (Android, iOS) loads
RUNTIME_FORMATS = ("onnx", "ort")
_KINDS = {"det": "text_detection", "cls": "text_direction", "rec": "text_recognition"}


def _tasks(pipeline_doc: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Each stage's task record, validated and with its defaults filled in."""
    stages = pipeline_doc.get("stages") or []
    if "det" not in stages or "rec" not in stages or not set(stages) <= set(_KINDS):
        raise FormatError(f"{where}: stages {stages} are not an OCR pipeline's",
                          hint='an OCR pipeline has the stages ["det", "cls", "rec"] or ["det", "rec"]')
    tasks = pipeline_doc.get("tasks") or {}
    out = {}
    for stage in stages:
        record = tasks.get(stage)
        if not isinstance(record, dict):
            raise FormatError(f"{where}: no task record for the stage {stage!r}", hint="pipeline.json tasks.<stage>")
        out[stage] = task_dict(parse_task({"kind": _KINDS[stage], **record}, f"{where} tasks.{stage}"))
        if out[stage]["kind"] != _KINDS[stage]:
            raise FormatError(f"{where}: the {stage} stage's task is a {out[stage]['kind']}, not a {_KINDS[stage]}",
                              hint="pipeline.json tasks.<stage>.kind")
    return out


def _candidates(pipeline_doc: dict[str, Any], bundle_doc: dict[str, Any], stages: list[str]) -> dict[str, list[dict]]:
    """Per stage, the artifacts ONNX Runtime on a phone loads, in the stage's fallback order."""
    entries = {e["id"]: e for e in bundle_doc.get("artifacts", [])}
    order = pipeline_doc.get("fallback_order") or {}
    out: dict[str, list[dict]] = {}
    for stage in stages:
        ids = order.get(stage) or [e["id"] for e in bundle_doc.get("artifacts", []) if e.get("stage") == stage]
        out[stage] = [{"id": i, "format": entries[i]["format"], "model_file": entries[i]["model_file"],
                       "asset": entries[i]["model_file"].removeprefix("artifacts/")}
                      for i in ids if i in entries and entries[i].get("format") in RUNTIME_FORMATS]
    return out


def write_ocr_app_code(bundle_folder: Path, pipeline_doc: dict[str, Any], bundle_doc: dict[str, Any]) -> list[Path]:
    """Write the OCR glue in Kotlin and Swift (and the readers that run the stages' models on a
    phone) under ``bundle_folder/integration/`` for the pipeline ``pipeline_doc`` (pipeline.json)
    of the bundle ``bundle_doc`` (bundle.json); return the files written."""
    from .._version import __version__

    where = f"{bundle_folder}/pipeline.json"
    tasks = _tasks(pipeline_doc, where)
    stages = [s for s in ("det", "cls", "rec") if s in tasks]
    ctx = {"edgeship_version": __version__, "pipeline_name": pipeline_doc.get("name") or bundle_doc.get("name", "ocr"),
           "version": bundle_doc.get("version", ""), "kotlin_package": KOTLIN_PACKAGE, "stages": stages,
           "det": tasks["det"], "cls": tasks.get("cls"), "rec": tasks["rec"],
           "characters_file": tasks["rec"]["characters"],
           "fallback_order": {s: list((pipeline_doc.get("fallback_order") or {}).get(s) or []) for s in stages},
           "candidates": _candidates(pipeline_doc, bundle_doc, stages)}
    env = _env()
    written = []
    for rel, template in zip(OCR_APP_FILES, ("EdgeshipOcr.kt.j2", "EdgeshipOcrReader.kt.j2", "EdgeshipOcr.swift.j2")):
        path = bundle_folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template(template).render(ctx), encoding="utf-8")
        written.append(path)
    return written
