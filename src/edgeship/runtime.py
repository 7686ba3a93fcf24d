"""The classifier runtime: what the seed's Android/iOS classifier does, in Python.

``Classifier(artifact).classify(image)`` preprocesses exactly as the artifact says (resize the
shorter side, centre crop, normalise, layout), runs the artifact on its own runtime and returns
the top labels with their confidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .artifact import Artifact
from .data import preprocess_image
from .errors import UnsupportedError, UsageError
from .fidelity import softmax

__all__ = ["Classifier", "Prediction"]


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
