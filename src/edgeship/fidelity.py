"""One set of fidelity figures, used by verification, the quantisation flow and every target's own
checks alike: cosine similarity, SQNR, KL divergence of softmaxed logits, top-k agreement.

SQNR is ``10 log10(signal power / noise power)`` everywhere, from arrays or from streamed sums of
squares; a noise of zero is "no noise" (``None`` where a JSON figure is wanted, ``inf`` where an
ordering is).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .sources import Source

__all__ = ["cosine_sqnr", "sqnr_db", "db_from_sums", "kl_divergence", "softmax", "top_k_agreement", "is_classifier",
           "is_probability_rows", "source_is_classifier", "judge", "TaskMeasure", "nearest_neighbours", "task_measure",
           "stream_output"]


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
    """Mean KL(softmax(ref) || softmax(out)) over the rows of two (N, classes) logit arrays; rows
    that are probabilities already (:func:`is_probability_rows`) are taken as they are."""
    if is_probability_rows(ref_logits):
        p = np.clip(np.asarray(ref_logits, np.float64), 0, None)
        q = np.clip(np.asarray(out_logits, np.float64), 0, None)
        p, q = p / np.maximum(p.sum(1, keepdims=True), 1e-300), q / np.maximum(q.sum(1, keepdims=True), 1e-300)
    else:
        p = softmax(np.asarray(ref_logits, np.float64), axis=1)
        q = softmax(np.asarray(out_logits, np.float64), axis=1)
    return float(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=1)))


def top_k_agreement(ref: np.ndarray, out: np.ndarray, k: int = 1) -> float:
    """Share of rows whose reference top-1 class is in the output's top-k. Ties (common in
    dequantised int8 outputs) go to the lower class index, as ``argmax`` breaks them."""
    r = np.asarray(ref).argmax(1)
    if k == 1:
        return float(np.mean(r == np.asarray(out).argmax(1)))
    top = np.argsort(-np.asarray(out), axis=1, kind="stable")[:, :k]
    return float(np.mean([t in row for t, row in zip(r, top)]))


# ---- the one rule for reduced precision (verify and the quantisation budget alike) -------------

#: output names that declare a classifier's scores when no labels say so
CLASSIFIER_WORDS = ("logit", "prob", "score", "class")


def is_probability_rows(ref: np.ndarray, tol: float = 1e-3) -> bool:
    """Whether every row of a 2-D float array is a probability vector: no value below 0 (within
    ``tol``) and each row summing to 1 within ``tol`` (a softmax output, whatever its name)."""
    a = np.asarray(ref)
    if a.ndim != 2 or a.shape[1] < 2 or not a.size or not np.issubdtype(a.dtype, np.floating):
        return False
    a = a.astype(np.float64)
    return bool(np.isfinite(a).all() and a.min() >= -tol and np.all(np.abs(a.sum(axis=1) - 1.0) <= tol))


def is_classifier(ref: np.ndarray, name: str = "", labels: Sequence[str] | None = None, task: str = "auto",
                  truth: Sequence[int] | None = None) -> bool:
    """Whether an output is judged as class scores (top-k agreement, label accuracy) or as any other
    tensor (cosine and SQNR only). ``task`` 'classify' or 'other' decides; 'auto' takes a 2-D
    (batch, classes) output as class scores when the model's labels count its columns, when its
    name says so (logits, probs, scores), when its rows are probability vectors (a softmax, named
    or not), or when the evaluation data carries the true class of each sample (``truth``, e.g. an
    .npz's ``y``) within its columns: an embedding vector's argmax means nothing."""
    if task == "classify":
        return np.ndim(ref) == 2 and np.shape(ref)[1] > 1
    if task == "other" or np.ndim(ref) != 2 or np.shape(ref)[1] < 2:
        return False
    if labels and len(labels) == np.shape(ref)[1]:
        return True
    if any(w in name.lower() for w in CLASSIFIER_WORDS) or is_probability_rows(ref):
        return True
    if truth is not None and len(truth):
        t = np.asarray(truth)
        return bool(t.min() >= 0 and t.max() < np.shape(ref)[1])
    return False


#: task records (edgeship.tasks) whose first output is class scores
CLASS_SCORE_TASKS = ("class_scores", "text_direction")


def source_is_classifier(ref: np.ndarray, source: Source, cfg: Any, truth: Sequence[int] | None = None) -> bool:
    """:func:`is_classifier` for ``source``'s first output (its name and the source's labels), under
    ``cfg.task``, with the true classes the evaluation data carries (``truth``) when it does: the one
    question verify and the quantisation budget both ask."""
    name = source.outputs[0].name if source.outputs else ""
    how = getattr(cfg, "task", "auto")
    record = getattr(source, "task", None)
    if how == "auto" and record is not None:  # the task record says what the output is
        how = "classify" if record.kind in CLASS_SCORE_TASKS else "other"
    return is_classifier(ref, name, source.labels, how, truth)


def nearest_neighbours(emb: np.ndarray) -> np.ndarray:
    """Per row of ``emb`` (N, D), the index of its nearest other row by cosine."""
    e = np.asarray(emb, np.float64).reshape(len(emb), -1)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(1)


@dataclass(frozen=True)
class TaskMeasure:
    """A task's own measure of a model against its reference (:mod:`edgeship.tasks`).

    ``voice_activity``: the speech segments of each stream (the package's rule over the
    ``output``-th output, the chunk probabilities) and, per chunk, whether it lies in one; passes
    when the chunks agree on at least the task's ``min_agreement``. ``embedding``: each input's
    nearest neighbour among the others, by the reference's embeddings and by the model's, the share
    that is the same, beside the per-input cosine (a figure, not a gate: cosine judges)."""

    kind: str
    task: Any
    output: int = 0
    streams: tuple[tuple[int, int], ...] = ()
    lengths: tuple[int, ...] = ()

    def figures(self, ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> dict[str, Any]:
        if self.kind == "voice_activity":
            from .tasks.vad import chunk_flags, speech_segments

            r = np.asarray(ref[self.output], np.float64).reshape(len(ref[self.output]), -1)[:, 0]
            g = np.asarray(got[self.output], np.float64).reshape(len(got[self.output]), -1)[:, 0]
            fr, fg, segs_r, segs_g = [], [], 0, 0
            for (a, b), n in zip(self.streams, self.lengths):
                sr, sg = speech_segments(r[a:b], self.task, n), speech_segments(g[a:b], self.task, n)
                segs_r, segs_g = segs_r + len(sr), segs_g + len(sg)
                fr.append(chunk_flags(sr, b - a, self.task))
                fg.append(chunk_flags(sg, b - a, self.task))
            flags_r, flags_g = np.concatenate(fr), np.concatenate(fg)
            agree = float(np.mean(flags_r == flags_g)) if len(flags_r) else 1.0
            need = float(getattr(self.task, "min_agreement", 0.98))
            return {"measure": "speech decisions per chunk", "chunks": int(len(flags_r)), "streams": len(self.streams),
                    "chunk_agreement": agree, "speech_chunks_reference": int(flags_r.sum()),
                    "speech_chunks": int(flags_g.sum()), "segments_reference": segs_r, "segments": segs_g,
                    "max_prob_diff": float(np.max(np.abs(r - g))) if len(r) else 0.0,
                    "criterion": f"speech segments cover the same chunks in >= {need:.0%} of chunks",
                    "passed": agree >= need - 1e-12}
        if self.kind == "embedding":
            r = np.asarray(ref[self.output], np.float64).reshape(len(ref[self.output]), -1)
            g = np.asarray(got[self.output], np.float64).reshape(len(got[self.output]), -1)
            rn = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
            gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
            cos = (rn * gn).sum(1)
            return {"measure": "nearest neighbour", "inputs": int(len(r)),
                    "nn_agreement": float(np.mean(nearest_neighbours(r) == nearest_neighbours(g))),
                    "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}
        raise ValueError(self.kind)


def stream_output(source: Source) -> int:
    """The index of a stream task's probability output among ``source``'s outputs."""
    want = getattr(source.task, "probability", None)
    names = [o.name for o in source.outputs]
    return names.index(want) if want in names else 0


def task_measure(source: Source, samples: Sequence[Any]) -> TaskMeasure | None:
    """The task's own measure for ``source`` on ``samples``: speech decisions per chunk for a
    voice-activity stream (``samples`` an :class:`edgeship.data.StreamSamples`), nearest-neighbour
    agreement for embeddings (3 inputs or more); None for other tasks (class scores and tensors are
    judged by :func:`judge` itself)."""
    kind = getattr(getattr(source, "task", None), "kind", None)
    if kind == "voice_activity" and hasattr(samples, "streams"):
        return TaskMeasure(kind, source.task, stream_output(source), tuple(samples.streams()), tuple(samples.lengths))
    if kind == "embedding" and len(samples) >= 3:
        return TaskMeasure(kind, source.task, 0)
    return None


def judge(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], *, classifier: bool, min_cosine: float,
          max_drop: float, labels: Sequence[int] | None = None, task: TaskMeasure | None = None) -> dict[str, Any]:
    """Fidelity figures of a reduced-precision model against its fp32 reference (one array per
    output, samples on axis 0) and whether they pass: every output's cosine >= ``min_cosine``
    and, for a classifier, a fall in label accuracy <= ``max_drop`` when ``labels`` (the true class
    of each sample) are known, else top-1 agreement >= 1 - ``max_drop``. A ``task`` measure adds
    its figures (``task``); a stream's decisions replace the cosine rule (its state is internal:
    what it decides is judged, the cosine of each output is reported)."""
    cos_sqnr = [cosine_sqnr(r, g) for r, g in zip(ref, got)]
    cosines = [c for c, _ in cos_sqnr]
    sq = [s for _, s in cos_sqnr if s is not None]
    out: dict[str, Any] = {"cosine": min(cosines), "sqnr_db": min(sq) if sq else None,
                           "samples": int(np.shape(ref[0])[0]), "judged_as": "classifier" if classifier else "tensor"}
    if len(cosines) > 1:
        out["cosines"] = cosines
    passed = out["cosine"] >= min_cosine
    rule = f"cosine >= {min_cosine:g} per output"
    if task is not None:
        t = task.figures(ref, got)
        out["task"] = t
        out["judged_as"] = task.kind
        if "passed" in t:  # the task's decisions decide
            out["cosine"] = cosines[task.output]
            passed, rule = bool(t["passed"]), t["criterion"] + f" (cosine of the probabilities {cosines[task.output]:.4f})"
        else:
            rule += f" (nearest-neighbour agreement {t['nn_agreement']:.1%} on {t['inputs']} inputs)"
    if classifier:
        r, g = np.asarray(ref[0], np.float64), np.asarray(got[0], np.float64)
        out["top1_agreement"] = top_k_agreement(r, g, 1)
        out["top5_agreement"] = top_k_agreement(r, g, min(5, r.shape[1]))
        out["kl_divergence"] = kl_divergence(r, g)
        if labels is not None:
            lab = np.asarray(labels)
            out["accuracy_fp32"] = float(np.mean(r.argmax(1) == lab))
            out["accuracy"] = float(np.mean(g.argmax(1) == lab))
            passed = passed and out["accuracy_fp32"] - out["accuracy"] <= max_drop + 1e-12
            rule += f", label accuracy at most {max_drop:.3g} below fp32's"
        else:
            passed = passed and out["top1_agreement"] >= 1.0 - max_drop - 1e-12
            rule += f", top-1 agreement >= {1.0 - max_drop:.3g}"
    out["criterion"] = rule
    out["passed"] = bool(passed)
    return out
