"""Golden vectors checked on the device: tensors, a stream's audio, an embedder's sentences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError, UsageError
from ..fidelity import cosine_sqnr

GOLDEN_JSON = "golden/golden.json"


def _golden_tensor(root: Path, rel: str) -> np.ndarray:
    from .._util import confined
    from ..readers import read_bytes
    from ..readers.arrays import ARRAY_LIMIT, parse_npy

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

    from ..readers import read_json

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
    from ..tasks.vad import chunk_flags

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
