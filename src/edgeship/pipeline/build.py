"""Building the plan's steps: one conversion with its verification (:func:`convert`), the steps of
a group one after another (:func:`build_steps`, each from the cache when it holds it), and a
failed cell as the manifest keeps it (:func:`cell_failure`, :func:`failure_error`)."""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import errors
from .._util import Progress, article, atomic_dir, atomic_write_text, noop_progress
from ..artifact import ARTIFACT_JSON, LABELS_TXT, Artifact
from ..config import DeployConfig
from ..errors import EdgeshipError, MissingExtraError, UnsupportedError, ValidationError, first_line, printable
from ..formats.onnx import requantising_refused
from ..isolate import Limits
from ..sources import Source
from ..targets import get_target
from ..verify import observed_outputs, raise_if_failed
from .keys import TaskKeys
from .plan import Step

__all__ = ["convert", "own_bytes", "build_steps", "cell_failure", "failure_error", "failures_text", "limits_for"]


def convert(source: Source, target: str, out_dir: str | Path, cfg: DeployConfig | None = None,
            progress: Progress = noop_progress, precision: str = "fp32", parent: Artifact | None = None,
            fp32: Artifact | None = None) -> Artifact:
    """Convert ``source`` for ``target`` at ``precision``, verify it, write it to ``out_dir`` atomically.
    ``parent``: what it is built from; ``fp32``: the same target's fp32 artifact, which a reduced
    precision's size is compared with (default: ``parent`` when it is that).

    An artifact that fails verification is never written: ValidationError with the figures.
    """
    if fp32 is None and parent is not None and parent.precision == "fp32" and parent.target == target:
        fp32 = parent
    cfg = cfg or DeployConfig.build(model=source.origin)
    t = get_target(target)
    t.ensure_environment()
    if source.kind not in t.accepts:
        raise UnsupportedError(f"target {t.name!r} cannot convert {article(source.kind)} model",
                               hint=f"it converts from: {', '.join(t.accepts)}")
    if precision not in t.precisions:
        raise UnsupportedError(f"target {t.name!r} does not build {precision}",
                               hint=f"it builds: {', '.join(t.precisions)}")
    final = Path(out_dir)
    t.progress = lambda msg: progress(f"{t.name} {precision}: {msg}")
    with atomic_dir(final) as tmp:
        progress(f"{t.name} {precision}: converting")
        art = t.convert(source, tmp, cfg, precision=precision, parent=parent)
        progress(f"{t.name} {precision}: verifying against the source")
        v = t.verify(source, art, cfg)
        # the outputs as the artifact returns them (a declared shape that does not fit is replaced)
        art = art.model_copy(update={"verification": v, "outputs": observed_outputs(art, v)})
        raise_if_failed(art, v)
        if v.status == "unverified":
            progress(f"{t.name} {precision}: UNVERIFIED (random inputs only): give --eval real data")
        art = _note_float_tables(source, art, fp32)
        if art.labels:
            atomic_write_text(tmp / LABELS_TXT, "\n".join(art.labels) + "\n")
        atomic_write_text(tmp / ARTIFACT_JSON, json.dumps(art.record(), indent=2) + "\n")
    return art.model_copy(update={"root": final})


def own_bytes(art: Artifact, other: Artifact) -> int:
    """The bytes of ``art``'s files that ``other`` does not hold too (the same path and content),
    the model file always counted: a runtime both vendor (the web target's wasm) is not what a
    precision changes."""
    shared = {(f.path, f.sha256) for f in other.files if f.path not in (art.model_file, other.model_file)}
    return sum(f.size for f in art.files if (f.path, f.sha256) not in shared)


def _note_float_tables(source: Source, art: Artifact, fp32: Artifact | None) -> Artifact:
    """An int8 artifact that hardly shrank because its toolchain leaves embedding tables in float
    says so, with the tables and their size (``details.float_weights``), instead of looking int8;
    one larger than its target's fp32 says why. Sizes are of what the two do not share."""
    if art.precision != "int8" or fp32 is None:
        return art
    mine, theirs = own_bytes(art, fp32), own_bytes(fp32, art)
    if not theirs:
        return art
    ratio = mine / theirs
    if ratio >= 1.0:  # a tiny model: the scales, zero points and Q/DQ nodes outweigh the bytes saved
        note = (f"int8 is larger than fp32 ({mine / 1e3:.1f} kB vs {theirs / 1e3:.1f} kB): "
                "in a model this small the quantisation parameters (scales, zero points, quantise/dequantise "
                "nodes) outweigh the weight bytes int8 saves; not recommended, ship fp32 (or fp16)")
        art = art.model_copy(update={"notes": (*art.notes, note), "details": {
            **art.details, "larger_than_fp32": {"bytes": mine, "fp32_bytes": theirs}}})
    tables = source.embedding_tables()
    big = sum(b for _, b in tables)
    if ratio < 0.6 or big < 0.25 * theirs:
        return art
    names = ", ".join(n for n, _ in tables[:4]) + (f" and {len(tables) - 4} more" if len(tables) > 4 else "")
    note = (f"int8 is {ratio:.0%} of the fp32 size: {art.target}'s int8 toolchain quantises conv/linear weights, "
            f"not embedding tables, so {names} ({big / 1e6:.2f} MB) {'stays' if len(tables) == 1 else 'stay'} float32"
            + ("; the onnx target quantises them (int8 rows, dequantised after the lookup)" if art.target != "onnx" else ""))
    return art.model_copy(update={"notes": (*art.notes, note),
                                  "details": {**art.details, "float_weights": {
                                      "tables": [n for n, _ in tables], "bytes": big, "size_ratio": round(ratio, 4)}}})


def build_steps(cfg: DeployConfig, source: Source, steps: Sequence[Step], stage: Path, keys: TaskKeys | None,
                timings: dict[str, float], progress: Progress) -> tuple[list[Artifact], list[dict[str, Any]]]:
    """Build ``steps`` one after another into ``stage`` (each from the cache when it holds it):
    the artifacts written and the cells that were not, each with its reason."""
    artifacts: list[Artifact] = []
    built: dict[tuple[str, str], Artifact] = {}
    failed: list[dict[str, Any]] = []
    for step in steps:
        t1 = time.perf_counter()
        target, precision, name = step.target, step.precision, step.id
        folder = stage / name
        base = get_target(target).derives_from
        k = keys.convert(target, precision) if keys is not None else None
        gone = None
        try:
            gone = next((f for f in failed if (f["target"], f["precision"]) in ((base, precision), (target, "fp32"))), None)
            if gone is not None:  # what it is built from was not written: neither is it, for the same reason
                kind = ValidationError if issubclass(errors.error_class(gone["error"]), ValidationError) else UnsupportedError
                raise kind(f"{gone['target']} {gone['precision']}, which it is built from, was not written: {gone['message']}",
                           hint=gone["hint"])
            if precision != "fp32" and source.quantised:
                raise requantising_refused(source.name, source.quantised, precision)
            art = keys.reuse(k, folder, name, progress) if keys is not None and k is not None else None
            if art is None:
                # parent: the artifact it is built from (ort, web: onnx's at this precision), else its own fp32
                parent = built.get((base or "", precision)) or built.get((target, "fp32"))
                art = convert(source, target, folder, cfg, progress=progress, precision=precision, parent=parent,
                              fp32=built.get((target, "fp32")))
                if keys is not None and k is not None:
                    keys.keep(k, folder, name, time.perf_counter() - t1)
        except Exception as e:  # noqa: BLE001 - one cell's failure is a row of the outcome, never the run's end
            # an artifact that fails (below budget, an op its converter cannot take, a converter's own
            # crash) is reported and not written; the other cells are still built and the verified
            # ones land (what depends on it fails with it, naming it)
            failure = cell_failure(target, precision, e)
            if (keys is not None and k is not None and gone is None and isinstance(e, (ValidationError, UnsupportedError))
                    and not isinstance(e, MissingExtraError) and not getattr(e, "from_cache", False)):
                keys.keep_failure(k, failure, time.perf_counter() - t1)
            failed.append(failure)
            progress(f"{target} {precision}: not written ({failure['message']})")
            continue
        built[(target, precision)] = art
        artifacts.append(art)
        timings[f"convert.{target}.{precision}"] = time.perf_counter() - t1
    return artifacts, failed


def limits_for(steps: Sequence[Step]) -> Limits:
    """The limits of a child process that builds ``steps``: a runtime that reserves far more
    address space than it uses (the browser's V8 cage) is limited by its data segment, as the
    benchmark's workers are."""
    return limits_for_targets(s.target for s in steps)


def limits_for_targets(targets: Iterable[str]) -> Limits:
    """:func:`limits_for` by target names (a child that runs artifacts of these targets)."""
    kinds = {get_target(t).memory_limit for t in targets}
    return dataclasses.replace(Limits.from_env(), memory_kind="data" if "data" in kinds else "address_space")


def failures_text(failed: Sequence[dict[str, Any]]) -> str:
    """The failed cells in one line: 'target-precision: message; ...'."""
    return "; ".join(f"{f['target']}-{f['precision']}: {f['message']}" for f in failed)


def cell_failure(target: str, precision: str, e: BaseException) -> dict[str, Any]:
    """One cell's failure as the manifest keeps it: the error's type, message and hint; a failure
    that is not an edgeship error (a converter's or runtime's own exception) is an internal error
    named as such, with its traceback's last lines for the report."""
    if isinstance(e, EdgeshipError):
        d = e.to_dict(plain=True)  # the one error codec (edgeship.errors); details as JSON holds them
        out = {"target": target, "precision": precision, "error": d["type"], "message": d["message"], "hint": e.hint}
        if e.details:
            out["details"] = d.get("details", {})
        return out
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    return {"target": target, "precision": precision, "error": "InternalError",
            "message": printable(f"internal error: {type(e).__name__}: {first_line(e, 300)}"),
            "hint": "a bug in edgeship or the converter it calls: please report it with the traceback kept in "
                    "manifest.json (stages.convert.failed)",
            "traceback": printable("".join(tb[-6:]))[-3000:]}


def failure_error(f: dict[str, Any]) -> EdgeshipError:
    """The typed error a failure record stands for (an internal error: the base EdgeshipError)."""
    return errors.from_dict({**f, "type": f.get("error"), "message": f"{f['target']} {f['precision']}: {f['message']}"})
