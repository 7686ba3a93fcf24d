"""The classifier runtime: what the seed's Android/iOS classifier does, in Python.

``Classifier(artifact).classify(image)`` preprocesses exactly as the artifact says (resize the
shorter side, centre crop, normalise, layout), runs the artifact on its own runtime and returns
the top labels with their confidence.

``Classifier.from_bundle(folder)`` degrades gracefully along a release bundle's fallback order:
an artifact that fails to load here, or fails its golden vectors, is skipped and the next one
serves; ``served_by`` and ``skipped`` say which served and why the ones before it did not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .artifact import Artifact
from .data import preprocess_image
from .errors import EdgeshipError, FormatError, UnsupportedError, UsageError
from .fidelity import cosine_sqnr, softmax

__all__ = ["Classifier", "Prediction", "check_golden"]

GOLDEN_JSON = "golden/golden.json"


class Prediction(NamedTuple):
    label: str
    confidence: float


class Classifier:
    def __init__(self, artifact: Artifact | str | Path, threads: int = 1) -> None:
        from .targets import load_artifact, runner_for

        self.artifact = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
        if self.artifact.preprocess is None:
            raise UnsupportedError(f"{self.artifact.name} has no image preprocessing recorded",
                                   hint="for an image classifier, state it: --preprocess 'mean=127,std=128' "
                                        "(and --labels labels.txt); for other models use the Runner API")
        self.preprocess = self.artifact.preprocess
        self.runner = runner_for(self.artifact, threads=threads)
        self.labels = self.artifact.labels
        self.served_by: str = self.artifact.root.name
        self.skipped: list[dict[str, str]] = []

    @classmethod
    def from_bundle(cls, folder: str | Path, threads: int = 1) -> Classifier:
        """The first artifact of a bundle's fallback order that loads here and passes its golden
        vectors (verify the bundle's signature first: ``edgeship verify``); UnsupportedError
        naming every artifact's reason when none does."""
        import json

        folder = Path(folder)
        try:
            order = json.loads((folder / "bundle.json").read_text())["fallback_order"]
            if not isinstance(order, list):
                raise TypeError("fallback_order is not a list")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise FormatError(f"{folder} is not a readable release bundle: {str(e)[:200]}",
                              hint="give a folder written by edgeship package (or extract its .tar.gz)") from None
        skipped: list[dict[str, str]] = []
        for aid in order:
            from ._util import confined

            try:
                clf = cls(confined(folder, f"artifacts/{aid}", f"{folder / 'bundle.json'}: an artifact"), threads=threads)
                golden = check_golden(folder, str(aid), clf.runner.run)
            except EdgeshipError as e:
                skipped.append({"artifact": str(aid), "reason": f"does not load here: {e.message}"})
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

    def scores(self, image: Any) -> np.ndarray:
        """Class probabilities for one image."""
        x = preprocess_image(image, self.preprocess)
        feeds = {self.preprocess.input: x}
        for spec in self.runner.inputs:
            if spec.name not in feeds:
                raise UnsupportedError(f"the model takes more inputs than the image ({spec.name})",
                                       hint="use the Runner API for multi-input models")
        out = self.runner.run(feeds)[0].reshape(-1)
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


def _golden_tensor(root: Path, rel: str) -> np.ndarray:
    from ._util import confined

    try:
        return np.load(confined(root, rel, f"{root / GOLDEN_JSON}: a tensor path"), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise FormatError(f"{root / rel} is not a readable golden tensor: {str(e)[:200]}") from None


def check_golden(root: Path, artifact_id: str, run: Any) -> dict[str, Any]:
    """Run ``run`` (an artifact's ``runner.run``) on the bundle's golden inputs for ``artifact_id``
    and compare with the expected outputs under their tolerance:
    ``{"passed": bool | None, "checked", "failures": [...]}`` (``passed`` None: the bundle has no
    golden vectors for it, and says why in ``skipped``)."""
    import json

    root = Path(root)
    try:
        doc = json.loads((root / GOLDEN_JSON).read_text())
        rec = doc["artifacts"][artifact_id]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FormatError(f"{root / GOLDEN_JSON} has no golden vectors for {artifact_id}: {str(e)[:120]}",
                          hint="package the output folder again") from None
    if "skipped" in rec:
        return {"passed": None, "checked": 0, "failures": [], "skipped": rec["skipped"]}
    tol = rec.get("tolerance") or {}
    failures = []
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
