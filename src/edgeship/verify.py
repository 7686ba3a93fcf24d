"""Numerical verification of an artifact against its source, on real inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .artifact import Artifact, OutputCheck, Preprocess, Verification
from .errors import EdgeshipError, ValidationError
from .fidelity import cosine_sqnr, judge, kl_divergence, source_is_classifier, top_k_agreement

if TYPE_CHECKING:
    from .config import VerifyConfig
    from .sources import Source
    from .targets import Runner


def verify(source: Source, artifact: Artifact, runner: Runner, cfg: VerifyConfig) -> Verification:
    """Run source and artifact on the same real inputs; per output max abs / rel error.

    Each sample runs at batch 1; when the artifact's batch axis is dynamic, all samples also run
    as one batch, so a broken dynamic axis fails here rather than on a device.

    fp32 artifacts pass when every element has ``|a - ref| <= atol + rtol * |ref|``
    (numpy.allclose semantics). Reduced-precision artifacts (fp16, int8, ...) pass on fidelity by
    the rule the quantisation budget uses (:func:`edgeship.fidelity.judge`): every output's cosine
    >= ``min_cosine`` and, for class scores only (:func:`edgeship.fidelity.is_classifier`), label
    accuracy or top-1 agreement within ``max_drop``, on ``eval_samples`` inputs never used for
    calibration. ``max_rel`` is the max abs error divided by the largest |ref| of that output.
    """
    exact = artifact.precision == "fp32"
    eval_labels = None
    if exact:
        samples, origin = source.verification_inputs(limit=cfg.samples), source.inputs_origin("verification")
    else:  # reduced precision: the evaluation data (--eval, else the source's own), never calibration data
        from .data import load_samples

        spec = getattr(cfg, "eval", None)
        samples, eval_labels = load_samples(spec, source, cfg.eval_samples, "evaluation")
        origin = f"evaluation data {spec}" if spec else source.inputs_origin("evaluation")
    refs = [source.run(s) for s in samples]
    try:
        got = [runner.run(artifact_inputs(source, artifact, s)) for s in samples]
    except EdgeshipError as e:
        raise ValidationError(f"{artifact.name} fails to run on the verification inputs: {e.message}",
                              hint="the conversion produced a model its runtime cannot execute") from None
    batch_sizes = [1]
    n_out = len(refs[0])
    if len(got[0]) != n_out:
        raise ValidationError(f"{artifact.name} has {len(got[0])} outputs, its source {n_out}")
    ref_cat = [np.concatenate([r[k] for r in refs]) for k in range(n_out)]
    got_cat = [np.concatenate([g[k] for g in got]) for k in range(n_out)]
    pairs = [(ref_cat, got_cat)]
    dynamic = all(i.shape and not isinstance(i.shape[0], int) for i in artifact.inputs)
    if dynamic and len(samples) > 1:
        mapped = [artifact_inputs(source, artifact, s) for s in samples]
        batched_in = [np.concatenate([s[k] for s in mapped]) for k in range(len(mapped[0]))]
        pairs.append((ref_cat, runner.run(batched_in)))
        batch_sizes.append(len(samples))
    checks = []
    for k in range(n_out):
        name = artifact.outputs[k].name if k < len(artifact.outputs) else f"output_{k}"
        max_abs = mean_abs = 0.0
        ok = True
        scale = 0.0
        cos, sqnr = cosine_sqnr(ref_cat[k], got_cat[k])
        for ref_list, got_list in pairs:
            ref = np.asarray(ref_list[k], dtype=np.float64)
            out = np.asarray(got_list[k], dtype=np.float64)
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
        if not exact:
            ok = ok and cos >= cfg.min_cosine
        checks.append(OutputCheck(name=name, max_abs=max_abs, max_rel=max_abs / scale if scale else 0.0,
                                  mean_abs=mean_abs, cosine=cos, sqnr_db=sqnr, passed=ok))
    top1 = top5 = kl = None
    r0, g0 = ref_cat[0], got_cat[0]
    classifier = source_is_classifier(r0, source, cfg)
    if exact:
        if classifier:  # reported beside the element-wise rule, which alone decides
            top1, top5 = top_k_agreement(r0, g0, 1), top_k_agreement(r0, g0, min(5, r0.shape[1]))
            kl = kl_divergence(r0, g0)
        criterion = f"|err| <= {cfg.atol:g} + {cfg.rtol:g}*|ref| for every element"
        passed = all(c.passed for c in checks)
    else:  # the rule the quantisation budget uses (edgeship.fidelity.judge)
        j = judge(ref_cat, got_cat, classifier=classifier, min_cosine=cfg.min_cosine, max_drop=cfg.max_drop,
                  labels=eval_labels)
        top1, top5, kl = j.get("top1_agreement"), j.get("top5_agreement"), j.get("kl_divergence")
        criterion = j["criterion"] + ("" if classifier else " (judged as a tensor, not class scores)")
        passed = j["passed"] and all(c.passed for c in checks)
    return Verification(
        reference=f"{source.kind} source {source.name}", samples=len(samples), inputs=origin, batch_sizes=tuple(batch_sizes),
        atol=cfg.atol, rtol=cfg.rtol, outputs=tuple(checks), top1_agreement=top1, top5_agreement=top5,
        kl_divergence=kl, criterion=criterion, passed=passed,
    )


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
    if v.passed:
        return
    worst = ", ".join(f"{c.name}: max abs {c.max_abs:.3g}, max rel {c.max_rel:.3g}, cosine {c.cosine:.4f}"
                      for c in v.outputs if not c.passed)
    if v.top1_agreement is not None and not worst:
        worst = f"top-1 agreement {v.top1_agreement:.0%}"
    how = "raise --atol/--rtol" if artifact.precision == "fp32" else "raise --max-drop or lower --min-cosine"
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
