"""The classifier on a device: :class:`Classifier` (an artifact, or a release bundle along its
fallback order) and the agent state it may follow."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..data import preprocess_image
from ..errors import EdgeshipError, FormatError, UnsupportedError, UsageError
from ..fidelity import softmax
from .golden import check_golden
from .model import _MAX_RECORD, LIGHT_FORMATS

if TYPE_CHECKING:
    from ..artifact import Artifact

_PRE_CHOICES = {"layout": ("NCHW", "NHWC"), "color": ("RGB", "BGR"), "resample": ("bilinear", "bicubic", "nearest"),
                "dtype": ("float32", "uint8"), "output": ("logits", "probabilities")}


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
    from .._util import confined
    from ..readers import read_json, read_text

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
    from ..formats.onnx import OnnxRunner

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
            from ..targets import load_artifact, runner_for

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
            from ..targets import load_artifact

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

        from ..readers import read_json

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
            from .._util import confined

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
    from .._util import confined
    from ..readers import read_json

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
