"""Numerical verification of an artifact against its source, on real inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ._util import share_text
from .artifact import Artifact, OutputCheck, Preprocess, TensorSpec, Verification
from .errors import EdgeshipError, ValidationError
from .fidelity import cosine_sqnr, judge, kl_divergence, source_is_classifier, task_measure, top_k_agreement

if TYPE_CHECKING:
    from .config import VerifyConfig
    from .runner import Runner
    from .sources import Source


#: inputs a reduced precision runs as one batch in verification (the dynamic batch axis checked)
BATCH_CHECK = 16


def verify(source: Source, artifact: Artifact, runner: Runner, cfg: VerifyConfig) -> Verification:
    """Run source and artifact on the same inputs; per output max abs / rel error; the verdict.

    Each sample runs at batch 1; when the artifact's batch axis is dynamic, all samples also run
    as one batch, so a broken dynamic axis fails here rather than on a device (for fp32 the
    reference is then the source run on that same batch, so a model whose outputs depend on what
    else is in the batch is compared with itself).

    The inputs: ``--eval`` data when given (fp32 takes its first ``samples``), else the source's own
    (its sample inputs, the sample photos through its preprocessing, or seeded random inputs).

    fp32 artifacts pass when every element has ``|a - ref| <= atol + rtol * |ref|``
    (numpy.allclose semantics), on any inputs (``real_inputs`` says which). Reduced-precision artifacts
    (fp16, int8, ...) are judged on fidelity by the rule the quantisation budget uses
    (:func:`edgeship.fidelity.judge`): every output's cosine >= ``min_cosine`` and, for class scores
    only (:func:`edgeship.fidelity.is_classifier`), label accuracy or top-1 agreement within
    ``max_drop``, on ``eval_samples`` inputs never used for calibration. Judged only on random
    inputs, one that holds the rule is written with ``status`` ``unverified`` (never counted as
    verified, recommended, nor released unless ``--allow-unverified``): random inputs find broken
    conversions, they never verify a reduced precision.
    ``max_rel`` is the max abs error divided by the largest |ref| of that output.
    """
    from .data import StreamSamples, is_stream, load_samples

    exact = artifact.precision == "fp32"
    spec = getattr(cfg, "eval", None)
    refs = None
    if is_stream(source):  # streams: every precision on the evaluation streams, the state carried
        samples, eval_labels, refs = source.evaluation(spec or None, cfg.eval_samples)
        origin, real = (f"evaluation data {spec}", True) if spec else (samples.origin, samples.real)
    elif spec and exact:  # the user's real data, for every precision (fp32 on its first `samples`)
        samples, eval_labels = load_samples(spec, source, cfg.samples, "evaluation")
        origin, real = f"evaluation data {spec}", True
    elif exact:
        samples, eval_labels = source.verification_inputs(limit=cfg.samples), None
        origin, real = source.inputs_origin("verification"), source.real_inputs
    else:  # reduced precision: the evaluation set the budget judged on, and its reference outputs (run once)
        samples, eval_labels, refs = source.evaluation(spec or None, cfg.eval_samples)
        origin, real = (f"evaluation data {spec}", True) if spec else (source.inputs_origin("evaluation"), source.real_inputs)
    if refs is None:
        refs = [source.run(s) for s in samples]
    try:
        got = run_samples(runner, source, artifact, samples)
    except EdgeshipError as e:
        raise ValidationError(f"{artifact.name} fails to run on the verification inputs: {e.message}",
                              hint="the conversion produced a model its runtime cannot execute") from None
    batch_sizes = [1]
    n_out = len(refs[0])
    if len(got[0]) != n_out:
        raise ValidationError(f"{artifact.name} has {len(got[0])} outputs, its source {n_out}")
    ref_cat = [np.concatenate([np.atleast_1d(r[k]) for r in refs]) for k in range(n_out)]
    got_cat = [np.concatenate([np.atleast_1d(g[k]) for g in got]) for k in range(n_out)]
    pairs = [(ref_cat, got_cat)]
    stream = isinstance(samples, StreamSamples)
    # a stream's calls follow one another (its state carried): the batch axis is not what a device varies
    dynamic = not stream and all(i.shape and not isinstance(i.shape[0], int) for i in artifact.inputs)
    batched_out = None
    batch_dependent = False
    if dynamic and len(samples) > 1:
        # a reduced precision is judged on its batch-1 outputs; the batch only proves the dynamic axis
        # holds (finite, the right shape): a few inputs do that, not the whole evaluation set again
        batched_n = len(samples) if exact else min(len(samples), BATCH_CHECK)
        mapped = [artifact_inputs(source, artifact, s) for s in samples[:batched_n]]
        batched_in = [np.concatenate([s[k] for s in mapped]) for k in range(len(mapped[0]))]
        batched_out = runner.run(batched_in)
        ref_batched = _source_batched(source, samples, ref_cat) if exact else \
            [np.concatenate([np.atleast_1d(r[k]) for r in refs[:batched_n]]) for k in range(n_out)]
        batch_dependent = exact and ref_batched is not ref_cat and not all(
            np.allclose(a, b, rtol=cfg.rtol, atol=cfg.atol, equal_nan=True) for a, b in zip(ref_batched, ref_cat))
        pairs.append((ref_batched, batched_out))
        batch_sizes.append(batched_n)
    checks = []
    for k in range(n_out):
        declared = artifact.outputs[k] if k < len(artifact.outputs) else None
        name = declared.name if declared is not None else f"output_{k}"
        max_abs = mean_abs = 0.0
        ok = True
        scale = 0.0
        cos, sqnr = cosine_sqnr(ref_cat[k], got_cat[k])
        for ref_list, got_list in pairs:
            ref = np.asarray(ref_list[k], dtype=np.float64)
            out = np.asarray(got_list[k], dtype=np.float64)
            if ref.shape != out.shape and got_list is batched_out and np.ndim(got[0][k]) == 0:
                continue  # a scalar output (not per sample): its batch-1 values are compared above
            if ref.shape != out.shape:
                raise ValidationError(f"{artifact.name}: output {name!r} has shape {out.shape}, the source {ref.shape}",
                                      hint="the conversion changed the model's output shape")
            diff = np.abs(out - ref)
            finite = np.isfinite(out).all() or not np.isfinite(ref).all()
            max_abs = max(max_abs, float(diff.max()) if diff.size else 0.0)
            mean_abs = max(mean_abs, float(diff.mean()) if diff.size else 0.0)
            scale = max(scale, float(np.abs(ref).max()) if ref.size else 0.0)
            if exact:
                ok = ok and finite and bool(np.all(diff <= cfg.atol + cfg.rtol * np.abs(ref)))
            else:
                ok = ok and finite
        if not exact and not stream:  # a stream is judged by its decisions (its cosines are reported)
            ok = ok and cos >= cfg.min_cosine
        seen = [np.shape(got[0][k])] + ([] if batched_out is None else [np.shape(batched_out[k])])
        fits = declared is not None and all(declared.fits(tuple(sh)) for sh in seen)
        checks.append(OutputCheck(name=name, max_abs=max_abs, max_rel=max_abs / scale if scale else 0.0,
                                  mean_abs=mean_abs, cosine=cos, sqnr_db=sqnr, passed=ok,
                                  shape=None if fits else returned_shape(*seen)))
    top1 = top5 = kl = None
    task_figures = None
    r0, g0 = ref_cat[0], got_cat[0]
    classifier = source_is_classifier(r0, source, cfg, truth=eval_labels)
    note = None
    if exact:
        if classifier:  # reported beside the element-wise rule, which alone decides
            top1, top5 = top_k_agreement(r0, g0, 1), top_k_agreement(r0, g0, min(5, r0.shape[1]))
            kl = kl_divergence(r0, g0)
        criterion = f"|err| <= {cfg.atol:g} + {cfg.rtol:g}*|ref| for every element"
        measure = task_measure(source, samples)
        if measure is not None:  # the task's own figures, beside the element-wise rule
            task_figures = measure.figures(ref_cat, got_cat)
        if stream:
            criterion += f" ({len(samples.starts)} stream(s), {len(samples)} chunks, each artifact carrying its own state)"
        if batch_dependent:
            criterion += (f" (batch {len(samples)} against the source on the same batch: its outputs depend on what "
                          "else is in the batch)")
        passed = all(c.passed for c in checks)
        status = "verified" if passed else "failed"
    else:  # the rule the quantisation budget uses (edgeship.fidelity.judge)
        j = judge(ref_cat, got_cat, classifier=classifier, min_cosine=cfg.min_cosine, max_drop=cfg.max_drop,
                  labels=eval_labels if classifier else None, task=task_measure(source, samples))
        top1, top5, kl = j.get("top1_agreement"), j.get("top5_agreement"), j.get("kl_divergence")
        criterion = j["criterion"] + ("" if classifier or "task" in j else " (judged as a tensor, not class scores)")
        task_figures = j.get("task")
        if classifier and eval_labels is not None:
            criterion += f" (label accuracy {share_text(j['accuracy_fp32'])} at fp32, {share_text(j['accuracy'])} here)"
        held = j["passed"] and all(c.passed for c in checks)
        if not held:
            status = "failed"
        elif real:
            status = "verified"
        else:
            status = "unverified"
            criterion += "; held on random inputs only: unverified"
            note = unverified_note(source, artifact.precision)
        passed = held
    return Verification(
        reference=f"{source.kind} source {source.name}", samples=len(samples), inputs=origin, batch_sizes=tuple(batch_sizes),
        atol=cfg.atol, rtol=cfg.rtol, outputs=tuple(checks), top1_agreement=top1, top5_agreement=top5,
        kl_divergence=kl, criterion=criterion, passed=passed, status=status, real_inputs=real, note=note,
        task=task_figures,
    )


def run_samples(runner: Runner, source: Source, artifact: Artifact, samples: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
    """``artifact``'s outputs on ``samples`` (source inputs): each on its own, or, for a stream
    (:class:`edgeship.data.StreamSamples`), call after call with the artifact's OWN carried outputs
    fed back (zeros at each stream's start), so the errors that build up in its state count: what
    verification, the int8 budget and every other comparison run."""
    from .data import StreamSamples, run_streams

    if not isinstance(samples, StreamSamples):
        return runner.run_many([artifact_inputs(source, artifact, s) for s in samples])
    return run_streams(lambda xs: runner.run(artifact_inputs(source, artifact, xs)), samples, source.task, source.inputs,
                       [o.name for o in source.outputs])


def unverified_note(source: Source, precision: str) -> str:
    """What an artifact judged only on random inputs needs, naming the flag and the file format."""
    names = [i.name for i in source.inputs]
    data = (f"--eval data.npz (arrays named after the inputs: {', '.join(names)}; first axis = samples; "
            "an array y of class indices adds label accuracy)")
    if source.tokenize is not None:
        data += " or sentences.txt (one per line)"
    if len(source.inputs) == 1 and len(source.inputs[0].shape) == 4 and source.preprocess is None:
        data += " or, for an image model, --preprocess 'mean=127,std=128' (then photos and image folders are real data)"
    return (f"{precision} judged only on seeded random inputs, which cannot verify it: give real data with {data}; "
            "--allow-unverified to ship it anyway")


def returned_shape(single: Sequence[int], batched: Sequence[int] | None = None) -> tuple[int | str, ...]:
    """The shape an output was returned with at batch 1, a dimension that followed the batch (it
    differs in the batched run) named ``batch``."""
    if batched is None or len(batched) != len(single):
        return tuple(int(d) for d in single)
    return tuple("batch" if int(b) != int(d) else int(d) for d, b in zip(single, batched))


def observed_outputs(artifact: Artifact, v: Verification | None = None) -> tuple[TensorSpec, ...]:
    """``artifact``'s output specs with the shapes its verification saw it return where the
    declared ones did not fit (an empty or wrong shape in the model file), so the record says
    what the model returns."""
    v = v if v is not None else artifact.verification
    if v is None:
        return artifact.outputs
    out = list(artifact.outputs)
    for k, c in enumerate(v.outputs):
        if c.shape is None:
            continue
        if k < len(out):
            out[k] = out[k].model_copy(update={"shape": c.shape})
        elif k == len(out):
            out.append(TensorSpec(name=c.name, shape=c.shape))
    return tuple(out)


def _source_batched(source: Source, samples: Sequence[Sequence[np.ndarray]],
                    fallback: list[np.ndarray]) -> list[np.ndarray]:
    """The source run on all ``samples`` as one batch (the reference for the artifact's batched
    run); ``fallback`` (the batch-1 outputs concatenated) when the source cannot take that batch
    or returns other shapes."""
    batched = [np.concatenate([np.asarray(s[k]) for s in samples]) for k in range(len(samples[0]))]
    try:
        out = [np.asarray(o) for o in source.run(batched)]
    except Exception:  # noqa: BLE001 - a source that cannot run batched: the batch-1 outputs are the reference
        return fallback
    if len(out) != len(fallback) or any(a.shape != b.shape for a, b in zip(out, fallback)):
        return fallback
    return out


def artifact_inputs(source: Source, artifact: Artifact, sample: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The source's inputs as ``artifact`` takes them (same order).

    An image input the artifact takes in another layout (NHWC vs NCHW) is transposed; one it takes
    as uint8 raw pixels (its Preprocess says ``dtype="uint8"``) is mapped back through the source's
    normalisation, ``round(x * std + mean)``. The float inputs come from real photos (8-bit pixels),
    so this recovers exactly the bytes an app would feed. Other inputs pass through unchanged.
    """
    return map_inputs(source.preprocess, [s.name for s in source.inputs], artifact.preprocess, sample)


def map_inputs(src: Preprocess | None, names: Sequence[str], art: Preprocess | None,
               sample: Sequence[np.ndarray]) -> list[np.ndarray]:
    """:func:`artifact_inputs` from the preprocessing records alone (the source's ``src`` with its
    input ``names``, the artifact's ``art``): what a bundle, which has no source model, uses."""
    out = [np.asarray(a) for a in sample]
    if src is None or art is None:
        return out
    if src.input not in names:
        return out
    k = list(names).index(src.input)
    x = out[k]
    if x.ndim != 4:
        return out
    if art.dtype == "uint8" and src.dtype != "uint8":
        shape = (1, 3, 1, 1) if src.layout == "NCHW" else (1, 1, 1, 3)
        mean = np.asarray(src.mean, np.float64).reshape(shape)
        std = np.asarray(src.std, np.float64).reshape(shape)
        x = np.clip(np.rint(x.astype(np.float64) * std + mean), 0, 255).astype(np.uint8)
    if src.layout != art.layout:
        x = x.transpose(0, 2, 3, 1) if art.layout == "NHWC" else x.transpose(0, 3, 1, 2)
    out[k] = np.ascontiguousarray(x)
    return out


def raise_if_failed(artifact: Artifact, v: Verification) -> None:
    if v.passed:  # verified, or unverified (written, marked, kept out of releases), or structural
        return
    worst = ", ".join(f"{c.name}: max abs {c.max_abs:.3g}, max rel {c.max_rel:.3g}, cosine {c.cosine:.4f}"
                      for c in v.outputs if not c.passed)
    if v.top1_agreement is not None and not worst:
        worst = f"top-1 agreement {share_text(v.top1_agreement)}"
    how = "raise --atol/--rtol" if artifact.precision == "fp32" else "raise --max-drop or lower --min-cosine"
    if v.real_inputs is False and artifact.precision != "fp32":
        how += "; it was judged on seeded random inputs: give real data with --eval"
    d = v.first_divergence
    where = ""
    if d:
        where = (f"; it first diverges at node {d['node']!r} ({d['op']}" + (f", module {d['module']}" if d.get("module") else "")
                 + f"): max abs {d['max_abs']:.3g} on tensor {d['tensor']!r}")
    raise ValidationError(
        f"{artifact.name} does not match its source ({v.criterion}): {worst}{where}",
        hint=f"the artifact was not written; {how} if this error is acceptable",
        outputs=[c.model_dump() for c in v.outputs], first_divergence=d,
    )
