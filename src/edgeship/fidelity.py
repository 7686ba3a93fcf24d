"""One set of fidelity figures, used by verification, the quantisation flow and every target's own
checks alike: cosine similarity, SQNR, KL divergence of softmaxed logits, top-k agreement.

SQNR is ``10 log10(signal power / noise power)`` everywhere, from arrays or from streamed sums of
squares; a noise of zero is "no noise" (``None`` where a JSON figure is wanted, ``inf`` where an
ordering is).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["cosine_sqnr", "sqnr_db", "db_from_sums", "kl_divergence", "softmax", "top_k_agreement"]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def db_from_sums(signal2: float, noise2: float) -> float:
    """SQNR in dB from sums of squares (streamed); ``inf`` without noise."""
    return float("inf") if noise2 == 0 else 10 * math.log10(max(signal2, 1e-300) / noise2)


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """SQNR in dB of ``out`` against ``ref`` (any shapes of equal size); ``inf`` when equal."""
    r = np.asarray(ref, np.float64).ravel()
    o = np.asarray(out, np.float64).ravel()
    return db_from_sums(float(np.sum(r ** 2)), float(np.sum((o - r) ** 2)))


def cosine_sqnr(ref: np.ndarray, out: np.ndarray) -> tuple[float, float | None]:
    """(cosine similarity, SQNR in dB or None without noise) of two tensors, flattened.
    Tensors of different sizes, or empty ones, give (0.0, None)."""
    r = np.asarray(ref, np.float64).reshape(-1)
    o = np.asarray(out, np.float64).reshape(-1)
    if r.shape != o.shape or not r.size:
        return 0.0, None
    nr, no = np.linalg.norm(r), np.linalg.norm(o)
    cos = 1.0 if nr == no == 0 else float(r @ o / (nr * no)) if nr and no else 0.0
    s = sqnr_db(r, o)
    return cos, None if math.isinf(s) else s


def kl_divergence(ref_logits: np.ndarray, out_logits: np.ndarray) -> float:
    """Mean KL(softmax(ref) || softmax(out)) over the rows of two (N, classes) logit arrays."""
    p = softmax(np.asarray(ref_logits, np.float64), axis=1)
    q = softmax(np.asarray(out_logits, np.float64), axis=1)
    return float(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=1)))


def top_k_agreement(ref: np.ndarray, out: np.ndarray, k: int = 1) -> float:
    """Share of rows whose reference top-1 class is in the output's top-k."""
    r = np.asarray(ref).argmax(1)
    top = np.argsort(-np.asarray(out), axis=1)[:, :k]
    return float(np.mean([t in row for t, row in zip(r, top)]))
