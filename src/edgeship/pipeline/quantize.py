"""``quantize``: a verified int8 (or fp16) ONNX artifact from an fp32 one edgeship wrote (into its
output folder, listed in its manifest), or from any model deploy takes (exported first)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .._util import Progress, article, noop_progress, refuse_release, tool_versions
from ..artifact import ARTIFACT_JSON, Artifact
from ..config import DeployConfig, QuantizeCommandConfig
from ..errors import EdgeshipError, FormatError, UsageError
from ..isolate import in_child, run_isolated
from ..manifest import add_to_manifest, listed_paths, read_manifest
from ..quant import REPORT_FILE
from ..sources import load_source
from ..targets import load_artifact
from ..targets.onnx import quantize_record
from .build import convert
from .orchestration import DeployResult, deploy
from .stages import refresh_report
from .workers import child_progress

__all__ = ["quantize", "quantize_child", "quantization_report", "artifact_or_none"]


def quantize(model: str | Path | Artifact, progress: Progress = noop_progress, **options: Any) -> Artifact:
    """Build a verified int8 (or fp16) ONNX artifact within the accuracy budget (see
    :func:`edgeship.quantize`)."""
    if options.get("method") == "fp16":  # `--method fp16` is the fp16 recipe
        options = {**options, "method": "auto", "precision": "fp16"}
    qc = QuantizeCommandConfig.build(**options)
    fields = set(DeployConfig.model_fields)
    shared = {k: v for k, v in qc.model_dump().items() if k in fields and k != "out"}
    art = model if isinstance(model, Artifact) else artifact_or_none(model)
    if art is None:
        out_root = Path(qc.out) if qc.out else Path("edgeship-out")
        res = deploy(DeployConfig.build(model=str(model), targets=["onnx"], quantize=[qc.precision], out=out_root,
                                        package=False, **shared), progress=progress)
        assert isinstance(res, DeployResult)
        return next(a for a in res.artifacts if a.precision == qc.precision)
    if art.format.value != "onnx" or art.precision != "fp32":
        raise UsageError(f"{art.root} is {article(art.format.value)} {art.precision} artifact; quantize takes an fp32 ONNX one",
                         hint="give the onnx-fp32 folder written by edgeship deploy, or the model itself")
    out = Path(qc.out) if qc.out else art.root.parent / f"onnx-{qc.precision}"
    refuse_release(out)  # before any work: a signed release is never written into
    listed_in = _check_out(art, out, qc.overwrite)
    if qc.isolate and not in_child():
        # the model file is input for native parsers (onnx, ORT): do the work in a limited child
        progress(f"working on {art.model_path} in an isolated child process")
        doc = run_isolated("edgeship.pipeline.quantize:quantize_child",
                           {"model": str(art.root), "options": {**qc.model_dump(mode="json"), "out": str(out)}},
                           what=str(art.model_path))
        return load_artifact(doc["root"])
    cfg = DeployConfig.build(model=str(art.model_path), targets=["onnx"], **shared)
    source = load_source(str(art.model_path))
    # the fp32 file is the one edgeship wrote from its source (its files were checked on loading):
    # the int8 made from it names that source, as deploy's does, so the same options give the same bytes
    source = dataclasses.replace(source, preprocess=art.preprocess, task=art.task, labels=art.labels, name=art.name.rsplit("-onnx", 1)[0],
                                 digest=art.provenance.parent_digest or source.digest)
    current = _up_to_date(out, art, cfg, qc.precision)
    if current is not None:
        progress(f"{out} is up to date: made from this {art.root.name} with the same options "
                 "(--overwrite builds it again)")
        return current
    try:
        was = artifact_or_none(out) if out.is_dir() else None
    except EdgeshipError:
        was = None
    new = convert(source, "onnx", out, cfg, progress=progress, precision=qc.precision, parent=art)
    if was is not None and was.digest != new.digest:
        same_model = {f.sha256 for f in was.files if f.path == was.model_file} == \
            {f.sha256 for f in new.files if f.path == new.model_file}
        progress(f"replaced {out}: " + ("the same model bytes, its report measured again" if same_model else
                                        f"its bytes changed ({was.digest[:12]}… → {new.digest[:12]}…)"))
    if listed_in is not None:  # the folder's manifest lists the parent: it lists the new artifact too
        rec = new.record()
        rec["id"] = rec["path"] = out.name
        added = add_to_manifest(listed_in, rec, parent_path=art.root.name)
        if added and added[1]:
            progress(f"the figures measured on the old {', '.join(added[1])} are stale now: moved to "
                     f"{listed_in / 'manifest.json'} stages.*.stale (edgeship benchmark {listed_in} measures again)")
        refresh_report(listed_in)
    return new


def quantize_child(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """quantize() inside the isolated child; the new artifact's folder crosses back."""
    return {"root": str(quantize(model, progress=child_progress, **options).root)}


def _up_to_date(out: Path, parent: Artifact, cfg: DeployConfig, precision: str) -> Artifact | None:
    """The artifact in ``out`` when it is what quantizing ``parent`` with ``cfg`` would make: the
    same parent, precision, recorded options and tool versions, on the built-in data (a --calib or
    --eval folder may have changed since), its files intact. Otherwise None."""
    if cfg.overwrite or cfg.calib is not None or cfg.eval is not None or not out.is_dir():
        return None
    try:
        there = load_artifact(out)
        there.verify_files()
    except EdgeshipError:
        return None
    prov = there.provenance
    tools = tool_versions("onnx", "onnxruntime")  # with edgeship's own
    same = (there.format.value == "onnx" and there.precision == precision and prov.parent_digest == parent.digest
            and prov.config == json.loads(json.dumps(quantize_record(cfg), default=str))
            and all(tools.get(k) == v for k, v in prov.tool_versions.items() if k in ("edgeship", "onnx", "onnxruntime")))
    return there if same else None


def _check_out(parent: Artifact, out: Path, overwrite: bool) -> Path | None:
    """Before any work: may ``quantize`` write ``out`` (derived from ``parent``)? An existing
    artifact there made from another model, something that is not an artifact, or another model's
    output folder needs ``--overwrite``. Returns the folder whose manifest gets the new artifact."""
    if out.exists():
        try:
            there = load_artifact(out) if out.is_dir() else None
        except EdgeshipError:
            there = None
        same = there is not None and there.provenance.parent_digest in (parent.digest, parent.provenance.parent_digest)
        if not same and not overwrite:
            what = (f"an artifact of another model ({there.name})" if there is not None
                    else "something that is not an edgeship artifact")
            raise UsageError(f"{out} holds {what}", hint="give another --out, or --overwrite to replace it")
    folder = out.parent
    m = read_manifest(folder)
    if m is None:
        return None
    if folder.resolve() == parent.root.parent.resolve() and parent.root.name in listed_paths(m):
        return folder
    if not overwrite:
        raise UsageError(f"{folder} holds the artifacts of {(m.get('source') or {}).get('name') or 'another model'}, "
                         f"and {parent.root} is not one of them",
                         hint="give --out in another folder, or --overwrite to write there anyway (unlisted)")
    return None


def artifact_or_none(model: str | Path) -> Artifact | None:
    """The artifact ``model`` names (its folder, or a model file beside its artifact.json), else None."""
    p = Path(model)
    if p.is_dir() or (p.is_file() and (p.parent / ARTIFACT_JSON).is_file()):
        return load_artifact(p)
    return None


def quantization_report(artifact: Artifact | str | Path) -> dict[str, Any]:
    """The full quantisation report of an artifact the onnx quantiser built (``quantization.json``),
    or ``{}`` when it has none (its summary is ``artifact.details["quantization"]``)."""
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    path = art.root / REPORT_FILE
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise FormatError(f"{path} is not a readable quantisation report: {str(e)[:200]}",
                          hint="quantize the artifact again to rewrite it") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{path} is not a quantisation report (not a JSON object)",
                          hint="quantize the artifact again to rewrite it")
    return doc
