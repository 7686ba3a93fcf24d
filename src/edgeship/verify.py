"""Numerical verification of an artifact against its source, on real inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .artifact import Artifact, OutputCheck, Verification
from .errors import EdgeshipError, ValidationError

if TYPE_CHECKING:
    from .config import VerifyConfig
    from .sources import Source
    from .targets import Runner


def verify(source: Source, artifact: Artifact, runner: Runner, cfg: VerifyConfig) -> Verification:
    """Run source and artifact on the same real inputs; per output max abs / rel error.

    Each sample runs at batch 1; when the artifact's batch axis is dynamic, all samples also run
    as one batch, so a broken dynamic axis fails here rather than on a device.
    An element passes when ``|a - ref| <= atol + rtol * |ref|`` (numpy.allclose semantics);
    ``max_rel`` is the max abs error divided by the largest |ref| of that output.
    """
    samples = source.verification_inputs(limit=cfg.samples)
    refs = [source.run(s) for s in samples]
    try:
        got = [runner.run(list(s)) for s in samples]
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
        batched_in = [np.concatenate([s[k] for s in samples]) for k in range(len(samples[0]))]
        pairs.append((ref_cat, runner.run(batched_in)))
        batch_sizes.append(len(samples))
    checks = []
    for k in range(n_out):
        name = artifact.outputs[k].name if k < len(artifact.outputs) else f"output_{k}"
        max_abs = mean_abs = 0.0
        ok = True
        scale = 0.0
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
            ok = ok and finite and bool(np.all(diff <= cfg.atol + cfg.rtol * np.abs(ref)))
        checks.append(OutputCheck(name=name, max_abs=max_abs, max_rel=max_abs / scale if scale else 0.0,
                                  mean_abs=mean_abs, passed=ok))
    top1 = None
    r0 = ref_cat[0]
    if r0.ndim == 2 and r0.shape[1] > 1:
        top1 = float(np.mean(np.argmax(r0, 1) == np.argmax(got_cat[0], 1)))
    return Verification(
        reference=f"{source.kind} source {source.name}", samples=len(samples), batch_sizes=tuple(batch_sizes),
        atol=cfg.atol, rtol=cfg.rtol, outputs=tuple(checks), top1_agreement=top1,
        passed=all(c.passed for c in checks),
    )


def raise_if_failed(artifact: Artifact, v: Verification) -> None:
    if v.passed:
        return
    worst = ", ".join(f"{c.name}: max abs {c.max_abs:.3g}, max rel {c.max_rel:.3g}" for c in v.outputs if not c.passed)
    raise ValidationError(
        f"{artifact.name} does not match its source within atol={v.atol:g}, rtol={v.rtol:g} ({worst})",
        hint="the artifact was not written; raise --atol/--rtol if this error is acceptable",
        outputs=[c.model_dump() for c in v.outputs],
    )
