"""Golden vectors: a few real inputs and, per artifact, the outputs it must give on them.

A device that loaded a model checks it against these before serving (ExecuTorch's BundledProgram
does this for one format; a bundle does it for every artifact). Files, all inside the bundle:

``golden/golden.json`` (schema ``edgeship.golden/1``)::

    {"inputs": [{"name": "coffee", "origin": "..."}],
     "artifacts": {"onnx-int8": {"inputs": {"coffee": ["golden/t/<sha>.npy"]},
                                 "outputs": {"coffee": ["golden/t/<sha>.npy"]},
                                 "expected_from": "...", "tolerance": {...}}}}

Tensors are ``.npy`` files (numpy's format: a short text header, then the raw array; readable in
any language), named by their content's sha256 so a tensor two artifacts share is stored once.
Each artifact's inputs are given as that artifact takes them (uint8 pixels, NHWC, ...).

The expected outputs are the artifact's own, run here; an artifact whose runtime cannot run here
(Core ML off macOS) gets the outputs of the fp32 artifact that can, under a looser tolerance, and
says so. The tolerance allows what another CPU's kernels change (fp32: relative 1e-3 of the
output's scale; fp16 and int8: cosine) and, for class scores, the same top-1 class.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Artifact, Preprocess
from ..errors import EdgeshipError, ValidationError
from ..runtime import GOLDEN_JSON, Stream  # the device-side check, check_golden, lives with the runtime

SCHEMA = "edgeship.golden/1"
GOLDEN_DIR = "golden"
MAX_IMAGES = 3


def golden_inputs(source: dict[str, Any]) -> list[tuple[str, tuple[np.ndarray, ...]]]:
    """Real inputs for the source a manifest records (``source``: its record): the sample
    photos through its preprocessing for an image model, else seeded random inputs of its shapes
    (ids in ``input_ranges`` where recorded, else 0 or 1). No model is loaded."""
    from ..data import preprocess_image, sample_photos

    pre = source.get("preprocess")
    inputs = source.get("inputs") or []
    if pre and len(inputs) == 1:
        spec = Preprocess.model_validate(pre)
        photos = list(sample_photos().items())[:MAX_IMAGES]
        return [(name, (preprocess_image(img, spec),)) for name, img in photos]
    rng = np.random.default_rng(1234)
    ranges = source.get("input_ranges") or []
    out = []
    for k in range(2):
        sample = []
        for i, spec in enumerate(inputs):
            shape = [1 if j == 0 and not isinstance(d, int) else d if isinstance(d, int) else 8
                     for j, d in enumerate(spec.get("shape") or [])]
            dtype = np.dtype(str(spec.get("dtype") or "float32"))
            r = ranges[i] if i < len(ranges) else None
            if np.issubdtype(dtype, np.integer):
                lo, hi = (int(r[0]), int(r[1])) if r else (0, 2)
                sample.append(rng.integers(lo, hi, size=shape).astype(dtype))
            else:
                sample.append(rng.standard_normal(shape).astype(dtype))
        out.append((f"random-{k}", tuple(sample)))
    return out


def _tolerance(art: Artifact, classifier: bool, borrowed: bool) -> dict[str, Any]:
    exact = art.precision == "fp32" and not borrowed
    # fp32 from another runtime's outputs, and fp16: kernels round differently; int8/palettes: 0.99
    tol: dict[str, Any] = {"cosine_min": 0.9999 if exact else 0.999 if art.precision in ("fp32", "fp16") else 0.99}
    if exact:
        tol["max_abs_rel_to_scale"] = 1e-3  # |got - expected| <= 1e-3 * max|expected|, per output
    if classifier:
        tol["top1"] = True
    return tol


class GoldenWriter:
    """Collects tensors (deduplicated by content) and per-artifact records under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / GOLDEN_DIR / "t").mkdir(parents=True, exist_ok=True)
        self.doc: dict[str, Any] = {"schema": SCHEMA, "inputs": [], "artifacts": {}}

    def tensor(self, a: np.ndarray) -> str:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
        data = buf.getvalue()
        rel = f"{GOLDEN_DIR}/t/{hashlib.sha256(data).hexdigest()[:20]}.npy"
        path = self.root / rel
        if not path.exists():
            path.write_bytes(data)
        return rel

    def write(self) -> None:
        (self.root / GOLDEN_JSON).write_text(json.dumps(self.doc, indent=1) + "\n")


def write_golden(root: Path, source: dict[str, Any], artifacts: Sequence[Artifact], classifier: bool,
                 runner_for: Callable[[Artifact], Any], can_run: Callable[[Artifact], bool | str],
                 say: Callable[[str], None] = lambda _m: None,
                 samples: list[tuple[str, tuple[np.ndarray, ...]]] | None = None, origin: str | None = None,
                 writer: GoldenWriter | None = None) -> dict[str, Any]:
    """Write ``golden/`` for ``artifacts`` (already copied under ``root``); return golden.json.
    ``samples`` (named input tuples) and their ``origin`` replace the default inputs (a pipeline's
    stage: what the stage before it gave on real pages); ``writer`` adds to a golden.json that
    another call started (it is written each time)."""
    from ..verify import map_inputs

    w = writer or GoldenWriter(root)
    given = samples is not None
    samples = samples if samples is not None else golden_inputs(source)
    w.doc["inputs"] += [{"name": n, "origin": origin if given and origin else
                         "sample photo (skimage.data) through the model's preprocessing"
                         if source.get("preprocess") else "seeded random input"} for n, _ in samples]
    src_pre = Preprocess.model_validate(source["preprocess"]) if source.get("preprocess") else None
    names = [str(i.get("name")) for i in source.get("inputs") or []]
    outputs: dict[str, dict[str, list[np.ndarray]]] = {}
    skipped: dict[str, str] = {}
    for art in artifacts:  # the runnable ones first: the others borrow an fp32 artifact's outputs
        ok = can_run(art)
        if ok is not True:
            skipped[art.root.name] = str(ok)
            continue
        say(f"golden vectors: {art.root.name}")
        try:
            runner = runner_for(art)
        except EdgeshipError as e:  # its runtime does not start here: it borrows, like Core ML
            skipped[art.root.name] = e.message
            continue
        try:
            rec: dict[str, Any] = {"inputs": {}, "outputs": {}, "expected_from": f"{art.root.name} itself, run here"}
            outputs[art.root.name] = {}
            for name, sample in samples:
                feed = map_inputs(src_pre, names, art.preprocess, sample)
                got = runner.run(feed)
                outputs[art.root.name][name] = got
                rec["inputs"][name] = [w.tensor(x) for x in feed]
                rec["outputs"][name] = [w.tensor(np.asarray(g)) for g in got]
        except EdgeshipError as e:
            raise ValidationError(f"golden vectors: {art.root.name} failed to run on them: {e.message}",
                                  hint="the artifact does not run here; rebuild it") from None
        finally:
            runner.close()
        rec["tolerance"] = _tolerance(art, classifier, borrowed=False)
        w.doc["artifacts"][art.root.name] = rec
    for art in artifacts:
        if art.root.name not in skipped:
            continue
        donor = next((a for a in artifacts if a.precision == "fp32" and a.root.name in outputs), None)
        if donor is None:
            w.doc["artifacts"][art.root.name] = {"skipped": f"{skipped[art.root.name]}; no fp32 artifact of the "
                                                            "bundle runs here to give its expected outputs"}
            continue
        rec = {"inputs": {}, "outputs": {}, "expected_from": f"{donor.root.name} (this artifact cannot run here: "
                                                              f"{skipped[art.root.name]})"}
        for name, sample in samples:
            rec["inputs"][name] = [w.tensor(x) for x in map_inputs(src_pre, names, art.preprocess, sample)]
            rec["outputs"][name] = [w.tensor(np.asarray(g)) for g in outputs[donor.root.name][name]]
        rec["tolerance"] = _tolerance(art, classifier, borrowed=True)
        w.doc["artifacts"][art.root.name] = rec
    w.write()
    return w.doc


#: seconds of audio a stream bundle's golden vectors hold
GOLDEN_SECONDS = 8.0
#: sentences an embedding bundle's golden vectors hold when the deploy had no text file of its own
GOLDEN_SENTENCES = ("A device checks the model it loaded against these sentences before it serves.",
                    "Überprüfe die Einbettung: naïve café, 東京, and numbers like 3.14159!",
                    "short")


def stream_golden_audio(config: dict[str, Any], rate: int) -> tuple[np.ndarray, str]:
    """The audio a stream bundle's golden vectors hold: the first :data:`GOLDEN_SECONDS` of the
    deploy's first evaluation recording (``config["eval"]``, a .wav folder or file) when it still
    reads, else synthetic speech-like audio (said in the origin)."""
    from ..data import WAV_SUFFIXES, speech_like
    from ..readers.audio import read_audio_folder, read_wav, resample

    spec = config.get("eval")
    n = int(GOLDEN_SECONDS * rate)
    if isinstance(spec, str) and spec:
        p = Path(spec)
        try:
            if p.is_dir():
                name, audio = read_audio_folder(p, rate)[0]
                return audio[:n], f"the first {GOLDEN_SECONDS:g} s of {p / name} (the deploy's evaluation data)"
            if p.is_file() and p.suffix.lower() in WAV_SUFFIXES:
                audio, got = read_wav(p)
                return resample(audio, got, rate)[:n], f"the first {GOLDEN_SECONDS:g} s of {p} (the deploy's evaluation data)"
        except EdgeshipError:
            pass
    audio, _ = speech_like(GOLDEN_SECONDS, 7, rate)
    return audio, "synthetic speech-like audio (seed 7)"


def write_stream_golden(root: Path, task: dict[str, Any], artifacts: Sequence[Artifact], audio: np.ndarray, origin: str,
                        runner_for: Callable[[Artifact], Any], can_run: Callable[[Artifact], bool | str],
                        say: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """``golden/`` of a stream bundle: per artifact, the audio, the chunk probabilities it gives
    here streaming it (its own state carried) and the speech segments of those; an artifact that
    cannot run here borrows an fp32 artifact's, under a looser tolerance, and says so."""
    w = GoldenWriter(root)
    w.doc["inputs"].append({"name": "stream", "origin": origin, "seconds": round(len(audio) / float(task["sample_rate"]), 3)})
    audio_rel = w.tensor(np.asarray(audio, np.float32))
    done: dict[str, tuple[str, list[list[int]]]] = {}
    skipped: dict[str, str] = {}
    for art in artifacts:
        ok = can_run(art)
        if ok is not True:
            skipped[art.root.name] = str(ok)
            continue
        say(f"golden audio: {art.root.name}")
        try:
            runner = runner_for(art)
        except EdgeshipError as e:
            skipped[art.root.name] = e.message
            continue
        try:
            s = Stream(runner, task, [i.model_dump(mode="json") for i in art.inputs], [o.name for o in art.outputs])
            probs, segments = s.run(audio)
        except EdgeshipError as e:
            raise ValidationError(f"golden vectors: {art.root.name} failed to stream the golden audio: {e.message}",
                                  hint="the artifact does not run here; rebuild it") from None
        finally:
            runner.close()
        done[art.root.name] = (w.tensor(probs.astype(np.float32)), [[int(a), int(b)] for a, b in segments])
        exact = art.precision == "fp32"
        w.doc["artifacts"][art.root.name] = {
            "stream": {"audio": audio_rel, "rate": int(task["sample_rate"]), "origin": origin},
            "probs": done[art.root.name][0], "segments": done[art.root.name][1],
            "tolerance": {"prob_max_abs": 1e-3 if exact else 0.02, "flags_min": 1.0 if exact else 0.98},
            "expected_from": f"{art.root.name} itself, streamed here"}
    for art in artifacts:
        if art.root.name not in skipped:
            continue
        donor = next((a for a in artifacts if a.precision == "fp32" and a.root.name in done), None)
        if donor is None:
            w.doc["artifacts"][art.root.name] = {"skipped": f"{skipped[art.root.name]}; no fp32 artifact of the bundle "
                                                            "runs here to give its expected probabilities"}
            continue
        w.doc["artifacts"][art.root.name] = {
            "stream": {"audio": audio_rel, "rate": int(task["sample_rate"]), "origin": origin},
            "probs": done[donor.root.name][0], "segments": done[donor.root.name][1],
            "tolerance": {"prob_max_abs": 0.05, "flags_min": 0.95},
            "expected_from": f"{donor.root.name} (this artifact cannot run here: {skipped[art.root.name]})"}
    w.write()
    return w.doc


def embedding_golden_inputs(config: dict[str, Any], tokenize: Callable[[list[str]], list[np.ndarray]]) -> tuple[
        list[tuple[str, tuple[np.ndarray, ...]]], dict[str, str], str]:
    """An embedding bundle's golden inputs: up to three sentences of the deploy's evaluation text
    file (``config["eval"]``) when it still reads, else :data:`GOLDEN_SENTENCES`, through the
    bundle's tokenizer: (named inputs, name -> sentence, origin)."""
    from ..readers import read_text

    texts: list[str] = []
    spec = config.get("eval")
    origin = "sentences written for the golden vectors"
    if isinstance(spec, str) and spec.endswith(".txt") and Path(spec).is_file():
        try:
            texts = [ln.strip() for ln in read_text(Path(spec), "text file of sentences").splitlines() if ln.strip()][:3]
            origin = f"the first sentences of {spec} (the deploy's evaluation data)"
        except EdgeshipError:
            texts = []
    texts = texts or list(GOLDEN_SENTENCES)
    named = {f"sentence-{i}": t for i, t in enumerate(texts)}
    return [(n, tuple(tokenize([t]))) for n, t in named.items()], named, origin
