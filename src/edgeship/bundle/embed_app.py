"""App code for a text embedding bundle: its WordPiece tokenizer in JavaScript and Kotlin, the
web page and the Android embedder.

::

    integration/web/edgeship-wordpiece.js      the tokenizer as an ES module (no build step, no
                                               dependency): new WordPiece(vocab).batch(texts) ->
                                               {shape, inputs: {input_ids: BigInt64Array, ...}}
    integration/android/EdgeshipWordPiece.kt   the tokenizer in plain Kotlin (no android.*: tested
                                               on a JVM): EdgeshipWordPiece(vocab).batch(texts)
    integration/web/embed.html                 sentences and a query: each sentence's nearest
                                               neighbours by cosine; ``window.edgeshipEmbed(texts)``
                                               -> {embeddings, ids, servedBy}
    integration/web/edgeship-embed.js          the bundle's model on onnxruntime-web (wasm): the first
                                               web artifact of the fallback order that loads and
                                               passes its golden sentences serves, the others are
                                               skipped with their reason (``edgeship.runtime.Embedder``'s
                                               rule); imports edgeship-wordpiece.js
    integration/android/EdgeshipEmbedder.kt    tokenise, run, L2-normalise (plain Kotlin behind the
                                               EmbeddingModel interface, tested on a JVM); the golden
                                               check and fallback order; OrtEmbeddingModel on ONNX
                                               Runtime's Java API (onnxruntime-android)

Both are :mod:`edgeship.tasks.text` ported line for line (HF tokenizers' BERT pipeline) and read
the same character tables (``tasks.text.TABLES``, tokenizers' own), rendered in with the embedding
record the bundle's model was verified with (its ``task``); the token list is read at run time
from the file the record names (``vocab.txt`` beside bundle.json), as a classifier's labels are.
``tests/test_wordpiece_web.py`` and ``tests/test_wordpiece_kotlin.py`` check them token for token
against tokenizers.

The page reads everything at run time, relative to the bundle root (``../../`` from
``integration/web/``), as the OCR page does: ``bundle.json`` (the fallback order, each artifact's
format, model file, session config, inputs and task record), the vocabulary, ``golden/golden.json``
and per web artifact ``artifacts/<id>/model.onnx`` and its vendored ``ort/`` (targets/web.py
``RUNTIME_DIR``); only its title is rendered in. The Kotlin has this bundle rendered in (its name,
fallback order, the ONNX/ORT artifacts' input names and their golden sentences' files, read from
``golden/golden.json``), every string escaped; the files themselves (models, ``vocab.txt``, the
golden ``.npy`` tensors) are read from the app's assets at run time. ``tests/test_embed_web.py``
checks the page in Chromium against ``Embedder`` on a deployed bundle, ``tests/test_embed_kotlin.py``
the Kotlin on a JVM against numpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import EdgeshipError, FormatError
from ..readers.tokenizer import MASK_TOKEN, RUST_WHITESPACE
from ..tasks import parse_task, task_dict
from ..tasks.text import CACHE_WORDS, DEFAULTS, TABLES
from .integration import INTEGRATION_DIR, KOTLIN_PACKAGE, _env, _float, kt_str

__all__ = ["write_wordpiece_code", "write_embed_web", "write_embedder_kotlin", "WORDPIECE_SCRIPT", "WORDPIECE_KOTLIN",
           "EMBED_PAGE", "EMBED_SCRIPT", "EMBEDDER_KOTLIN", "RUNTIME_FORMATS"]

WORDPIECE_SCRIPT = f"{INTEGRATION_DIR}/web/edgeship-wordpiece.js"
WORDPIECE_KOTLIN = f"{INTEGRATION_DIR}/android/EdgeshipWordPiece.kt"
EMBED_PAGE = f"{INTEGRATION_DIR}/web/embed.html"
EMBED_SCRIPT = f"{INTEGRATION_DIR}/web/edgeship-embed.js"
EMBEDDER_KOTLIN = f"{INTEGRATION_DIR}/android/EdgeshipEmbedder.kt"
#: the artifact formats ONNX Runtime (Android) loads
RUNTIME_FORMATS = ("onnx", "ort")
GOLDEN_JSON = "golden/golden.json"


def _kt_bool(v: Any) -> str:
    return "null" if v is None else "true" if v else "false"


def _kt_opt_str(v: Any) -> str:
    return "null" if v is None else kt_str(v)


def _kt_opt_list(v: Any) -> str:
    return "null" if v is None else "listOf(" + ", ".join(kt_str(s) for s in v) + ")"


def write_wordpiece_code(bundle_folder: Path, task: Any) -> list[Path]:
    """Write ``integration/web/edgeship-wordpiece.js`` and ``integration/android/EdgeshipWordPiece.kt``
    under ``bundle_folder`` for the embedding record ``task`` (its dict or the pydantic record;
    ``tokenizer`` "wordpiece"); return the files written."""
    from .._version import __version__

    where = f"{bundle_folder}/bundle.json"
    record = task if isinstance(task, dict) else task_dict(task)
    record = task_dict(parse_task({"kind": "embedding", **(record or {})}, f"{where} task"))
    if record["kind"] != "embedding" or record.get("tokenizer") != "wordpiece":
        raise FormatError(f"{where}: the task is a {record['kind']} with tokenizer {record.get('tokenizer')!r}, "
                          "not an embedding with the wordpiece tokenizer",
                          hint='an embedding record with "tokenizer": "wordpiece"')
    record = DEFAULTS | record  # the fields the record does not have yet (added_tokens) at their defaults
    ctx = {"edgeship_version": __version__, "kotlin_package": KOTLIN_PACKAGE, "task": record, "defaults": DEFAULTS,
           "tables": TABLES, "mask_token": MASK_TOKEN, "rust_whitespace": RUST_WHITESPACE, "cache_words": CACHE_WORDS}
    env = _env()
    env.filters.update(kt_bool=_kt_bool, kt_opt_str=_kt_opt_str, kt_opt_list=_kt_opt_list)
    written = []
    for rel, template in ((WORDPIECE_SCRIPT, "edgeship-wordpiece.js.j2"), (WORDPIECE_KOTLIN, "EdgeshipWordPiece.kt.j2")):
        path = Path(bundle_folder) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template(template).render(ctx), encoding="utf-8")
        written.append(path)
    return written


def _record(where: str, task: Any) -> dict[str, Any]:
    """The embedding record ``task`` (a dict or the pydantic record), checked: an embedding with
    the wordpiece tokenizer (the page and the Android embedder tokenise with it)."""
    record = task if isinstance(task, dict) else task_dict(task)
    record = task_dict(parse_task({"kind": "embedding", **(record or {})}, f"{where} task"))
    if record["kind"] != "embedding" or record.get("tokenizer") != "wordpiece":
        raise FormatError(f"{where}: the task is a {record['kind']} with tokenizer {record.get('tokenizer')!r}, "
                          "not an embedding with the wordpiece tokenizer",
                          hint='an embedding record with "tokenizer": "wordpiece"')
    return record


def _entries(bundle_doc: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """bundle.json's artifacts in its fallback order (the first to serve first)."""
    arts = bundle_doc.get("artifacts")
    if not isinstance(arts, list):
        raise FormatError(f"{where}: no artifacts list", hint="give bundle.json as edgeship package writes it")
    entries = {e.get("id"): e for e in arts if isinstance(e, dict)}
    order = bundle_doc.get("fallback_order")
    return [entries[i] for i in (order if isinstance(order, list) else list(entries)) if i in entries]


def _serves_embeddings(entry: dict[str, Any], top: Any) -> bool:
    task = entry.get("task") if isinstance(entry.get("task"), dict) else top
    return isinstance(task, dict) and task.get("kind") == "embedding" and task.get("tokenizer") == "wordpiece"


def write_embed_web(bundle_folder: Path, bundle_doc: dict[str, Any]) -> list[Path]:
    """Write ``integration/web/embed.html`` and ``integration/web/edgeship-embed.js`` into
    ``bundle_folder`` for the bundle ``bundle_doc`` (bundle.json; its artifacts already under
    ``artifacts/``); return the files written. The page imports ``edgeship-wordpiece.js``, which
    :func:`write_wordpiece_code` writes beside it. Nothing is written (an empty list) when no web
    artifact of the fallback order is an embedding with the WordPiece tokenizer: no browser could
    run the bundle."""
    from .._version import __version__

    where = f"{bundle_folder}/bundle.json"
    if not any(e.get("format") == "web" and _serves_embeddings(e, bundle_doc.get("task"))
               for e in _entries(bundle_doc, where)):
        return []
    name, version = bundle_doc.get("name") or "embeddings", bundle_doc.get("version")
    ctx = {"edgeship_version": __version__, "title": f"{name} {version}: sentence embeddings" if version
           else f"{name}: sentence embeddings"}
    env = _env()
    written = []
    for rel, template in ((EMBED_SCRIPT, "edgeship-embed.js.j2"), (EMBED_PAGE, "embed.html.j2")):
        path = Path(bundle_folder) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template(template).render(ctx), encoding="utf-8")
        written.append(path)
    return written


def _golden_doc(bundle_folder: Path, bundle_doc: dict[str, Any]) -> tuple[dict[str, Any] | None, str, str]:
    """(golden.json's document or None, its path in the bundle, why it does not read)."""
    from .._util import confined
    from ..readers import read_json

    rel = str(bundle_doc.get("golden") or GOLDEN_JSON)
    try:
        doc = read_json(confined(Path(bundle_folder), rel, f"{bundle_folder}/bundle.json: golden"),
                        "golden vectors record", links=False)
    except EdgeshipError as e:
        return None, rel, e.message
    if not isinstance(doc, dict) or not isinstance(doc.get("artifacts"), dict):
        return None, rel, f"{rel} has no artifacts record"
    return doc, rel, ""


def _golden_of(aid: str, inputs: list[str], golden: dict[str, Any] | None, rel: str, why: str) -> dict[str, Any]:
    """An artifact's golden sentences as the Kotlin checks them: {"golden": [{name, text, inputs,
    output}], "unchecked": why none are checked (golden.json says so: it serves unchecked, as
    Embedder lets it) or None, "missing": why it has none (it fails its check) or None, tolerance}."""
    out: dict[str, Any] = {"golden": [], "unchecked": None, "missing": None, "cosine_min": 0.99, "max_abs_rel": None}
    if golden is None:
        out["missing"] = why
        return out
    rec = golden["artifacts"].get(aid)
    if not isinstance(rec, dict):
        out["missing"] = f"{rel} has no golden vectors for {aid}"
        return out
    if "skipped" in rec:
        out["unchecked"] = str(rec["skipped"])
        return out
    tol = rec.get("tolerance") if isinstance(rec.get("tolerance"), dict) else {}
    out["cosine_min"] = float(tol.get("cosine_min", 0.99))
    if tol.get("max_abs_rel_to_scale") is not None:
        out["max_abs_rel"] = float(tol["max_abs_rel_to_scale"])
    texts = rec.get("texts") if isinstance(rec.get("texts"), dict) else {}
    ins = rec.get("inputs") if isinstance(rec.get("inputs"), dict) else {}
    outs = rec.get("outputs") if isinstance(rec.get("outputs"), dict) else {}
    for name, files in ins.items():
        want = outs.get(name)
        ok = (isinstance(files, list) and all(isinstance(f, str) for f in files) and isinstance(want, list) and want
              and isinstance(want[0], str) and isinstance(texts.get(name), str))
        if not ok or len(files) != len(inputs):
            raise FormatError(f"{rel}: {aid}'s golden {name!r} is not a sentence with one tensor per input "
                              f"({len(inputs)}) and an output", hint="package the output folder again")
        out["golden"].append({"name": str(name), "text": texts[name], "inputs": files, "output": want[0]})
    if not out["golden"]:
        out["missing"] = f"{rel} has no golden sentences for {aid}"
    return out


def write_embedder_kotlin(bundle_folder: Path, task: Any, bundle_doc: dict[str, Any]) -> list[Path]:
    """Write ``integration/android/EdgeshipEmbedder.kt`` into ``bundle_folder`` for the embedding
    record ``task`` (bundle.json ``task``) of the bundle ``bundle_doc`` (bundle.json; its golden
    vectors already in ``golden/``); return the files written. It tokenises with
    ``EdgeshipWordPiece.kt`` (:func:`write_wordpiece_code` writes it beside it). The artifacts it
    knows are the bundle's ONNX and ORT files, in the fallback order, each with the files of its
    golden sentences (none when the bundle has no such artifact: the code says so and serves
    nothing until a model is given through EmbeddingModel)."""
    from .._version import __version__

    where = f"{bundle_folder}/bundle.json"
    record = _record(where, task)
    golden, rel, why = _golden_doc(Path(bundle_folder), bundle_doc)
    models = []
    for e in _entries(bundle_doc, where):
        if e.get("format") not in RUNTIME_FORMATS or not _serves_embeddings(e, record):
            continue
        specs = e.get("inputs")
        if not isinstance(specs, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in specs):
            raise FormatError(f"{where}: artifact {e.get('id')!r} has no readable inputs list",
                              hint="bundle.json artifacts[].inputs: [{name, shape, dtype}]")
        if not isinstance(e.get("model_file"), str):
            raise FormatError(f"{where}: artifact {e.get('id')!r} has no model_file")
        names = [s["name"] for s in specs]
        first = (specs[0].get("shape") or [None])[0] if specs else None
        batch = first if isinstance(first, int) and not isinstance(first, bool) and first > 0 else -1
        models.append({"id": str(e["id"]), "asset": str(e["model_file"]).removeprefix("artifacts/"), "inputs": names,
                       "batch": batch, **_golden_of(str(e["id"]), names, golden, rel, why)})
    assets = sorted({f for m in models for g in m["golden"] for f in [*g["inputs"], g["output"]]})
    ctx = {"edgeship_version": __version__, "kotlin_package": KOTLIN_PACKAGE, "task": record,
           "bundle_name": bundle_doc.get("name", "embeddings"), "version": bundle_doc.get("version", ""),
           "fallback_order": [str(i) for i in bundle_doc.get("fallback_order") or []], "models": models,
           "golden_assets": assets, "vocabulary": record.get("vocabulary") or "vocab.txt"}
    env = _env()
    env.filters.update(kt_opt_str=_kt_opt_str, kt_opt_double=lambda v: "null" if v is None else _float(v))
    path = Path(bundle_folder) / EMBEDDER_KOTLIN
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(env.get_template("EdgeshipEmbedder.kt.j2").render(ctx), encoding="utf-8")
    return [path]
