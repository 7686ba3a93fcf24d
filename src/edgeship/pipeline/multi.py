"""``edgeship deploy pipeline.yaml``: several models and the glue between them, as one release.

1. **Real data.** Text pages are rendered (or read from the --calib / --eval image folders):
   calibration and evaluation pages from different seeds, never the same page. The original
   models run the whole pipeline on them (the glue of :mod:`edgeship.tasks.ocr`), which gives
   every stage its real inputs (pages for the detector, the crops the detector's boxes give for
   the direction classifier and the recogniser) and the fp32 pipeline's own reading of each
   evaluation page: the reference.
2. **Each model** goes through ``deploy`` like any model, into ``OUT/models/<stage>/``, with those
   inputs as its calibration and evaluation data and its task record: every target and precision,
   verified on its own real inputs (fp16/int8 against a loose per-model gate, cosine >=
   :data:`STAGE_MIN_COSINE`, unless --min-cosine is given: the whole's measure decides); a stage
   that fails keeps what the others built.
3. **The whole**: each artifact set (a target at one precision; a stage without that precision
   takes its fp32, said "mixed") reads the evaluation pages end to end, judged by the task's own
   measure against the fp32 pipeline: character error rate of the text, box IoU, lines missed.
   A set within ``--max-cer`` passes; when the all-int8 set does not, sets with one stage back at
   fp32 are tried (the mixed set that passes is kept).
4. **One release**: ``OUT/pipeline.json`` holds all of it; the signed bundle holds every stage's
   artifacts, the character list, pipeline.json and golden vectors for the whole pipeline
   (:mod:`edgeship.bundle.pipeline`).

The original models and the artifacts run in a limited child process (``--isolate``), as a
model file does in deploy.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._util import Progress, atomic_write_text, make_folder, noop_progress, share_text
from ..config import DeployConfig
from ..errors import EdgeshipError, InputError, UnsupportedError, UsageError
from ..reporting.pipeline import write_pipeline_report
from ..tasks import ocr
from ..tasks.spec import PipelineSpec, read_pipeline

__all__ = ["PipelineResult", "deploy_pipeline", "PIPELINE_RECORD", "reference_child", "fidelity_child"]

PIPELINE_RECORD = "pipeline.json"
SCHEMA = "edgeship.pipeline-run/1"
CALIB_PAGES, EVAL_PAGES = 12, 8
CALIB_SEED, EVAL_SEED = 1001, 2002  # different seeds: no page, no phrase list in common
MAX_REC_WIDTH = 1600
#: a stage's fp16/int8 gate on its own outputs, unless --min-cosine says otherwise: a proxy (a
#: detector's map at cosine 0.985 can give every box the fp32 map gives), so it only keeps out the
#: broken; the sets' character error rate against the fp32 pipeline (--max-cer) decides what ships
STAGE_MIN_COSINE = 0.9
#: options that describe one model; a pipeline file says them per stage
_PER_MODEL = ("input_shape", "input_value", "input_dtype", "input_range", "preprocess", "labels", "task_record", "weights")


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    out: Path
    record: dict[str, Any]

    @property
    def bundle(self) -> dict[str, Any] | None:
        return self.record.get("bundle")


def deploy_pipeline(cfg: DeployConfig, progress: Progress = noop_progress) -> PipelineResult:
    """Deploy every model of the pipeline file ``cfg.model``, judge each artifact set end to end
    and package one release (see the module's docstring)."""
    from .orchestration import deploy

    t0 = time.perf_counter()
    spec = read_pipeline(cfg.model)
    given = [k for k in _PER_MODEL if getattr(cfg, k, None) not in (None, [], ())]
    if given:
        raise UsageError(f"--{given[0].replace('_', '-')} describes one model; a pipeline file describes each of its "
                         "models", hint="put it under the stage in the pipeline file (models.<stage>.task), or "
                                        "deploy that model on its own")
    out = Path(cfg.out)
    make_folder(out, "output folder")
    record: dict[str, Any] = {"schema": SCHEMA, "pipeline": spec.record(), "max_cer": cfg.max_cer,
                              "stage_min_cosine": cfg.min_cosine if "min_cosine" in cfg.model_fields_set
                              else STAGE_MIN_COSINE, "stages": {}, "timings_s": {}}
    with tempfile.TemporaryDirectory(prefix="edgeship-pipeline-") as tmp:
        progress(f"{spec.name}: rendering text pages, running the original {'/'.join(s.name for s in spec.stages)} "
                 "models on them")
        t1 = time.perf_counter()
        ref = _call(cfg, "reference_child", {"spec": str(spec.path), "tmp": tmp, "calib": cfg.calib, "eval": cfg.eval},
                    str(spec.path))
        record["timings_s"]["reference"] = round(time.perf_counter() - t1, 3)
        record["data"] = ref["data"]
        record["characters"] = len(ref["characters"])
        for st in spec.stages:
            info = ref["stages"][st.name]
            options = {**cfg.model_dump(mode="json", exclude={"model", "out", "package", "release_version", "calib",
                                                              "eval", "dry_run"}),
                       "model": str(st.model), "out": str(out / "models" / st.name), "package": False,
                       "calib": info["calib"], "eval": info["eval"], "task_record": json.dumps(st.task.model_dump(mode="json")),
                       "input_shape": [f"{info['input']}={','.join(str(d) for d in info['shape'])}"]}
            if "min_cosine" not in cfg.model_fields_set:  # the pipeline's own measure decides what ships
                options["min_cosine"] = STAGE_MIN_COSINE
            t1 = time.perf_counter()
            say = _prefixed(progress, st.name)
            try:
                res = deploy(type(cfg).build(**options), progress=say)
                stage = {"ok": True, "out": f"models/{st.name}",
                         "artifacts": [a.root.name for a in res.artifacts], "failed": []}  # type: ignore[union-attr]
            except EdgeshipError as e:
                say(f"failed: {e.message}")
                stage = {"ok": False, "out": f"models/{st.name}", "error": e.to_dict(plain=True),
                         "artifacts": _written(out / "models" / st.name)}
                stage["failed"] = e.details.get("failed") or []
            stage["seconds"] = round(time.perf_counter() - t1, 3)
            record["stages"][st.name] = stage
        broken = [n for n in ("det", "rec") if not record["stages"].get(n, {}).get("artifacts")]
        if broken:
            atomic_write_text(out / PIPELINE_RECORD, json.dumps(record, indent=1) + "\n")
            write_pipeline_report(out, record)
            err = record["stages"][broken[0]].get("error") or {}
            raise UnsupportedError(f"the pipeline cannot run: its {broken[0]} model has no artifact "
                                   f"({err.get('message', 'none was built')})",
                                   hint=err.get("hint") or "see the stage's output folder "
                                                           f"{out / 'models' / broken[0]}",
                                   stages=record["stages"])
        progress(f"{spec.name}: reading the evaluation pages with each artifact set, end to end")
        t1 = time.perf_counter()
        fid = _call(cfg, "fidelity_child", {"spec": str(spec.path), "out": str(out), "stages": record["stages"],
                                             "pages": ref["eval_pages"], "reference": ref["reference"],
                                             "truth": ref["truth"], "characters": ref["characters"],
                                             "max_cer": cfg.max_cer}, str(out),
                    targets=tuple({a.rsplit("-", 1)[0] for s in record["stages"].values() for a in s["artifacts"]}))
        record["timings_s"]["fidelity"] = round(time.perf_counter() - t1, 3)
        record["reference"] = fid["reference"]
        record["sets"] = fid["sets"]
        for s in fid["sets"]:
            progress(f"  {s['id']:<22} CER {_pct(s.get('cer'))} vs fp32, box IoU {s.get('iou_mean', 0):.3f}, "
                     f"{'within' if s.get('passed') else 'OVER'} the budget" if "error" not in s else
                     f"  {s['id']:<22} did not run: {s['error']}")
        record["timings_s"]["total"] = round(time.perf_counter() - t0, 3)
        atomic_write_text(out / PIPELINE_RECORD, json.dumps(record, indent=1) + "\n")
        if cfg.package:
            from ..bundle.pipeline import package_pipeline

            progress(f"{spec.name}: packaging a signed release bundle")
            t1 = time.perf_counter()
            record["bundle"] = package_pipeline(out, record, spec, characters=ref["characters"],
                                                pages=ref["golden_pages"], stage_inputs=ref["stages"],
                                                version=cfg.release_version,
                                                sign_key=cfg.sign_key, progress=progress)
            record["timings_s"]["package"] = round(time.perf_counter() - t1, 3)
        record["timings_s"]["total"] = round(time.perf_counter() - t0, 3)
        atomic_write_text(out / PIPELINE_RECORD, json.dumps(record, indent=1) + "\n")
        progress(f"{spec.name}: writing report.html")
        write_pipeline_report(out, record)
    return PipelineResult(out=out, record=record)


def _pct(v: Any) -> str:
    return share_text(v, 2) if isinstance(v, (int, float)) else "-"


def _prefixed(progress: Progress, name: str) -> Progress:
    return lambda m: progress(f"[{name}] {m}")


def _written(folder: Path) -> list[str]:
    from ..manifest import load_manifest

    try:
        m = load_manifest(folder)
    except EdgeshipError:
        return []
    return [str(r.get("id") or r.get("path")) for r in (m.records if m else [])]


def _call(cfg: DeployConfig, fn: str, kwargs: dict[str, Any], what: str, targets: tuple[str, ...] = ()) -> Any:
    """``fn`` of this module in the limited child (``--isolate``; limited as a child running
    ``targets``' artifacts is: the browser's by its data segment), else here."""
    if cfg.isolate:
        from ..isolate import run_isolated
        from .build import limits_for_targets

        return run_isolated(f"edgeship.pipeline.multi:{fn}", kwargs, what=what, limits=limits_for_targets(targets))
    return globals()[fn](**kwargs)


# ---------------------------------------------------------------- the original pipeline (child)
def _source_model(path: Path) -> tuple[Any, str, dict[str, str]]:
    """(a model callable, its input's name, its metadata) for an original ONNX model file."""
    from ..formats.onnx import ort_session
    from ..readers.onnx import parse_onnx

    if path.suffix.lower() != ".onnx":
        raise UnsupportedError(f"{path}: a pipeline's models are ONNX files for now",
                               hint="export the model to ONNX first (edgeship deploy MODEL --targets onnx)")
    model = parse_onnx(path, "pipeline model")  # the one ONNX reader: a malformed file is named
    meta = {p.key: p.value for p in model.metadata_props}
    graph_inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(graph_inputs) != 1:
        raise UnsupportedError(f"{path}: a pipeline stage takes one image input; this model takes "
                               f"{len(graph_inputs)} ({', '.join(graph_inputs)})")
    sess = ort_session(path, threads=1)
    name = graph_inputs[0]
    return (lambda x: sess.run(None, {name: x})[0]), name, meta


def _characters(spec: PipelineSpec, meta: dict[str, str]) -> list[str]:
    from ..readers import read_text

    rec = spec.stage("rec")
    assert rec is not None
    if rec.characters is not None:
        text = read_text(rec.characters, "character list")
    elif "character" in meta:
        text = meta["character"]
    else:
        raise InputError(f"{rec.model}: no character list: the model's metadata has no 'character' entry",
                         hint="give the recogniser's character list in the pipeline file: models.rec.characters: FILE")
    chars = text.splitlines()
    if not chars or len(chars) > 100000:
        raise InputError(f"{rec.model}: the character list holds {len(chars)} entries")
    return chars


def _pages(spec_folder: str | None, n: int, seed: int, what: str) -> tuple[list[np.ndarray], list[list[str]] | None, str]:
    from ..data import load_image
    from ..tasks.pages import text_lines, text_pages

    if spec_folder is None:  # pages, and single lines cut close (a detector scales those up)
        made = text_pages(n, seed) + text_lines(max(1, n // 2), seed + 1)
        return ([p for p, _ in made], [t for _, t in made],
                f"{n} rendered text pages and {max(1, n // 2)} single lines (seed {seed})")
    folder = Path(spec_folder)
    if not folder.is_dir():
        raise UsageError(f"--{what} {folder}: a pipeline takes a folder of images (pages)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
    if not files:
        raise InputError(f"--{what} {folder} holds no .png/.jpg image")
    return [load_image(p) for p in files[:64]], None, f"{len(files[:64])} images from {folder}"


class _Recorder:
    """A model callable that keeps every batch it is given."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.batches = fn, []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(x)
        return self.fn(x)


def _stages(spec: PipelineSpec, models: dict[str, Any], characters: list[str]) -> ocr.Stages:
    return ocr.Stages(det=models["det"], rec=models["rec"], cls=models.get("cls"),
                      det_task=spec.stage("det").task, rec_task=spec.stage("rec").task,  # type: ignore[union-attr]
                      cls_task=spec.stage("cls").task if spec.stage("cls") else None,
                      characters=ocr.read_characters("\n".join(characters)))


def _rows(batches: list[np.ndarray], width: int | None = None) -> np.ndarray:
    """Every row of the batches, zero-padded on the right to the widest (or ``width``)."""
    rows = [b[i] for b in batches for i in range(len(b))]
    w = width or max(r.shape[-1] for r in rows)
    out = np.zeros((len(rows), *rows[0].shape[:-1], w), np.float32)
    for i, r in enumerate(rows):
        out[i, ..., :min(w, r.shape[-1])] = r[..., :w]
    return out


def reference_child(spec: str, tmp: str, calib: str | None, eval: str | None) -> dict[str, Any]:  # noqa: A002
    """The original models on the calibration and evaluation pages: each stage's inputs as .npz
    files in ``tmp`` and the fp32 pipeline's reading of the evaluation pages."""
    sp = read_pipeline(spec)
    models, names, metas = {}, {}, {}
    for st in sp.stages:
        models[st.name], names[st.name], metas[st.name] = _source_model(st.model)
    characters = _characters(sp, metas["rec"])
    calib_pages, _, calib_what = _pages(calib, CALIB_PAGES, CALIB_SEED, "calib")
    eval_pages, truth, eval_what = _pages(eval, EVAL_PAGES, EVAL_SEED, "eval")
    data: dict[str, Any] = {"calibration": calib_what, "evaluation": eval_what}
    result: dict[str, Any] = {"stages": {}, "characters": characters}
    tmpd = Path(tmp)
    for split, pages in (("calib", calib_pages), ("eval", eval_pages)):
        rec = {n: _Recorder(m) for n, m in models.items()}
        readings = [ocr.read_page(p, _stages(sp, rec, characters)) for p in pages]
        if split == "eval":
            result["reference"] = [r.to_dict() for r in readings]
        for st in sp.stages:
            batches = rec[st.name].batches
            if not batches:
                raise InputError(f"the {split} pages gave the {st.name} model nothing to read (no text was detected)",
                                 hint="give pages with text (--calib/--eval FOLDER of images)")
            if st.name == "det":  # pages of one size give inputs of one shape: keep the most common
                shapes = [b.shape for b in batches]
                common = max(set(shapes), key=shapes.count)
                arr = np.concatenate([b for b in batches if b.shape == common])
            else:
                width = None if st.name == "rec" else st.task.width
                arr = _rows(batches, width)
                if st.name == "rec" and arr.shape[-1] > MAX_REC_WIDTH:
                    arr = arr[..., :MAX_REC_WIDTH]
            path = tmpd / f"{st.name}-{split}.npz"
            np.savez(path, **{names[st.name]: arr})
            info = result["stages"].setdefault(st.name, {"input": names[st.name]})
            info[split] = str(path)
            info[f"{split}_samples"] = int(arr.shape[0])
            if split == "eval":
                info["shape"] = [1, *arr.shape[1:]]
    data["samples"] = {n: {"calibration": i["calib_samples"], "evaluation": i["eval_samples"]}
                       for n, i in result["stages"].items()}
    pages_file = tmpd / "eval-pages.npz"
    np.savez(pages_file, *eval_pages)
    result["eval_pages"] = str(pages_file)
    result["truth"] = truth
    result["data"] = data
    result["golden_pages"] = str(pages_file)
    return result


# ---------------------------------------------------------------- the whole, end to end (child)
def _runner(folder: Path) -> Any:
    from ..targets import load_artifact, runner_for

    art = load_artifact(folder)
    r = runner_for(art, threads=1)
    return r, (lambda x: r.run([x])[0])


def _measure(reference: list[dict[str, Any]], got: list[dict[str, Any]]) -> dict[str, Any]:
    """CER of ``got``'s lines against the reference's (matched by box), box IoU, lines missed."""
    edits = chars = missed = extra = 0
    ious = []
    for ref, g in zip(reference, got):
        r_lines, g_lines = ref["lines"], g["lines"]
        for i, j, iou in ocr.match_lines(r_lines, g_lines):
            rt = r_lines[i]["text"] if i is not None else ""
            gt = g_lines[j]["text"] if j is not None else ""
            chars += len(rt)
            edits += ocr.edits(rt, gt)
            if i is None:
                extra += 1
            elif j is None:
                missed += 1
            else:
                ious.append(iou)
    return {"cer": edits / chars if chars else float(edits > 0), "edits": edits, "chars": chars,
            "iou_mean": float(np.mean(ious)) if ious else 0.0, "iou_min": float(np.min(ious)) if ious else 0.0,
            "lines": sum(len(r["lines"]) for r in reference), "missed": missed, "extra": extra}


def _truth_cer(truth: list[list[str]] | None, got: list[dict[str, Any]]) -> float | None:
    if truth is None:
        return None
    edits = chars = 0
    for t, g in zip(truth, got):
        want = "\n".join(t)
        edits += ocr.edits(want, "\n".join(ln["text"] for ln in g["lines"]))
        chars += len(want)
    return edits / chars if chars else None


def _artifact_sets(out: Path, stages: dict[str, Any]) -> list[dict[str, Any]]:
    """Per target and precision, which artifact serves each stage: that precision where the stage
    has it, else its fp32 ("mixed")."""
    have = {n: set(s.get("artifacts") or []) for n, s in stages.items()}
    targets = sorted({a.rsplit("-", 1)[0] for a in have.get("det", set())})
    sets = []
    for t in targets:
        precisions = sorted({a.rsplit("-", 1)[1] for ids in have.values() for a in ids if a.rsplit("-", 1)[0] == t},
                            key=lambda p: (p != "fp32", p))
        for p in precisions:
            pick = {}
            for n, ids in have.items():
                pick[n] = f"{t}-{p}" if f"{t}-{p}" in ids else f"{t}-fp32" if f"{t}-fp32" in ids else None
            if any(v is None for v in pick.values()):
                continue
            mixed = len({v.rsplit("-", 1)[1] for v in pick.values()}) > 1
            sets.append({"id": f"{t}-{p}" + ("-mixed" if mixed else ""), "target": t, "precision": p,
                         "mixed": mixed, "artifacts": pick})
    return sets


def fidelity_child(spec: str, out: str, stages: dict[str, Any], pages: str, reference: list[dict[str, Any]],
                   truth: list[list[str]] | None, characters: list[str], max_cer: float) -> dict[str, Any]:
    """Each artifact set read the evaluation pages end to end; its figures against the fp32
    pipeline of the original models (``reference``)."""
    sp = read_pipeline(spec)
    outp = Path(out)
    with np.load(pages) as z:
        imgs = [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]
    sets = _artifact_sets(outp, stages)
    results = []
    tried: set[tuple[tuple[str, str], ...]] = set()

    def run_set(s: dict[str, Any]) -> dict[str, Any]:
        key = tuple(sorted(s["artifacts"].items()))
        tried.add(key)
        runners, models = [], {}
        try:
            for n, aid in s["artifacts"].items():
                r, fn = _runner(outp / stages[n]["out"] / aid)
                runners.append(r)
                models[n] = fn
            t = time.perf_counter()
            got = [ocr.read_page(p, _stages(sp, models, characters)).to_dict() for p in imgs]
            secs = (time.perf_counter() - t) / max(1, len(imgs))
        except (EdgeshipError, ValueError, RuntimeError) as e:
            return {**s, "error": str(getattr(e, "message", e))[:300], "passed": False}
        finally:
            for r in runners:
                r.close()
        m = _measure(reference, got)
        return {**s, **m, "truth_cer": _truth_cer(truth, got), "seconds_per_page": round(secs, 4),
                "passed": m["cer"] <= max_cer and m["missed"] + m["extra"] <= max(1, m["lines"] // 20)}

    for s in sets:
        results.append(run_set(s))
    # a set over the budget: stages back at fp32 one at a time, the one that helps most first,
    # until the set passes (a mixed set) or every stage is back
    for s in [r for r in results if not r["passed"] and r["precision"] != "fp32" and "error" not in r]:
        current = s
        while not current["passed"]:
            fp32 = f"{s['target']}-fp32"
            options = []
            for n in current["artifacts"]:
                alt = dict(current["artifacts"])
                if alt[n] == fp32 or fp32 not in (stages[n].get("artifacts") or []):
                    continue
                alt[n] = fp32
                if tuple(sorted(alt.items())) in tried or all(v == fp32 for v in alt.values()):
                    continue
                back = "+".join(sorted(k for k, v in alt.items() if v == fp32))
                options.append(run_set({"id": f"{s['target']}-{s['precision']}-{back}-fp32", "target": s["target"],
                                        "precision": s["precision"], "mixed": True, "artifacts": alt}))
            if not options:
                break
            results.extend(options)
            current = min(options, key=lambda r: (not r["passed"], r.get("cer", 1.0)))
    return {"reference": {"pages": len(imgs), "lines": sum(len(r["lines"]) for r in reference),
                          "truth_cer": _truth_cer(truth, reference)},
            "sets": results}
