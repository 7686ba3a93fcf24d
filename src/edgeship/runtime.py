"""The classifier runtime: what the seed's Android/iOS classifier does, in Python.

``Classifier(artifact).classify(image)`` preprocesses exactly as the artifact says (resize the
shorter side, centre crop, normalise, layout), runs the artifact on its own runtime and returns
the top labels with their confidence.

``Classifier.from_bundle(folder)`` degrades gracefully along a release bundle's fallback order:
an artifact that fails to load here, or fails its golden vectors, is skipped and the next one
serves; ``served_by`` and ``skipped`` say which served and why the ones before it did not.

This is what a device runs, so it stays light: an ONNX or ORT artifact folder is opened by reading
its artifact.json with ``json`` and its model with ONNX Runtime directly (numpy, Pillow and
onnxruntime; not pydantic, the target registry or a converter). Any other format, a bare model
file or a record this reader does not take goes through the full loader
(:func:`edgeship.load_artifact`), which also names what is wrong with it.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .data import load_image, preprocess_image
from .errors import EdgeshipError, FormatError, UnsupportedError, UsageError
from .fidelity import cosine_sqnr, softmax

if TYPE_CHECKING:
    from .artifact import Artifact

__all__ = ["Classifier", "Pipeline", "Prediction", "check_golden"]

GOLDEN_JSON = "golden/golden.json"
#: formats whose runner the light path opens itself (the .ort format is read by the same session)
LIGHT_FORMATS = ("onnx", "ort")
_PRE_CHOICES = {"layout": ("NCHW", "NHWC"), "color": ("RGB", "BGR"), "resample": ("bilinear", "bicubic", "nearest"),
                "dtype": ("float32", "uint8"), "output": ("logits", "probabilities")}
_MAX_RECORD = 16 << 20


class Prediction(NamedTuple):
    label: str
    confidence: float


def _light_preprocess(d: Any) -> SimpleNamespace | None:
    """The image preprocessing of an artifact record, when every field is there and sane; None
    sends the caller to the full loader (which validates it and names what is wrong)."""
    if not isinstance(d, dict) or d.get("kind") != "image" or not isinstance(d.get("input"), str):
        return None
    try:
        if any(d[k] not in choices for k, choices in _PRE_CHOICES.items()):
            return None
        h, w, cf = d["height"], d["width"], d["crop_fraction"]
        mean, std = tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"])
    except (KeyError, TypeError, ValueError):
        return None
    if not all(type(v) is int and 0 < v <= 16384 for v in (h, w)) or not isinstance(cf, (int, float)) or not 0 < cf <= 1:
        return None
    if len(mean) != 3 or len(std) != 3 or not all(np.isfinite(mean)) or not all(np.isfinite(std)) or 0.0 in std:
        return None
    return SimpleNamespace(**{**d, "mean": mean, "std": std, "crop_fraction": float(cf)})


def _light_open(path: Path, threads: int) -> tuple[Any, SimpleNamespace, tuple[str, ...] | None, list[str]] | None:
    """(runner, preprocessing, labels, input names) for an ONNX/ORT artifact folder whose record
    this reader takes, else None."""
    from ._util import confined
    from .readers import read_json, read_text

    meta = path / "artifact.json"
    try:
        if not path.is_dir():
            return None
        data = read_json(meta, "artifact record", max_bytes=_MAX_RECORD, links=False)
    except EdgeshipError:
        return None  # the full reader says what is wrong with it
    if not isinstance(data, dict) or data.get("format") not in LIGHT_FORMATS or not isinstance(data.get("model_file"), str):
        return None
    pre = _light_preprocess(data.get("preprocess"))
    inputs = data.get("inputs")
    if pre is None or not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        return None
    names = [i.get("name") for i in inputs]
    if names != [pre.input]:  # one image input: the full path says what else a model takes
        return None
    config = (data.get("details") or {}).get("session_config") if isinstance(data.get("details"), dict) else None
    if config is not None and not (isinstance(config, dict) and all(isinstance(v, str) for v in config.values())):
        return None
    from .formats.onnx import OnnxRunner

    model = confined(path, data["model_file"], f"{meta}: model_file")
    runner = OnnxRunner(model, threads=threads, session_config=config)
    labels_path = path / "labels.txt"
    labels = (tuple(read_text(labels_path, "labels file", links=False).splitlines())
              if labels_path.exists() or labels_path.is_symlink() else None)
    return runner, pre, labels, names


class Classifier:
    def __init__(self, artifact: Artifact | str | Path, threads: int = 1) -> None:
        self._artifact: Artifact | None = None
        light = _light_open(Path(artifact), threads) if isinstance(artifact, (str, Path)) else None
        if light is not None:
            self.runner, self.preprocess, self.labels, self._names = light
            self._root = Path(artifact)
            self._prepared = True
        else:
            from .targets import load_artifact, runner_for

            self._artifact = artifact if not isinstance(artifact, (str, Path)) else load_artifact(artifact)
            self._root = self._artifact.root
            if self._artifact.preprocess is None:
                raise UnsupportedError(f"{self._artifact.name} has no image preprocessing recorded",
                                       hint="for an image classifier, state it: --preprocess 'mean=127,std=128' "
                                            "(and --labels labels.txt); for other models use the Runner API")
            self.preprocess = self._artifact.preprocess
            self.runner = runner_for(self._artifact, threads=threads)
            self.labels = self._artifact.labels
            self._names = [s.name for s in self.runner.inputs]
            self._prepared = False
        self.served_by: str = self._root.name
        self.skipped: list[dict[str, str]] = []

    @property
    def artifact(self) -> Artifact:
        """The artifact's full record (read on first use by the light path)."""
        if self._artifact is None:
            from .targets import load_artifact

            self._artifact = load_artifact(self._root)
        return self._artifact

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The model on inputs given in its own order, shapes and dtypes (golden vectors)."""
        if self._prepared:
            if len(inputs) != len(self._names):
                raise UsageError(f"the model takes {len(self._names)} inputs, got {len(inputs)}")
            return self.runner.run_prepared(dict(zip(self._names, inputs)))
        return self.runner.run(inputs)

    @classmethod
    def from_bundle(cls, folder: str | Path, threads: int = 1) -> Classifier:
        """The first artifact of a bundle's fallback order that loads here and passes its golden
        vectors (verify the bundle's signature first: ``edgeship verify``); UnsupportedError
        naming every artifact's reason when none does."""

        from .readers import read_json

        folder = Path(folder)
        doc = read_json(folder / "bundle.json", "release bundle record", links=False,
                        hint="give a bundle folder written by edgeship package")
        if isinstance(doc, dict) and doc.get("pipeline"):
            raise UnsupportedError(f"{folder} holds a pipeline ({doc.get('task')}), not one classifier",
                                   hint="read it with edgeship ocr BUNDLE IMAGE, or Pipeline.from_bundle in Python")
        try:
            order = doc["fallback_order"]
            if not isinstance(order, list):
                raise TypeError("fallback_order is not a list")
        except (KeyError, TypeError) as e:
            raise FormatError(f"{folder} is not a readable release bundle: {str(e)[:200]}",
                              hint="give a folder written by edgeship package (or extract its .tar.gz)") from None
        skipped: list[dict[str, str]] = []
        for aid in order:
            from ._util import confined

            try:
                clf = cls(confined(folder, f"artifacts/{aid}", f"{folder / 'bundle.json'}: an artifact"), threads=threads)
                golden = check_golden(folder, str(aid), clf.run)
            except EdgeshipError as e:
                skipped.append({"artifact": str(aid), "reason": f"does not load here: {e.message}"})
                continue
            except ImportError as e:  # its runtime is not installed here (or does not load): the next one serves
                skipped.append({"artifact": str(aid), "reason": f"its runtime does not import here: {e}"})
                continue
            if golden["passed"] is False:
                clf.runner.close()
                skipped.append({"artifact": str(aid), "reason": "fails its golden vectors: " + "; ".join(golden["failures"][:3])})
                continue
            clf.skipped = skipped
            return clf
        raise UnsupportedError(f"no artifact of {folder} serves here: "
                               + "; ".join(f"{s['artifact']} {s['reason']}" for s in skipped),
                               hint="check the bundle with edgeship verify; install the runtime of one of them "
                                    "(edgeship targets), or package another target",
                               skipped=skipped)

    @classmethod
    def from_agent_state(cls, state: str | Path, threads: int = 1) -> Classifier:
        """The release an update agent (``edgeship agent``) has active in ``state``; a committed
        switch to another release is picked up on the next call, without a restart."""
        bundle, stamp = _agent_bundle(Path(state))
        clf = cls.from_bundle(bundle, threads=threads)
        clf._agent = (Path(state), stamp, threads)
        return clf

    def _follow(self) -> None:
        state, stamp, threads = self._agent
        try:
            now = (state / AGENT_CURRENT).stat().st_mtime_ns
        except OSError:
            return
        if now == stamp:
            return
        bundle, now = _agent_bundle(state)
        new = Classifier.from_bundle(bundle, threads=threads)
        self.runner.close()
        self.__dict__.update(new.__dict__)
        self._agent = (state, now, threads)

    def scores(self, image: Any) -> np.ndarray:
        """Class probabilities for one image."""
        if getattr(self, "_agent", None) is not None:
            self._follow()
        x = preprocess_image(image, self.preprocess)
        feeds = {self.preprocess.input: x}
        for name in self._names:
            if name not in feeds:
                raise UnsupportedError(f"the model takes more inputs than the image ({name})",
                                       hint="use the Runner API for multi-input models")
        out = (self.runner.run_prepared(feeds) if self._prepared else self.runner.run(feeds))[0].reshape(-1)
        return out if self.preprocess.output == "probabilities" else softmax(out.astype(np.float64))

    def classify(self, image: Any, top_k: int = 3, threshold: float = 0.1) -> list[Prediction]:
        """The top_k labels with confidence >= threshold, most confident first."""
        if top_k < 1:
            raise UsageError("top_k must be at least 1")
        if not 0.0 <= threshold <= 1.0:
            raise UsageError("threshold must be between 0 and 1")
        p = self.scores(image)
        order = np.argsort(-p, kind="stable")[:top_k]
        labels = self.labels or tuple(str(i) for i in range(p.size))
        return [Prediction(labels[i] if i < len(labels) else str(i), float(p[i])) for i in order if p[i] >= threshold]


AGENT_CURRENT = "current.json"  # edgeship.updates.agent writes it: the committed release and its slot


def _agent_bundle(state: Path) -> tuple[Path, int]:
    """The bundle folder an agent state serves (the committed release; during a trial switch, the
    one before it) and the switch file's mtime."""
    from ._util import confined
    from .readers import read_json

    path = state / AGENT_CURRENT
    try:
        stamp = path.stat().st_mtime_ns
        cur = read_json(path, "agent state", max_bytes=1 << 20, links=False)
        if cur.get("state") != "committed":
            cur = cur.get("previous") or {}
        return confined(state, str(cur["bundle"]), f"{path}: bundle"), stamp
    except (OSError, EdgeshipError, KeyError, TypeError, AttributeError):
        raise UnsupportedError(f"{state} has no installed release yet",
                               hint="run edgeship agent --state DIR --server URL --once first") from None


def _golden_tensor(root: Path, rel: str) -> np.ndarray:
    from ._util import confined
    from .readers import read_bytes
    from .readers.arrays import ARRAY_LIMIT, parse_npy

    path = confined(root, rel, f"{root / GOLDEN_JSON}: a tensor path")
    return parse_npy(read_bytes(path, "golden tensor", max_bytes=ARRAY_LIMIT, links=False), f"golden tensor {path}",
                     scalar=True)


def check_golden(root: Path, artifact_id: str, run: Any, stream: Any = None, tokenize: Any = None) -> dict[str, Any]:
    """Run ``run`` (an artifact's ``runner.run``) on the bundle's golden inputs for ``artifact_id``
    and compare with the expected outputs under their tolerance:
    ``{"passed": bool | None, "checked", "failures": [...]}`` (``passed`` None: the bundle has no
    golden vectors for it, and says why in ``skipped``). A stream's golden vectors are audio: its
    ``stream`` (a :class:`Stream` on the artifact) runs them, probabilities and the chunks' speech
    decisions compared; an embedding's carry their sentences: ``tokenize`` (texts -> the model's
    inputs) must give the golden inputs exactly."""

    from .readers import read_json

    root = Path(root)
    doc = read_json(root / GOLDEN_JSON, "golden vectors record", links=False, hint="package the output folder again")
    try:
        rec = doc["artifacts"][artifact_id]
    except (KeyError, TypeError) as e:
        raise FormatError(f"{root / GOLDEN_JSON} has no golden vectors for {artifact_id}: {str(e)[:120]}",
                          hint="package the output folder again") from None
    if "skipped" in rec:
        return {"passed": None, "checked": 0, "failures": [], "skipped": rec["skipped"]}
    tol = rec.get("tolerance") or {}
    failures = []
    if "stream" in rec:
        return _check_stream(root, rec, stream)
    for name, text in (rec.get("texts") or {}).items():
        if tokenize is None:
            break
        made = tokenize([str(text)])
        want = [_golden_tensor(root, f) for f in (rec.get("inputs") or {}).get(name, [])]
        if len(made) != len(want) or not all(np.array_equal(np.asarray(m), w) for m, w in zip(made, want)):
            failures.append(f"{name}: the tokenizer gives other inputs than the golden ones for {str(text)[:40]!r}")
    for name, files in (rec.get("inputs") or {}).items():
        got = run([_golden_tensor(root, f) for f in files])
        want = [_golden_tensor(root, f) for f in rec["outputs"][name]]
        for k, (g, e) in enumerate(zip(got, want)):
            g, e = np.asarray(g, np.float64), np.asarray(e, np.float64)
            if g.shape != e.shape:
                failures.append(f"{name} output {k}: shape {g.shape}, expected {e.shape}")
                continue
            cos, _ = cosine_sqnr(e, g)
            if cos < tol.get("cosine_min", 0.99):
                failures.append(f"{name} output {k}: cosine {cos:.5f} < {tol['cosine_min']}")
            rel = tol.get("max_abs_rel_to_scale")
            scale = float(np.abs(e).max()) or 1.0
            if rel is not None and float(np.abs(g - e).max()) > rel * scale:
                failures.append(f"{name} output {k}: max abs {float(np.abs(g - e).max()):.3g} > {rel:g} x {scale:.3g}")
            if tol.get("top1") and k == 0 and g.ndim == 2 and int(g.argmax(1)[0]) != int(e.argmax(1)[0]):
                failures.append(f"{name}: top-1 class {int(g.argmax(1)[0])}, expected {int(e.argmax(1)[0])}")
    return {"passed": not failures, "checked": len(rec.get("inputs") or {}), "failures": failures}


def _check_stream(root: Path, rec: dict[str, Any], stream: Any) -> dict[str, Any]:
    from .tasks.vad import chunk_flags

    if stream is None:
        raise UsageError("a stream's golden vectors need the stream to run them (Stream.from_bundle checks them)")
    tol = rec.get("tolerance") or {}
    audio = _golden_tensor(root, rec["stream"]["audio"]).astype(np.float32).reshape(-1)
    want = _golden_tensor(root, rec["probs"]).astype(np.float64).reshape(-1)
    probs, segments = stream.run(audio)
    stream.reset()
    failures = []
    if probs.shape != want.shape:
        return {"passed": False, "checked": 1, "failures": [f"{len(probs)} chunk probabilities, expected {len(want)}"]}
    worst = float(np.abs(probs - want).max()) if len(want) else 0.0
    if worst > float(tol.get("prob_max_abs", 0.02)):
        failures.append(f"max |p - expected p| {worst:.4f} > {tol.get('prob_max_abs', 0.02)}")
    expected = [tuple(x) for x in rec.get("segments") or []]
    n = len(want)
    agree = float(np.mean(chunk_flags(segments, n, stream.task) == chunk_flags(expected, n, stream.task))) if n else 1.0
    if agree < float(tol.get("flags_min", 0.98)):
        failures.append(f"speech decisions agree on {agree:.1%} of {n} chunks (needs {float(tol.get('flags_min', 0.98)):.0%})")
    return {"passed": not failures, "checked": 1, "failures": failures, "max_prob_diff": worst, "chunk_agreement": agree}


PIPELINE_JSON = "pipeline.json"
GOLDEN_PIPELINE = "golden/pipeline.json"


class _Model:
    """An artifact of any task, run with its inputs in order: an ONNX or ORT artifact opened here
    with ONNX Runtime (its session settings from artifact.json; its input names from the record,
    no pydantic), any other format by the full loader."""

    def __init__(self, path: Path, threads: int) -> None:
        from ._util import confined
        from .readers import read_json

        data = read_json(path / "artifact.json", "artifact record", max_bytes=_MAX_RECORD, links=False)
        details = data.get("details") if isinstance(data, dict) and isinstance(data.get("details"), dict) else {}
        config = details.get("session_config")
        inputs = data.get("inputs") if isinstance(data, dict) else None
        names = [i.get("name") for i in inputs] if isinstance(inputs, list) and all(isinstance(i, dict) for i in inputs) \
            else None
        if (isinstance(data, dict) and data.get("format") in LIGHT_FORMATS and isinstance(data.get("model_file"), str)
                and names and all(isinstance(n, str) for n in names)
                and (config is None or (isinstance(config, dict) and all(isinstance(v, str) for v in config.values())))):
            from .formats.onnx import OnnxRunner

            self.runner = OnnxRunner(confined(path, data["model_file"], f"{path}/artifact.json: model_file"),
                                     threads=threads, session_config=config)
            self._names: list[str] | None = names
        else:
            from .targets import load_artifact, runner_for

            self.runner, self._names = runner_for(load_artifact(path), threads=threads), None

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if self._names is None:
            return self.runner.run(inputs)
        if len(inputs) != len(self._names):
            raise UsageError(f"the model takes {len(self._names)} inputs, got {len(inputs)}")
        return self.runner.run_prepared(dict(zip(self._names, inputs)))

    def close(self) -> None:
        self.runner.close()


class Pipeline:
    """A release bundle's pipeline (``pipeline.json``: text detection, direction, recognition),
    on this device: the first artifact set of its ``set_order`` (each measured end to end when it
    was packaged) whose every artifact loads here and passes its golden vectors serves
    (``served_by`` {stage: artifact}; ``skipped`` names each artifact passed over, its stage and
    why), and the glue (:mod:`edgeship.tasks.ocr`) runs between them.

    ``Pipeline.from_bundle(folder).read(image)`` -> :class:`edgeship.tasks.ocr.OcrResult`: each text
    line's box (in the image's pixels), text and score."""

    def __init__(self, folder: Path, doc: dict[str, Any], runners: dict[str, Any], served_by: dict[str, str],
                 skipped: list[dict[str, str]], characters: tuple[str, ...]) -> None:
        self.folder, self.doc, self._runners = folder, doc, runners
        self.served_by, self.skipped, self.characters = served_by, skipped, characters
        self.kind = str(doc.get("kind"))

    @classmethod
    def from_bundle(cls, folder: str | Path, threads: int = 1, artifacts: dict[str, str] | None = None,
                    check: bool = True) -> Pipeline:
        """Open the pipeline of a bundle folder (verify its signature first: ``edgeship verify``).
        ``artifacts`` ({stage: id}) names which serves instead of the set order; ``check`` runs each
        artifact's golden vectors before it serves. When no set serves, an UnsupportedError names
        the stage and every artifact's reason."""
        from ._util import confined
        from .readers import read_json, read_text
        from .tasks.ocr import read_characters

        folder = Path(folder)
        doc = read_json(folder / PIPELINE_JSON, "pipeline record", links=False,
                        hint="give a pipeline bundle written by edgeship deploy PIPELINE.yaml")
        try:
            kind, stages, tasks = doc["kind"], list(doc["stages"]), dict(doc["tasks"])
            if kind != "ocr" or not {"det", "rec"} <= set(stages):
                raise ValueError(f"kind {kind!r} with stages {stages}")
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"{folder / PIPELINE_JSON} is not a pipeline record this runtime reads: {str(e)[:200]}",
                              hint="package it again with this edgeship") from None
        chars_file = str(tasks["rec"].get("characters") or "characters.txt")
        characters = read_characters(read_text(confined(folder, chars_file, f"{folder / PIPELINE_JSON}: characters"),
                                               "character list", links=False))
        if artifacts:
            sets = [dict(artifacts)]
        else:
            sets = [dict(x["artifacts"]) for x in doc.get("set_order") or [] if isinstance(x, dict)]
            if not sets:
                raise FormatError(f"{folder / PIPELINE_JSON} ships no artifact set", hint="package it again")
        opened: dict[str, Any] = {}
        skipped: list[dict[str, str]] = []
        failed: set[str] = set()
        runners: dict[str, Any] = {}

        def open_one(stage: str, aid: str) -> Any:
            if aid in opened or aid in failed:
                return opened.get(aid)
            reason = None
            try:
                r = _Model(confined(folder, f"artifacts/{aid}", f"{folder / PIPELINE_JSON}: an artifact"), threads)
            except EdgeshipError as e:
                reason = f"does not load here: {e.message}"
            except ImportError as e:
                reason = f"its runtime does not import here: {e}"
            else:
                golden = check_golden(folder, aid, r.run) if check else {"passed": True}
                if golden["passed"] is False:
                    r.close()
                    reason = "fails its golden vectors: " + "; ".join(golden["failures"][:3])
                else:
                    opened[aid] = r
                    return r
            failed.add(aid)
            skipped.append({"stage": stage, "artifact": aid, "reason": reason})
            return None

        try:
            for chosen in sets:
                if set(chosen) != set(stages) or not all(open_one(n, chosen[n]) for n in stages):
                    continue
                runners = {n: opened[chosen[n]] for n in stages}
                break
            else:
                stuck = next((n for n in stages if any(s["stage"] == n for s in skipped)), stages[0])
                why = "; ".join(f"{s['artifact']} {s['reason']}" for s in skipped) or "no set names every stage"
                raise UnsupportedError(f"no artifact set of {folder} serves here (the {stuck} stage: {why})",
                                       hint="check the bundle with edgeship verify; install the runtime of one of "
                                            "them, or package another target", skipped=skipped, stage=stuck)
        finally:
            for r in opened.values():
                if r not in runners.values():
                    r.close()
        served = {n: next(a for a, r in opened.items() if r is runners[n]) for n in stages}
        p = cls(folder, doc, runners, served, skipped, characters)
        p._tasks = tasks
        return p

    def _model(self, stage: str) -> Any:
        r = self._runners[stage]
        return lambda x: r.run([x])[0]

    def stages(self) -> Any:
        from .tasks.ocr import Stages

        return Stages(det=self._model("det"), rec=self._model("rec"),
                      cls=self._model("cls") if "cls" in self._runners else None,
                      det_task=self._tasks["det"], rec_task=self._tasks["rec"], cls_task=self._tasks.get("cls"),
                      characters=self.characters)

    def read(self, image: Any, trace: bool = False) -> Any:
        """Every text line of ``image`` (a path, encoded bytes, a PIL image or an RGB array)."""
        from .tasks.ocr import read_page

        return read_page(load_image(image), self.stages(), trace=trace)

    def check_golden(self) -> dict[str, Any]:
        """The bundle's golden pages through this pipeline: the text against the expected within
        the tolerance (exactly for fp32), boxes by IoU: ``{"passed", "checked", "failures"}``."""
        from ._util import confined
        from .readers import read_json
        from .tasks.ocr import edits, match_lines

        doc = read_json(self.folder / GOLDEN_PIPELINE, "pipeline golden vectors", links=False)
        tol = doc.get("tolerance") or {}
        key = ",".join(f"{n}={a}" for n, a in sorted(self.served_by.items()))  # bundle.pipeline.set_key
        own = (doc.get("sets") or {}).get(key)
        limit = float(tol.get("cer_same_set", 0.0)) if own is not None else float(tol.get("cer_max", 0.0))
        failures: list[str] = []
        images = doc.get("images") or []
        n_edits = n_chars = 0
        for k, im in enumerate(images):
            got = self.read(confined(self.folder, im["file"], f"{self.folder / GOLDEN_PIPELINE}: a page")).to_dict()
            want = own[k] if own is not None else im["expected"]["lines"]
            for i, j, iou in match_lines(want, got["lines"]):
                wt = want[i]["text"] if i is not None else ""
                gt = got["lines"][j]["text"] if j is not None else ""
                n_edits += edits(wt, gt)
                n_chars += len(wt)
                if i is not None and j is not None and iou < float(tol.get("iou_min", 0.5)):
                    failures.append(f"{im['name']}: box of {wt!r} IoU {iou:.2f}")
        if n_chars and n_edits / n_chars > limit:
            failures.append(f"{n_edits} character edits of {n_chars} on {len(images)} pages, against "
                            f"{'this set' if own is not None else 'the fp32 set'}'s reading "
                            f"(limit {100 * limit:.1f}%)")
        return {"passed": not failures, "checked": len(images), "failures": failures}

    def close(self) -> None:
        for r in self._runners.values():
            r.close()


def _bundle_doc(folder: Path) -> dict[str, Any]:
    from .readers import read_json

    doc = read_json(folder / "bundle.json", "release bundle record", links=False,
                    hint="give a bundle folder written by edgeship package")
    if not isinstance(doc, dict) or not isinstance(doc.get("fallback_order"), list) \
            or not isinstance(doc.get("artifacts"), list):
        raise FormatError(f"{folder} is not a readable release bundle (no fallback_order or artifacts list)",
                          hint="give a folder written by edgeship package (or extract its .tar.gz)")
    return doc


def _entry_specs(entry: dict[str, Any], key: str) -> list[dict[str, Any]]:
    specs = entry.get(key)
    if not isinstance(specs, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in specs):
        raise FormatError(f"bundle.json: artifact {entry.get('id')!r} has no readable {key} list")
    return specs


def _serving(folder: Path, kind: str, threads: int, check: Any) -> tuple[Any, dict[str, Any], list[dict[str, str]]]:
    """The first artifact of the bundle's fallback order whose task is ``kind`` that loads here and
    passes ``check(model, entry)`` (its golden vectors): (model, its bundle.json entry, skipped)."""
    from ._util import confined

    doc = _bundle_doc(folder)
    entries = {e.get("id"): e for e in doc["artifacts"] if isinstance(e, dict)}
    skipped: list[dict[str, str]] = []
    for aid in doc["fallback_order"]:
        entry = entries.get(aid)
        if not isinstance(entry, dict) or (entry.get("task") or {}).get("kind") != kind:
            skipped.append({"artifact": str(aid), "reason": f"not a {kind} artifact"})
            continue
        try:
            model = _Model(confined(folder, f"artifacts/{aid}", f"{folder / 'bundle.json'}: an artifact"), threads)
        except EdgeshipError as e:
            skipped.append({"artifact": str(aid), "reason": f"does not load here: {e.message}"})
            continue
        except ImportError as e:
            skipped.append({"artifact": str(aid), "reason": f"its runtime does not import here: {e}"})
            continue
        try:
            golden = check(model, entry)
        except EdgeshipError as e:
            golden = {"passed": False, "failures": [e.message]}
        if golden["passed"] is False:
            model.close()
            skipped.append({"artifact": str(aid), "reason": "fails its golden vectors: " + "; ".join(golden["failures"][:3])})
            continue
        return model, entry, skipped
    raise UnsupportedError(f"no {kind} artifact of {folder} serves here: "
                           + "; ".join(f"{s['artifact']} {s['reason']}" for s in skipped),
                           hint="check the bundle with edgeship verify; install the runtime of one of them", skipped=skipped)


class Stream:
    """A voice-activity stream on this device (:mod:`edgeship.tasks.vad`): feed samples of any
    length at the task's rate as they arrive; each complete chunk runs through the model with the
    state it carries from the call before; per-chunk speech probabilities come back, and the
    speech segments by the package's own hysteresis rule.

    ``Stream.from_bundle(folder)``: the first voice-activity artifact of the fallback order that
    loads here and passes its golden audio (``served_by``, ``skipped``). ``feed(samples)`` ->
    probabilities of the chunks it completed; ``finish()`` -> the last chunk's (zero-padded);
    ``segments()`` -> [(start, end)] in samples so far; ``reset()`` starts a new stream."""

    def __init__(self, model: Any, task: dict[str, Any], inputs: list[dict[str, Any]], outputs: list[str]) -> None:
        from .tasks.vad import Chunker, StreamRunner, params

        self._model, self.task, self._outputs = model, task, outputs
        self.params = params(task)
        self.sample_rate, self.chunk = int(self.params.sample_rate), int(self.params.chunk)
        names = [i["name"] for i in inputs]
        self._runner = StreamRunner(lambda feed: dict(zip(outputs, model.run([feed[n] for n in names]))), task, inputs)
        self._chunker = Chunker(task)
        self.probs: list[float] = []
        self.samples = 0
        self.served_by: str | None = None
        self.skipped: list[dict[str, str]] = []

    @classmethod
    def from_bundle(cls, folder: str | Path, threads: int = 1, check: bool = True) -> Stream:
        folder = Path(folder)

        def golden(model: Any, entry: dict[str, Any]) -> dict[str, Any]:
            if not check:
                return {"passed": True}
            s = cls(model, entry["task"], _entry_specs(entry, "inputs"), [o["name"] for o in _entry_specs(entry, "outputs")])
            return check_golden(folder, str(entry["id"]), model.run, stream=s)

        model, entry, skipped = _serving(folder, "voice_activity", threads, golden)
        s = cls(model, entry["task"], _entry_specs(entry, "inputs"), [o["name"] for o in _entry_specs(entry, "outputs")])
        s.served_by, s.skipped = str(entry["id"]), skipped
        return s

    def fork(self) -> Stream:
        """Another stream on the same model (its own state and chunker; the session shared): one
        per client of a server. Calls on one model must not overlap (the caller serialises them)."""
        s = Stream(self._model, self.task, self._runner.inputs, self._outputs)
        s.served_by, s.skipped = self.served_by, list(self.skipped)
        return s

    def reset(self) -> None:
        from .tasks.vad import Chunker

        self._runner.reset()
        self._chunker = Chunker(self.task)
        self.probs, self.samples = [], 0

    def feed(self, samples: Any) -> np.ndarray:
        """Run every chunk ``samples`` (mono float at ``sample_rate``, any length) completes."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.samples += len(x)
        got = [self._runner.step(row) for row in self._chunker.push(x)]
        self.probs += got
        return np.asarray(got, dtype=np.float64)

    def finish(self) -> np.ndarray:
        """The stream's end: its last, partial chunk (zero-padded), when there is one."""
        row = self._chunker.flush()
        got = [] if row is None else [self._runner.step(row)]
        self.probs += got
        return np.asarray(got, dtype=np.float64)

    def segments(self) -> list[tuple[int, int]]:
        """Speech segments [(start, end)] in samples over what was fed so far (the package's rule:
        a segment still open at the end runs to the last sample fed)."""
        from .tasks.vad import speech_segments

        return speech_segments(np.asarray(self.probs), self.task, self.samples)

    def run(self, audio: Any) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """A whole recording as a new stream: (probability per chunk, speech segments in samples)."""
        self.reset()
        self.feed(audio)
        self.finish()
        return np.asarray(self.probs, dtype=np.float64), self.segments()

    def close(self) -> None:
        self._model.close()


class Embedder:
    """Sentence embeddings on this device: the bundle's WordPiece tokenizer (``vocab.txt`` and the
    task's rules; :mod:`edgeship.tasks.text`), the model, L2-normalised rows (when the task says
    ``normalize``). ``Embedder.from_bundle(folder).embed(["a sentence", ...])`` -> float32 [N, D]."""

    def __init__(self, model: Any, task: dict[str, Any], vocabulary: list[str], inputs: list[dict[str, Any]]) -> None:
        from .tasks.text import WordPiece

        self._model, self.task = model, task
        self.tokenizer = WordPiece(vocabulary, task)
        self._names = [i["name"] for i in inputs]
        self.served_by: str | None = None
        self.skipped: list[dict[str, str]] = []

    @classmethod
    def from_bundle(cls, folder: str | Path, threads: int = 1, check: bool = True) -> Embedder:
        from ._util import confined
        from .readers import read_text
        from .tasks.text import read_vocabulary

        folder = Path(folder)
        vocab: dict[str, list[str]] = {}

        def vocabulary(entry: dict[str, Any]) -> list[str]:
            rel = str((entry.get("task") or {}).get("vocabulary") or "vocab.txt")
            if rel not in vocab:
                vocab[rel] = read_vocabulary(read_text(confined(folder, rel, f"{folder / 'bundle.json'}: vocabulary"),
                                                      "WordPiece vocabulary", links=False))
            return vocab[rel]

        def golden(model: Any, entry: dict[str, Any]) -> dict[str, Any]:
            if not check:
                return {"passed": True}
            e = cls(model, entry["task"], vocabulary(entry), _entry_specs(entry, "inputs"))
            return check_golden(folder, str(entry["id"]), model.run, tokenize=e.tokens)

        model, entry, skipped = _serving(folder, "embedding", threads, golden)
        e = cls(model, entry["task"], vocabulary(entry), _entry_specs(entry, "inputs"))
        e.served_by, e.skipped = str(entry["id"]), skipped
        return e

    def tokens(self, texts: list[str]) -> list[np.ndarray]:
        """The model's inputs for ``texts``, in its input order (ids, mask, types as it takes them)."""
        made = self.tokenizer.batch(list(texts))
        missing = [n for n in self._names if n not in made]
        if missing:
            raise UnsupportedError(f"the model takes {', '.join(missing)}, which the tokenizer does not make",
                                   hint="name them in the task record (ids_input, mask_input, type_input)")
        return [made[n] for n in self._names]

    def embed(self, texts: list[str] | str) -> np.ndarray:
        """One row per text, float32, L2-normalised when the task says so."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.zeros((0, 0), np.float32)
        feeds = self.tokens(texts)
        rows = [np.asarray(self._model.run([f[i:i + 1] for f in feeds])[0], np.float32).reshape(-1) for i in range(len(texts))]
        out = np.stack(rows)
        if self.task.get("normalize", True):
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32)

    def close(self) -> None:
        self._model.close()
