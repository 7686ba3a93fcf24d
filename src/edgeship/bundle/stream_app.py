"""App code for a voice-activity bundle: the stream glue in Kotlin.

::

    integration/android/EdgeshipVad.kt   the glue in plain Kotlin (chunks, the carried state, silero-vad's
                                         segment rule; tested on a JVM), this bundle's task record
                                         (EdgeshipVad.TASK) and artifacts, and OrtVadModel running the
                                         model with ONNX Runtime's Java API (onnxruntime-android)

The glue is :mod:`edgeship.tasks.vad` ported line for line (``tests/test_vad_kotlin.py`` runs the
Kotlin on a JVM against it: the model inputs bit for bit, the segments exactly). The task record
and each artifact's inputs are rendered into the code from bundle.json, every string escaped, as
the OCR glue's records are (``ocr_app.py``, ``integration.py``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..tasks import parse_task, task_dict
from .integration import INTEGRATION_DIR, KOTLIN_PACKAGE, _env, _float

__all__ = ["write_vad_app_code", "VAD_APP_FILES", "RUNTIME_FORMATS"]

#: what write_vad_app_code writes, relative to the bundle folder
VAD_APP_FILES = (f"{INTEGRATION_DIR}/android/EdgeshipVad.kt",)
#: the artifact formats ONNX Runtime (Android) loads
RUNTIME_FORMATS = ("onnx", "ort")


def _inputs(entry: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """An artifact's inputs as the Kotlin gets them: a dynamic dimension -1."""
    specs = entry.get("inputs")
    if not isinstance(specs, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in specs):
        raise FormatError(f"{where}: artifact {entry.get('id')!r} has no readable inputs list",
                          hint="bundle.json artifacts[].inputs: [{name, shape, dtype}]")
    out = []
    for s in specs:
        shape = [int(d) if isinstance(d, int) and not isinstance(d, bool) and d >= 0 else -1 for d in s.get("shape") or ()]
        out.append({"name": s["name"], "shape": shape, "dtype": str(s.get("dtype") or "float32")})
    return out


def _models(bundle_doc: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The artifacts ONNX Runtime on a phone loads, in the bundle's fallback order."""
    entries = {e.get("id"): e for e in bundle_doc.get("artifacts", []) if isinstance(e, dict)}
    order = bundle_doc.get("fallback_order") or list(entries)
    out = []
    for i in order:
        e = entries.get(i)
        if e is None or e.get("format") not in RUNTIME_FORMATS:
            continue
        out.append({"id": str(i), "asset": str(e["model_file"]).removeprefix("artifacts/"), "inputs": _inputs(e, where)})
    return out


def write_vad_app_code(bundle_folder: Path, task: dict[str, Any], bundle_doc: dict[str, Any]) -> list[Path]:
    """Write the voice-activity glue in Kotlin (and the ONNX Runtime model that runs it on a phone)
    under ``bundle_folder/integration/android/`` for the task record ``task`` (bundle.json ``task``)
    of the bundle ``bundle_doc`` (bundle.json); return the files written."""
    from .._version import __version__

    where = f"{bundle_folder}/bundle.json"
    record = task_dict(parse_task(task, f"{where} task"))
    if record["kind"] != "voice_activity":
        raise FormatError(f"{where}: the task is a {record['kind']}, not a voice_activity stream",
                          hint='bundle.json task.kind "voice_activity"')
    max_s = record["max_speech_s"]
    ctx = {"edgeship_version": __version__, "bundle_name": bundle_doc.get("name", "vad"),
           "version": bundle_doc.get("version", ""), "kotlin_package": KOTLIN_PACKAGE, "task": record,
           "max_speech_s": "null" if max_s is None else "Double.POSITIVE_INFINITY" if math.isinf(max_s) else _float(max_s),
           "fallback_order": [str(i) for i in bundle_doc.get("fallback_order") or []],
           "models": _models(bundle_doc, where)}
    env = _env()
    written = []
    for rel, template in zip(VAD_APP_FILES, ("EdgeshipVad.kt.j2",)):
        path = bundle_folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template(template).render(ctx), encoding="utf-8")
        written.append(path)
    return written
