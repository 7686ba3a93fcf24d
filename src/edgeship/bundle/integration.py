"""App code generated from a release bundle: ``integration/`` inside it, signed with it.

::

    integration/README.md                          per artifact: its input, what to feed it, which code uses it
    integration/android/EdgeshipPreprocessing.kt   per-artifact input specs, EXIF orientation, preprocessing,
                                                   top-k in plain Kotlin (tested on a JVM)
    integration/android/EdgeshipClassifier.kt      LiteRT interpreter on one tflite artifact, its input checked
    integration/ios/EdgeshipClassifier.swift       Core ML + Vision, EXIF orientation passed, centre crop, top-k
    integration/python/classify.py                 the bundle's own light runtime, golden vectors checked first
    integration/python/edgeship_light/             that runtime: edgeship's light modules, copied (``light``)
    integration/python/requirements.txt            numpy, Pillow, onnxruntime at the versions checked here
    integration/web/index.html                     pick or drop an image, see the top-k; offline
    integration/web/edgeship-classifier.js         onnxruntime-web, fallback order, golden vectors

Every constant comes from the bundle (templates in ``templates/``, jinja2), and the input of each
artifact from **that artifact's own record** (its input tensor's shape, dtype and layout, its
preprocessing, the quantisation of an integer input): artifacts of one format may differ (a uint8
int8 next to a float32 fp32, NHWC next to NCHW), so the code never assumes one input for all.
Labels are read at run time from ``labels.txt``, never pasted into code, and every string that
does go into code is escaped for its language, so a label or name with quotes, backslashes,
newlines or non-ASCII breaks nothing. The resize in Kotlin and JavaScript is Pillow's antialiased
bilinear (what the model was verified with in Python), so a phone or a page feeds the model the
same tensor; every image reader applies the EXIF orientation as Pillow's ``exif_transpose`` does.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

__all__ = ["write_integration", "input_spec", "INTEGRATION_DIR", "KOTLIN_PACKAGE"]

INTEGRATION_DIR = "integration"
KOTLIN_PACKAGE = "ai.edgeship.generated"
#: the element types the generated code feeds, and their sizes in bytes
FED_DTYPES = {"float32": 4, "uint8": 1, "int8": 1}


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


def comment(s: Any, limit: int | None = 120) -> str:
    """Text safe inside a comment or docstring of any generated language (and a Markdown table
    cell): letters, digits and a few punctuation marks kept, everything else ``_``; at most
    ``limit`` characters."""
    out = re.sub(r"[^A-Za-z0-9 ._+:;'/()\[\],=-]", "_", str(s))
    return out[:limit] if limit is not None else out


def text(s: Any) -> str:
    """:func:`comment` without the length limit: for sentences edgeship composes from values
    that are already made safe (:func:`comment`) or numbers."""
    return comment(s, None)


def _float(v: Any) -> str:
    return repr(float(v))


def kt_ident(s: Any) -> str:
    """An upper-case Kotlin/Swift identifier for an artifact id (``tflite-int8`` -> ``TFLITE_INT8``)."""
    out = re.sub(r"[^A-Za-z0-9]+", "_", str(s)).strip("_").upper() or "ARTIFACT"
    return out if not out[0].isdigit() else "A_" + out


def _env() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("edgeship.bundle", "templates"), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update(kt_str=kt_str, swift_str=swift_str, js_json=js_json, kt_comment=comment, swift_comment=comment,
                       py_comment=comment, kt_double=_float, kt_float=lambda v: _float(v) + "f",
                       kt_ints=lambda xs: ", ".join(str(int(x)) for x in xs), md=_md, text=text)
    return env


def _md(s: Any) -> str:
    """Text safe inside a Markdown table cell or code span."""
    return comment(s).replace("|", "_")


# ---- each artifact's input, from its own record --------------------------------------------

def _tflite_quantization(model: Path) -> tuple[float, int] | None:
    """(scale, zero point) of a .tflite file's first input when it is quantised (LiteRT reads
    them from the file; None when it is not installed, the file does not load, or the input is
    not quantised)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        scale, zp = Interpreter(model_path=str(model)).get_input_details()[0]["quantization"]
    except Exception:  # noqa: BLE001 - a help for the generated code; the app reads them at run time too
        return None
    return (float(scale), int(zp)) if scale else None


def input_spec(entry: dict[str, Any], source_pre: dict[str, Any] | None,
               root: Path | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """(the image input of the artifact ``entry`` (a bundle.json artifact record) as the
    generated code feeds it, None) or (None, why no app code can feed it).

    Everything comes from the artifact's own record: its preprocessing (else the source's, for a
    record that has none), its input tensor's shape, dtype and layout, and, for a tflite file
    under ``root`` whose input is an integer tensor, that tensor's quantisation. ``feed`` is
    ``float`` ((pixel - mean) / std), ``pixels`` (raw RGB bytes 0..255: the normalisation is
    folded into the model's input quantisation) or ``quantized`` ((pixel - mean) / std, then
    quantised with the input's scale and zero point)."""
    pre = entry["preprocess"] if "preprocess" in entry else source_pre
    if not isinstance(pre, dict) or pre.get("kind", "image") != "image":
        return None, "no image preprocessing recorded"
    inputs = entry.get("inputs")
    tensor: dict[str, Any] = {}
    if inputs:
        if len(inputs) != 1:
            return None, f"it takes {len(inputs)} inputs (the generated code feeds one image)"
        tensor = inputs[0]
        if tensor.get("name") not in (None, pre["input"]):
            return None, f"its input {tensor.get('name')!r} is not the one its preprocessing feeds ({pre['input']!r})"
    h, w = int(pre["height"]), int(pre["width"])
    layout = tensor.get("layout") or pre["layout"]
    if layout not in ("NCHW", "NHWC"):
        return None, f"its input layout {layout!r} is not an image layout"
    want = [1, 3, h, w] if layout == "NCHW" else [1, h, w, 3]
    shape = [d if isinstance(d, int) else 1 for d in tensor.get("shape") or want]  # a dynamic batch: one image
    if shape != want:
        return None, f"its input shape {tensor.get('shape')} is not one {layout} {w}x{h} RGB image ({want})"
    dtype = str(tensor.get("dtype") or pre.get("dtype") or "float32")
    if dtype not in FED_DTYPES:
        return None, f"its input is {dtype} (the generated code feeds float32, uint8 or int8)"
    raw = pre.get("dtype") == "uint8"
    if raw and dtype != "uint8":
        return None, f"its preprocessing gives uint8 pixels but the input tensor is {dtype}"
    quant = None
    if dtype != "float32" and entry.get("format") == "tflite" and root is not None:
        quant = _tflite_quantization(root / entry["model_file"])
    if raw and quant is not None:
        # raw pixels are right only when the input's quantisation is the normalisation itself
        folded = all(math.isclose(quant[0], 1.0 / s, rel_tol=1e-4) and abs(quant[1] - m) <= 0.5
                     for s, m in zip(pre["std"], pre["mean"]))
        raw = folded
    if dtype != "float32" and not raw and quant is None:
        return None, f"its input is a quantised {dtype} tensor whose scale and zero point the record does not give"
    feed = "pixels" if raw else "quantized" if dtype != "float32" else "float"
    elements = 3 * h * w
    return {
        "id": entry["id"], "ident": kt_ident(entry["id"]), "format": entry["format"],
        "precision": entry.get("precision"), "model_file": entry["model_file"],
        "asset": entry["model_file"].split("/", 1)[1] if entry["model_file"].startswith("artifacts/") else entry["model_file"],
        "input": pre["input"], "shape": shape, "layout": layout, "channels_first": layout == "NCHW", "dtype": dtype,
        "feed": feed, "raw": raw, "elements": elements, "bytes": elements * FED_DTYPES[dtype],
        "width": w, "height": h, "crop_fraction": float(pre["crop_fraction"]),
        "mean": [float(v) for v in pre["mean"]], "std": [float(v) for v in pre["std"]], "color": pre["color"],
        "resample": pre.get("resample", "bilinear"), "output": pre["output"],
        "scale": quant[0] if quant else (1.0 / float(pre["std"][0]) if raw else None),
        "zero_point": quant[1] if quant else (int(round(float(pre["mean"][0]))) if raw else None),
        "preprocess": {**pre, "layout": layout, "dtype": "uint8" if raw else "float32"},
    }, None


def _feed_text(s: dict[str, Any]) -> str:
    """What to feed the artifact of spec ``s``, in words."""
    if s["feed"] == "pixels":
        return (f"raw {s['color']} bytes 0..255 (the normalisation (x - {s['mean'][0]:g}) / {s['std'][0]:g} is folded into "
                f"the input's quantisation: scale {s['scale']:.6g}, zero point {s['zero_point']})")
    norm = f"(x - mean {s['mean']}) / std {s['std']}"
    if s["feed"] == "quantized":
        return f"{s['color']} {norm}, quantised to {s['dtype']} with scale {s['scale']:.6g}, zero point {s['zero_point']}"
    return f"{s['color']} {norm}"


def _layout_notes(specs: list[dict[str, Any]]) -> list[str]:
    """One sentence per format whose artifacts differ in input layout or type: the generated code
    and the README say so, artifact by artifact."""
    out = []
    for fmt in dict.fromkeys(s["format"] for s in specs):
        same = [s for s in specs if s["format"] == fmt]
        parts = []
        if len({s["layout"] for s in same}) > 1:
            parts.append("differ in layout: " + ", ".join(f"{comment(s['id'])} {s['layout']}" for s in same))
        if len({(s["dtype"], s["feed"]) for s in same}) > 1:
            parts.append("differ in input type: " + ", ".join(
                f"{comment(s['id'])} {s['dtype']}" + (" (raw pixels)" if s["feed"] == "pixels" else "") for s in same))
        if parts:
            out.append(f"the {comment(fmt)} artifacts of this bundle " + "; they ".join(parts)
                       + ". The code of each follows its own record: never feed one the tensor of another.")
    return out


# ---- writing -------------------------------------------------------------------------------

def write_integration(root: Path, doc: dict[str, Any]) -> list[str]:
    """Write ``root/integration/`` for the bundle described by ``doc`` (bundle.json without its
    file list; the artifacts already under ``root/artifacts/``); return the paths written,
    relative to ``root``."""
    from .._version import __version__
    from ..targets.web import RUNTIME_DIR, session_extra
    from .light import requirements, write_light_runtime

    out = root / INTEGRATION_DIR
    out.mkdir(parents=True, exist_ok=True)
    src = doc.get("source") or {}
    src_pre = src.get("preprocess")
    entries = {e["id"]: e for e in doc["artifacts"]}
    order = [entries[i] for i in doc["fallback_order"]]
    written: list[str] = []

    def put(rel: str, text: str) -> None:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text, encoding="utf-8")
        written.append(f"{INTEGRATION_DIR}/{rel}")

    if not src_pre or not doc.get("labels_count"):
        put("README.md", "# Integration\n\nNo app code is generated for this model: it has no image preprocessing "
                         "and labels (the generated Android, iOS, Python and web code is an image classifier).\n"
                         "Run its artifacts through `edgeship.runtime` / each runtime's own API; the golden vectors in "
                         "`golden/` still tell whether a device runs them right.\n")
        return written

    specs, unfed = [], []
    for e in order:
        spec, why = input_spec(e, src_pre, root)
        if spec is not None:
            specs.append(spec)
        else:
            unfed.append({"id": e["id"], "why": why})
    for s in specs:
        s["feed_text"] = _feed_text(s)
    seen: dict[str, int] = {}
    for s in specs:  # ids that map to one identifier (a-b, a_b) stay apart
        n = seen.get(s["ident"], 0)
        seen[s["ident"]] = n + 1
        if n:
            s["ident"] = f"{s['ident']}_{n + 1}"

    env = _env()
    tflite = [s for s in specs if s["format"] == "tflite"]
    coreml = next((s for s in specs if s["format"] == "coreml"), None)
    web_ids = [e for e in order if e["format"] == "web"]
    by_id = {s["id"]: s for s in specs}
    # the fallback order: both are .onnx files; only those whose input the page can build
    candidates = [by_id[e["id"]] for e in order if e["format"] in ("web", "onnx") and e["id"] in by_id
                  and by_id[e["id"]]["feed"] != "quantized"]
    pre = (tflite or specs or [None])[0]
    pre = pre["preprocess"] if pre else src_pre
    ctx = {"edgeship_version": __version__, "bundle_name": doc["name"], "version": doc["version"], "pre": pre,
           "kotlin_package": KOTLIN_PACKAGE, "classes": int(doc["labels_count"]), "specs": specs,
           "title": f"{doc['name']} {doc['version']}", "layout_notes": _layout_notes(specs)}
    put("android/EdgeshipPreprocessing.kt", env.get_template("EdgeshipPreprocessing.kt.j2").render(ctx))
    if tflite:
        put("android/EdgeshipClassifier.kt", env.get_template("EdgeshipClassifier.kt.j2").render(
            ctx, tflite=tflite, litert_version=(entries[tflite[0]["id"]].get("runtime") or {}).get("tested_version") or "?"))
    if coreml is not None:
        model = Path(coreml["model_file"])
        put("ios/EdgeshipClassifier.swift", env.get_template("EdgeshipClassifier.swift.j2").render(
            ctx, coreml=coreml, coreml_model=coreml["model_file"], coreml_resource=model.stem,
            coreml_requires=(entries[coreml["id"]].get("runtime") or {}).get("requires") or "iOS with Core ML"))
    put("python/classify.py", env.get_template("classify.py.j2").render(ctx))
    for rel in write_light_runtime(out / "python"):
        written.append(f"{INTEGRATION_DIR}/python/{rel}")
    reqs = requirements(doc)
    put("python/requirements.txt", env.get_template("requirements.txt.j2").render(ctx, requirements=reqs))
    if web_ids and candidates:
        config = {"preprocess": candidates[0]["preprocess"], "labels": doc.get("labels"), "golden": doc["golden"],
                  "runtimes": [f"{e['path']}/{RUNTIME_DIR}" for e in web_ids],
                  "candidates": [{"id": c["id"], "model": c["model_file"], "format": c["format"],
                                  "preprocess": c["preprocess"], "input": {"name": c["input"], "shape": c["shape"],
                                                                          "dtype": c["dtype"], "layout": c["layout"]},
                                  "session_config": session_extra(entries[c["id"]].get("session_config") or {})}
                                 for c in candidates]}
        put("web/edgeship-classifier.js", env.get_template("edgeship-classifier.js.j2").render(ctx, config=config))
        put("web/index.html", env.get_template("index.html.j2").render(ctx))
    python_ids = [e["id"] for e in order]
    put("README.md", env.get_template("README.md.j2").render(
        ctx, tflite=tflite, coreml=coreml, web=[c["id"] for c in candidates] if web_ids else [],
        python=python_ids, python_light=[e["id"] for e in order if e["format"] in ("onnx", "ort")],
        unfed=unfed, requirements=reqs))
    return written
