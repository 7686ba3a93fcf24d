"""What a model's inputs are made from and what its outputs mean: the task record.

A task is declared once and travels with the artifact (``artifact.json`` ``task``), the release
bundle (``bundle.json``, per artifact and per pipeline stage) and the pipeline record, so the
runtime, golden vectors, app code, ``serve`` and the report read it instead of assuming a
classifier. A model with no task record and an image preprocessing is a classifier, as before.

Kinds (each a small frozen record, its fields the parameters the glue of
:mod:`edgeship.tasks.ocr` reads; the defaults are RapidOCR 1.4.4's ``config.yaml``):

* ``class_scores``: one image in, class scores out (labels in ``labels.txt``);
* ``text_detection``: a page in, a DB probability map out (boxes by the DB rule);
* ``text_direction``: a text-line crop in, scores for ``labels`` (turn by 180 degrees above
  ``thresh``);
* ``text_recognition``: a text-line crop in, per-step scores over a character list out (CTC);
* ``embedding``: an embedding out (L2-normalised when ``normalize``), from text through its
  WordPiece tokenizer (:mod:`edgeship.tasks.text`) when it names one;
* ``voice_activity``: audio in chunks, the model's state carried from one call to the next, a
  speech probability per chunk and speech segments out (:mod:`edgeship.tasks.vad`).

The records are plain pydantic models: the light runtime reads the same JSON with ``json``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ClassScores", "TextDetection", "TextDirection", "TextRecognition", "Embedding", "VoiceActivity", "Task",
           "TASK_KINDS", "STREAM_KINDS",
           "parse_task", "task_dict"]


def __getattr__(name: str) -> Any:
    """The records live in :mod:`edgeship.tasks.records` (pydantic), imported on first use: the
    light runtime imports :mod:`edgeship.tasks.ocr` without them."""
    if name in __all__:
        from . import records

        return getattr(records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
