"""The release bundle of a pipeline: every stage's artifacts, the glue's parameters, golden
vectors for each model and for the whole, app code, signed as one.

Laid out as one model's bundle (:mod:`edgeship.bundle`), with::

    pipeline.json          schema edgeship.pipeline/1: kind, stages, each stage's task record and
                           fallback order, the end-to-end figures of each artifact set
    characters.txt         the recogniser's character list (blank and space are added on reading)
    artifacts/<stage>-<id> each stage's artifacts that belong to an artifact set within the budget
    golden/golden.json     per artifact, on the inputs the stage gets from real pages
    golden/pipeline.json   pages (golden/pages/*.png) -> the fp32 pipeline's boxes and text, and
                           its trace (each model's outputs), for checking a port of the glue

The sets within the budget ship, in ``set_order`` (lowest precision first): a device serves the
first set each of whose artifacts loads and passes its golden vectors, so what serves is always
a combination measured end to end here.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._util import safe_name, tool_versions
from .._version import __version__
from ..artifact import Artifact
from ..errors import InputError, UsageError
from ..manifest import environment, load_manifest
from . import PRECISION_ORDER, SCHEMA, SIGNATURE, _fidelity, can_run_here, release_records, seal, signing_key
from .golden import GOLDEN_DIR, GOLDEN_JSON, GoldenWriter, write_golden
from .releases import next_version, released
from .semver import SEMVER

__all__ = ["package_pipeline", "set_key", "PIPELINE_JSON", "PIPELINE_SCHEMA", "GOLDEN_PIPELINE", "CHARACTERS"]

PIPELINE_JSON = "pipeline.json"
PIPELINE_SCHEMA = "edgeship.pipeline/1"
GOLDEN_PIPELINE = "golden/pipeline.json"
CHARACTERS = "characters.txt"
GOLDEN_PAGES = 2
#: a set on another device against its own reading here: characters that may differ, over all pages
SAME_SET_CER = 0.01


def set_key(artifacts: dict[str, str]) -> str:
    """How golden/pipeline.json names a set of artifacts: "cls=...,det=...,rec=..."."""
    return ",".join(f"{n}={a}" for n, a in sorted(artifacts.items()))


def _allowed(record: dict[str, Any]) -> tuple[dict[str, set[str]], list[dict[str, Any]]]:
    """Per stage, the artifacts of the sets within the budget; the sets that are not."""
    passing = [s for s in record.get("sets") or [] if s.get("passed")]
    allowed: dict[str, set[str]] = {n: set() for n in record["stages"]}
    for s in passing:
        for n, aid in s["artifacts"].items():
            allowed[n].add(aid)
    return allowed, [s for s in record.get("sets") or [] if not s.get("passed")]


def package_pipeline(out: str | Path, record: dict[str, Any], spec: Any, *, characters: list[str], pages: str,
                     stage_inputs: dict[str, dict[str, Any]] | None = None, version: str | None = None,
                     sign_key: str | Path | None = None, dest: str | Path | None = None,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Package the pipeline deploy in ``out`` (its ``record``, pipeline.json) as one signed
    release in ``dest`` (default ``out/release``); returns the release's record."""
    from ..runtime import Pipeline
    from ..targets import load_artifact, target_of
    from ..tasks import ocr

    say = progress or (lambda _m: None)
    out = Path(out)
    dest = Path(dest) if dest is not None else out / "release"
    version = version or next_version(dest)
    if not SEMVER.match(version):
        raise UsageError(f"--release-version {version!r} is not a semantic version", hint="write it like 1.2.0")
    allowed, over = _allowed(record)
    if not any(allowed.values()):
        raise InputError("no artifact set of the pipeline reads the evaluation pages within the budget "
                         f"(CER <= {record.get('max_cer')}), not even fp32",
                         hint="see pipeline.json sets; raise --max-cer only if that loss is acceptable")
    name = f"{safe_name(spec.name)}-{version}"
    for p in (dest / name, dest / f"{name}.tar.gz"):
        if p.exists():
            raise UsageError(f"{p} exists: a released version is never rewritten", hint="give a new --release-version")
    key, public, key_created = signing_key(out, sign_key, dest, name, say)
    left_out: list[dict[str, Any]] = []

    def fill(tmp: Path) -> dict[str, Any]:
        entries, order = [], {}
        writer = GoldenWriter(tmp)
        with np.load(pages) as z:
            imgs = [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))][:GOLDEN_PAGES]
        for st in spec.stages:
            folder = out / "models" / st.name
            m = load_manifest(folder)
            if m is None:
                continue
            records, left = release_records(m.records, bool(m.config.get("allow_unverified") is True))
            left_out.extend({**x, "id": f"{st.name}-{x['id']}"} for x in left)
            arts: list[Artifact] = []
            for rec in records:
                aid = str(rec.get("id") or rec.get("path"))
                if aid not in allowed.get(st.name, set()):
                    left_out.append({"id": f"{st.name}-{aid}", "status": "over-budget",
                                     "why": "no artifact set it belongs to reads the pages within the CER budget",
                                     "fix": "see pipeline.json sets"})
                    continue
                art = load_artifact(m.artifact_folder(rec))
                art.verify_files()
                say(f"copying {st.name}-{aid}")
                shutil.copytree(art.root, tmp / "artifacts" / f"{st.name}-{aid}", symlinks=False)
                arts.append(load_artifact(tmp / "artifacts" / f"{st.name}-{aid}"))
                entries.append(_entry(st.name, rec, arts[-1], target_of))
            samples = _stage_samples(st.name, (stage_inputs or {}).get(st.name))
            write_golden(tmp, m.source, arts, False, lambda a: target_of(a).runner(a, threads=1), can_run_here,
                         say, samples=samples, writer=writer,
                         origin=f"what the {st.name} model is given on a rendered text page" if samples else None)
            order[st.name] = [e["id"] for e in sorted((e for e in entries if e["stage"] == st.name),
                                                      key=lambda e: (PRECISION_ORDER.get(e["precision"], 1),
                                                                     e["size_bytes"]))]
        (tmp / CHARACTERS).write_text("".join(f"{c}\n" for c in characters))
        tasks = {st.name: st.task.model_dump(mode="json") for st in spec.stages}
        if "rec" in tasks:
            tasks["rec"]["characters"] = CHARACTERS
        shipped = [s for s in record.get("sets") or [] if s.get("passed")
                   and all(f"{n}-{a}" in order.get(n, []) for n, a in s["artifacts"].items())]
        shipped.sort(key=lambda s: (PRECISION_ORDER.get(s["precision"], 1), bool(s.get("mixed")), s.get("cer") or 0.0))
        pdoc = {"schema": PIPELINE_SCHEMA, "kind": spec.kind, "name": spec.name,
                "stages": [st.name for st in spec.stages if order.get(st.name)], "tasks": tasks,
                "set_order": [{"id": s["id"], "artifacts": {n: f"{n}-{a}" for n, a in s["artifacts"].items()}}
                              for s in shipped],
                "fallback_order": order, "golden": GOLDEN_PIPELINE, "max_cer": record.get("max_cer"),
                "sets": [{**{k: s.get(k) for k in ("id", "cer", "iou_mean", "missed", "extra", "passed",
                                                     "seconds_per_page", "error")},
                          "artifacts": {n: f"{n}-{a}" for n, a in s["artifacts"].items()}}
                         for s in record.get("sets") or []]}
        (tmp / PIPELINE_JSON).write_text(json.dumps(pdoc, indent=1) + "\n")
        say("golden vectors for the whole pipeline (fp32)")
        _golden_pipeline(tmp, pdoc, imgs, writer, Pipeline, ocr)
        writer.write()
        releases = [d["release"] for _, d in released(dest) if isinstance(d.get("release"), int)]
        doc: dict[str, Any] = {
            "schema": SCHEMA, "name": spec.name, "version": version, "release": max(releases, default=0) + 1,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "edgeship_version": __version__,
            "task": spec.kind, "pipeline": PIPELINE_JSON,
            "source": {"name": spec.name, "kind": "pipeline", "digest": None,
                       "stages": {n: s["model"] for n, s in spec.record()["stages"].items()}},
            "labels": None, "labels_count": 0, "artifacts": entries,
            "fallback_order": [a for n in pdoc["stages"] for a in order[n]],
            **({"left_out": left_out} if left_out else {}),
            "fallback_rule": ("pipeline.json set_order: the artifact sets that read the evaluation pages within the "
                              "CER budget, int8 then fp16 then fp32; a device serves the first set whose every "
                              "artifact loads and passes its golden vectors"),
            "golden": GOLDEN_JSON, "card": None, "signature": SIGNATURE,
            "tool_versions": tool_versions("model-signing"), "environment": environment(),
        }
        say("generating the pipeline's app code")
        _integration(tmp, pdoc, doc)
        return doc

    doc = seal(dest, name, fill, key, public, say)
    return {"version": version, "release": doc["release"], "folder": os.path.relpath(dest / name, out),
            "tarball": os.path.relpath(dest / f"{name}.tar.gz", out), "public_key": os.path.relpath(public, out),
            "key": os.path.relpath(key, out), "key_created": key_created, "fallback_order": doc["fallback_order"],
            "left_out": left_out}


def _entry(stage: str, rec: dict[str, Any], a: Artifact, target_of: Any) -> dict[str, Any]:
    aid = a.root.name
    return {"id": aid, "stage": stage, "task": a.task.model_dump(mode="json") if a.task else None,
            "target": a.target, "format": a.format.value, "precision": a.precision,
            "path": f"artifacts/{aid}", "model_file": f"artifacts/{aid}/{a.model_file}",
            "inputs": [s.model_dump(mode="json") for s in a.inputs],
            "outputs": [s.model_dump(mode="json") for s in a.outputs], "preprocess": None,
            "size_bytes": sum(f.size for f in a.files), "digest": rec.get("digest"),
            "runtime": target_of(a).runtime_requirement(a), "fidelity": _fidelity(rec), "benchmark": None,
            "golden": True, "tool_versions": a.provenance.tool_versions,
            **({"session_config": a.details["session_config"]} if a.details.get("session_config") else {})}


def _stage_samples(stage: str, info: dict[str, Any] | None) -> list[tuple[str, tuple[np.ndarray, ...]]] | None:
    if not info:
        return None
    with np.load(info["eval"]) as z:
        arr = z[info["input"]]
    return [(f"{stage}-{k}", (arr[k:k + 1],)) for k in range(min(2, len(arr)))]


def _golden_pipeline(tmp: Path, pdoc: dict[str, Any], imgs: list[np.ndarray], writer: GoldenWriter, pipeline_cls: Any,
                     ocr: Any) -> None:
    """golden/pipeline.json: the golden pages through the bundle's own fp32 artifacts, with the
    trace of every model's output."""
    from PIL import Image

    fp32 = {n: next((a for a in ids if a.endswith("-onnx-fp32")), None) or next((a for a in ids if a.endswith("-fp32")), None)
            for n, ids in pdoc["fallback_order"].items()}
    if any(v is None for v in fp32.values()):
        raise InputError("the pipeline's release has a stage without an fp32 artifact: its golden vectors need one",
                         hint="build fp32 for every target (it is always built)")
    (tmp / GOLDEN_DIR / "pages").mkdir(parents=True, exist_ok=True)
    files = []
    for k, img in enumerate(imgs):
        rel = f"{GOLDEN_DIR}/pages/page-{k}.png"
        Image.fromarray(img).save(tmp / rel)
        files.append(rel)
    # each set the release ships reads the golden pages here: a device serving that set expects it
    expected_by_set: dict[str, list[Any]] = {}
    for s in pdoc["set_order"]:
        pipe = pipeline_cls.from_bundle(tmp, artifacts=s["artifacts"], check=False)
        try:
            expected_by_set[set_key(s["artifacts"])] = [pipe.read(tmp / rel).to_dict()["lines"] for rel in files]
        finally:
            pipe.close()
    pipe = pipeline_cls.from_bundle(tmp, artifacts=fp32, check=False)
    images = []
    try:
        for k, rel in enumerate(files):
            res = pipe.read(tmp / rel, trace=True)
            t = res.trace
            trace = {"page_shape": t["page_shape"], "det_input_shape": t["det_input_shape"],
                     "det_map": writer.tensor(np.asarray(t["det_map"], np.float32)), "boxes_page": t["boxes_page"],
                     "cls": [{"index": c["index"], "scores": writer.tensor(np.asarray(c["scores"], np.float32))}
                             for c in t.get("cls", [])],
                     "rec": [{"index": r["index"], "shape": r["shape"],
                              "logits": writer.tensor(np.asarray(r["logits"], np.float32))} for r in t.get("rec", [])]}
            images.append({"name": f"page-{k}", "file": rel, "expected": res.to_dict(), "trace": trace})
    finally:
        pipe.close()
    doc = {"schema": "edgeship.golden-pipeline/1", "images": images, "expected_from": fp32,
           "sets": expected_by_set,
           "tolerance": {"cer_same_set": SAME_SET_CER, "cer_max": pdoc.get("max_cer") or 0.0, "iou_min": 0.5,
                         "note": "a set the release ships reads the golden pages as it did here (its own lines, "
                                 "in sets; over all pages at most cer_same_set of the characters differ: another "
                                 "CPU's kernels round differently); any other mix of artifacts within cer_max of "
                                 "the fp32 set's (expected)"}}
    (tmp / GOLDEN_PIPELINE).write_text(json.dumps(doc, indent=1) + "\n")


def _integration(tmp: Path, pdoc: dict[str, Any], doc: dict[str, Any]) -> None:
    """The app code generated for the pipeline, each platform's from its own module; Python: the
    light runtime the bundle carries and ``integration/python/ocr.py``."""
    from .integration import INTEGRATION_DIR, _env
    from .light import requirements, write_light_runtime
    from .ocr_app import write_ocr_app_code
    from .ocr_web import write_ocr_web

    out = tmp / INTEGRATION_DIR / "python"
    out.mkdir(parents=True, exist_ok=True)
    env = _env()
    ctx = {"edgeship_version": __version__, "bundle_name": doc["name"], "version": doc["version"]}
    (out / "ocr.py").write_text(env.get_template("ocr.py.j2").render(ctx), encoding="utf-8")
    write_light_runtime(out)
    (out / "requirements.txt").write_text(env.get_template("requirements.txt.j2").render(
        ctx, requirements=requirements(doc), script="ocr.py"), encoding="utf-8")
    write_ocr_web(tmp, pdoc, doc)
    write_ocr_app_code(tmp, pdoc, doc)
