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

from .classifier import AGENT_CURRENT, Classifier, Prediction
from .golden import GOLDEN_JSON, check_golden
from .model import LIGHT_FORMATS, _Model
from .pipeline import GOLDEN_PIPELINE, PIPELINE_JSON, Pipeline
from .streams import Embedder, Stream

__all__ = ["Classifier", "Embedder", "Pipeline", "Prediction", "Stream", "check_golden", "GOLDEN_JSON", "PIPELINE_JSON",
           "GOLDEN_PIPELINE", "AGENT_CURRENT", "LIGHT_FORMATS", "_Model"]
