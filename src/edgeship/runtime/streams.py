"""Streams and embeddings on the device: :class:`Stream` (voice activity, the state carried) and
:class:`Embedder` (WordPiece and the model, L2-normalised)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgeshipError, FormatError, UnsupportedError
from .golden import check_golden
from .model import _Model


def _bundle_doc(folder: Path) -> dict[str, Any]:
    from ..readers import read_json

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
    from .._util import confined

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
        from ..tasks.vad import Chunker, StreamRunner, params

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
        from ..tasks.vad import Chunker

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
        from ..tasks.vad import speech_segments

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
        from ..tasks.text import WordPiece

        self._model, self.task = model, task
        self.tokenizer = WordPiece(vocabulary, task)
        self._names = [i["name"] for i in inputs]
        self.served_by: str | None = None
        self.skipped: list[dict[str, str]] = []

    @classmethod
    def from_bundle(cls, folder: str | Path, threads: int = 1, check: bool = True) -> Embedder:
        from .._util import confined
        from ..readers import read_text
        from ..tasks.text import read_vocabulary

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
