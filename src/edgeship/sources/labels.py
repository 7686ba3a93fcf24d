"""``--labels``: class names a user states for a model (labels.txt or a JSON list)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..artifact import TensorSpec, clean_labels
from ..errors import InputError
from ..readers import parse_json, read_text


def read_labels(spec: str | Path | Sequence[str], outputs: Sequence[TensorSpec] = ()) -> tuple[str, ...]:
    """``--labels``: labels.txt (one per line) or a JSON list of strings; one per class of the
    first of ``outputs`` when its class count is known."""
    labels = _read_labels(spec)
    n = outputs[0].shape[-1] if outputs and outputs[0].shape else None
    if isinstance(n, int) and n != len(labels):
        raise InputError(f"{len(labels)} labels, but output {outputs[0].name!r} has {n} classes",
                         hint="give one label per class, in the order of the model's output")
    return labels


def _read_labels(spec: str | Path | Sequence[str]) -> tuple[str, ...]:
    if not isinstance(spec, (str, Path)):
        return clean_labels([str(x) for x in spec]) or ()

    p = Path(spec)
    hint = "give labels.txt (one label per line) or a JSON list"
    text = read_text(p, "labels file", hint=hint)
    if text.lstrip().startswith("["):
        data = parse_json(text, f"labels file {p}", hint=hint)
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise InputError(f"{p} must be a JSON list of strings")
        labels = data
    else:
        labels = [line for line in text.splitlines() if line.strip()]
    if not labels:
        raise InputError(f"labels file {p} is empty")
    return clean_labels(labels) or ()
