"""App code generated from a release bundle: ``integration/`` inside it, signed with it.

::

    integration/README.md
    integration/android/EdgeshipPreprocessing.kt   preprocessing + top-k in plain Kotlin (tested on a JVM)
    integration/android/EdgeshipClassifier.kt      LiteRT interpreter, model memory-mapped from assets
    integration/ios/EdgeshipClassifier.swift       Core ML + Vision, centre crop, top-k
    integration/python/classify.py                 edgeship.runtime, golden vectors checked first
    integration/web/index.html                     pick or drop an image, see the top-k; offline
    integration/web/edgeship-classifier.js         onnxruntime-web, fallback order, golden vectors

Every constant comes from the bundle (templates in ``templates/``, jinja2); labels are read at
run time from ``labels.txt``, never pasted into code, and every string that does go into code is
escaped for its language, so a label or name with quotes, backslashes, newlines or non-ASCII
breaks nothing. The resize in Kotlin and JavaScript is Pillow's antialiased bilinear (what the
model was verified with in Python), so a phone or a page feeds the model the same tensor.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["write_integration", "INTEGRATION_DIR", "KOTLIN_PACKAGE"]

INTEGRATION_DIR = "integration"
KOTLIN_PACKAGE = "ai.edgeship.generated"


_SIMPLE_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _literal(s: Any, specials: str, unicode: Any) -> str:
    """A double-quoted string literal: backslash before ``specials``, \\n \\r \\t, and
    ``unicode(char)`` for anything not printable ASCII."""
    out = []
    for c in str(s):
        if c in specials:
            out.append("\\" + c)
        elif c in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[c])
        elif not c.isprintable() or ord(c) > 126:
            out.append(unicode(c))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _utf16(c: str) -> list[int]:
    b = c.encode("utf-16-be")
    return [int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2)]


def kt_str(s: Any) -> str:
    """A Kotlin string literal (``$`` escaped: no templates; non-ASCII as UTF-16 \\uXXXX units)."""
    return _literal(s, '\\"$', lambda c: "".join(f"\\u{u:04x}" for u in _utf16(c)))


def swift_str(s: Any) -> str:
    """A Swift string literal (``\\(`` interpolation cannot occur: backslashes are escaped)."""
    return _literal(s, '\\"', lambda c: f"\\u{{{ord(c):x}}}")


def js_json(obj: Any) -> str:
    """JSON that is also a safe JavaScript expression inside a module or a <script>."""
    return (json.dumps(obj, ensure_ascii=True, indent=1).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def comment(s: Any) -> str:
    """Text safe inside a comment or docstring of any generated language."""
    return re.sub(r"[^A-Za-z0-9 ._+:/()-]", "_", str(s))[:120]


def _float(v: Any) -> str:
    return repr(float(v))


def _env() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("edgeship.bundle", "templates"), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update(kt_str=kt_str, swift_str=swift_str, js_json=js_json, kt_comment=comment, swift_comment=comment,
                       py_comment=comment, kt_double=_float, kt_float=lambda v: _float(v) + "f")
    return env


def write_integration(root: Path, doc: dict[str, Any]) -> list[str]:
    """Write ``root/integration/`` for the bundle described by ``doc`` (bundle.json without its
    file list); return the paths written, relative to ``root``."""
    from .._version import __version__
    from ..targets.web import RUNTIME_DIR, session_extra

    out = root / INTEGRATION_DIR
    out.mkdir(parents=True, exist_ok=True)
    src = doc.get("source") or {}
    pre = src.get("preprocess")
    entries = {e["id"]: e for e in doc["artifacts"]}
    order = [entries[i] for i in doc["fallback_order"]]
    written: list[str] = []

    def put(rel: str, text: str) -> None:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text, encoding="utf-8")
        written.append(f"{INTEGRATION_DIR}/{rel}")

    if not pre or not doc.get("labels_count"):
        put("README.md", "# Integration\n\nNo app code is generated for this model: it has no image preprocessing "
                         "and labels (the generated Android, iOS, Python and web code is an image classifier).\n"
                         "Run its artifacts through `edgeship.runtime` / each runtime's own API; the golden vectors in "
                         "`golden/` still tell whether a device runs them right.\n")
        return written

    env = _env()
    tflite = next((e for e in order if e["format"] == "tflite"), None)
    coreml = next((e for e in order if e["format"] == "coreml"), None)
    web_ids = [e for e in order if e["format"] == "web"]
    candidates = [e for e in order if e["format"] in ("web", "onnx")]  # the fallback order: both are .onnx files
    ctx = {"edgeship_version": __version__, "bundle_name": doc["name"], "version": doc["version"], "pre": pre,
           "kotlin_package": KOTLIN_PACKAGE, "classes": int(doc["labels_count"]),
           "title": f"{doc['name']} {doc['version']}"}
    put("android/EdgeshipPreprocessing.kt", env.get_template("EdgeshipPreprocessing.kt.j2").render(ctx))
    if tflite is not None:
        put("android/EdgeshipClassifier.kt", env.get_template("EdgeshipClassifier.kt.j2").render(
            ctx, tflite_model=tflite["model_file"], tflite_model_asset=Path(tflite["model_file"]).name,
            litert_version=(tflite.get("runtime") or {}).get("tested_version") or "?"))
    if coreml is not None:
        model = Path(coreml["model_file"])
        put("ios/EdgeshipClassifier.swift", env.get_template("EdgeshipClassifier.swift.j2").render(
            ctx, coreml_model=coreml["model_file"], coreml_resource=model.stem,
            coreml_requires=(coreml.get("runtime") or {}).get("requires") or "iOS with Core ML"))
    put("python/classify.py", env.get_template("classify.py.j2").render(ctx))
    if web_ids:
        config = {"preprocess": pre, "labels": doc.get("labels"), "golden": doc["golden"],
                  "runtimes": [f"{e['path']}/{RUNTIME_DIR}" for e in web_ids],
                  "candidates": [{"id": e["id"], "model": e["model_file"], "format": e["format"],
                                  "session_config": session_extra(e.get("session_config") or {})} for e in candidates]}
        put("web/edgeship-classifier.js", env.get_template("edgeship-classifier.js.j2").render(ctx, config=config))
        put("web/index.html", env.get_template("index.html.j2").render(ctx))
    put("README.md", env.get_template("README.md.j2").render(
        ctx, tflite=tflite, coreml=coreml, web=[e["id"] for e in candidates] if web_ids else [],
        python=[e["id"] for e in order]))
    return written
