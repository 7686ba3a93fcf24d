"""ONNX target: torch.export → ONNX (dynamo exporter, one file, dynamic batch) → onnxslim.

Runs on ONNX Runtime's CPU provider with an explicit intra-op thread count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._util import quiet
from ..artifact import Artifact, Format, Provenance, file_entries
from ..errors import UnsupportedError, first_line
from ..formats.onnx import WEIGHT_ONLY_SESSION_CONFIG, OnnxRunner, io_specs
from ..runner import Runner
from ..sources import ONNX_METADATA_PREFIX as METADATA_PREFIX
from ..sources import load_onnx_model, onnx_metadata
from .base import Built, Target

if TYPE_CHECKING:
    from ..config import DeployConfig
    from ..sources import Source

MODEL_FILE = "model.onnx"


SCOPE_KEYS = ("pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy")


def _node_scopes(model: Any) -> dict[str, list[tuple[str, str]]]:
    """node name -> the exporter's source-module metadata (onnxslim drops node metadata)."""
    return {n.name: [(p.key, p.value) for p in n.metadata_props if p.key in SCOPE_KEYS]
            for n in model.graph.node if n.name}


def _restore_scopes(model: Any, scopes: dict[str, list[tuple[str, str]]]) -> None:
    """Put back only the module path and class hierarchy (no stack traces: they leak local paths)."""
    for n in model.graph.node:
        keep = scopes.get(n.name)
        if not keep:
            continue
        have = {p.key for p in n.metadata_props}
        for k, v in keep:
            if k not in have:
                p = n.metadata_props.add()
                p.key, p.value = k, v


def quiet_exporter() -> Any:
    """Keep converter chatter (prints, warnings, logs) off the user's screen."""
    return quiet("torch", "torch.onnx", "torch.export", "onnxscript", "onnx_ir")


def artifact_from_onnx(path: Path) -> Artifact:
    """An in-memory artifact for a bare .onnx: what edgeship embedded (preprocessing, labels) when it
    wrote the file; for any other ONNX file just its inputs and outputs (benchmark and run it, but
    nothing to classify with). A file that does not parse, or declares what edgeship cannot hold, is a
    FormatError naming the value (:func:`edgeship.sources.load_onnx_model`). The file is untrusted:
    it is parsed in the limited child (:func:`edgeship.isolate.run_isolated`), its description
    crossing as JSON."""
    from ..isolate import in_child, run_isolated

    if not in_child():
        rec = run_isolated("edgeship.targets.onnx:onnx_artifact_record", {"path": str(path)}, what=str(path))
        labels = rec.pop("labels", None)
        return Artifact(root=path.parent, labels=tuple(labels) if labels else None, **rec)

    model = load_onnx_model(path, weights=False)  # the one ONNX reader: a malformed value is named
    pre, labels, meta = onnx_metadata(model, path)
    inputs, outputs = io_specs(model)
    return Artifact(
        name=path.stem, target="onnx", format=Format.onnx, root=path.parent,
        files=file_entries(path.parent, [path.name]), model_file=path.name, inputs=inputs, outputs=outputs,
        preprocess=pre, labels=labels,
        provenance=Provenance(stage="onnx.file", parent_digest=meta.get("source_digest"), source=str(path)),
        notes=("read from the metadata embedded in the .onnx file; no artifact.json beside it",) if meta else
              ("a bare .onnx without edgeship metadata: no preprocessing or labels known",),
    )


def onnx_artifact_record(path: str) -> dict[str, Any]:
    """:func:`artifact_from_onnx` in the isolated child: the artifact as JSON, labels included."""
    art = artifact_from_onnx(Path(path))
    return {**art.model_dump(mode="json"), "labels": list(art.labels) if art.labels else None}



#: the options an int8/fp16 ONNX artifact records in its provenance (what made it, besides its parent)
QUANTIZE_RECORD = ("method", "calibration", "bias_correction", "calib", "eval", "calib_samples", "eval_samples",
                   "max_drop", "min_cosine", "max_float_layers", "task")


def quantize_record(cfg: Any) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in QUANTIZE_RECORD}

class OnnxTarget(Target):
    name: ClassVar[str] = "onnx"
    format: ClassVar[Format] = Format.onnx
    description: ClassVar[str] = "ONNX (dynamo exporter + onnxslim), runs on ONNX Runtime anywhere"
    requires: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime", "onnxscript", "onnxslim")
    runtime_modules: ClassVar[tuple[str, ...]] = ("onnxruntime",)
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "int8", "fp16")
    accepts: ClassVar[tuple[str, ...]] = ("torch", "pt2", "onnx")
    int8_knobs: ClassVar[tuple[str, ...]] = ("calibration", "max_float_layers", "rounding", "rounding_iters", "equalization")
    int8_methods: ClassVar[tuple[str, ...]] = ("auto", "static", "dynamic", "weight-only")

    @classmethod
    def artifact_from_file(cls, path: Path) -> Artifact | None:
        return artifact_from_onnx(path)

    def export(self, source: Source, out_dir: Path, cfg: DeployConfig, precision: str = "fp32",
               base: Artifact | None = None) -> Built:
        import onnx

        model, notes = self.graph(source, cfg)
        stage = "onnx.slim" if source.kind == "onnx" else "onnx.export"
        inputs, outputs = io_specs(model)
        pre = source.preprocess
        inputs = tuple(
            i.model_copy(update={"layout": pre.layout}) if pre and pre.input == i.name else i for i in inputs
        )
        self._embed_metadata(model, source)
        path = out_dir / MODEL_FILE
        try:
            onnx.save(model, str(path))
        except ValueError as e:  # > 2 GB protobuf limit
            raise UnsupportedError(f"the model is too large for a single ONNX file: {e}",
                                   hint="models over 2 GB need external data, which this target does not write yet") from None
        return Built(files=(MODEL_FILE,), inputs=inputs, outputs=outputs, stage=stage,
                     config={"opset": cfg.opset, "slim": cfg.slim, "dynamic_batch": cfg.dynamic_batch},
                     tools=("torch", "onnx", "onnxscript", "onnxslim", "onnxruntime"), notes=tuple(notes))

    def runtime_requirement(self, artifact: Artifact) -> dict[str, Any]:
        """ONNX Runtime, and the ONNX opset and IR version the file is stamped with (a runtime
        must implement that opset; the ORT compatibility table maps it to a release)."""
        import onnx

        req = super().runtime_requirement(artifact)
        try:
            model = onnx.load(str(artifact.model_path), load_external_data=False)
            opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
            req["requires"] = f"ONNX opset {opset}, IR version {model.ir_version}"
        except Exception:  # noqa: BLE001 - the requirement is a help; the file was verified already
            pass
        return req

    def graph(self, source: Source, cfg: DeployConfig) -> tuple[Any, list[str]]:
        """The graph this target writes, before its metadata: a torch source exported
        (torch.onnx dynamo) or an ONNX file loaded, then slimmed when ``cfg.slim`` (node module
        scopes kept); and notes on what was skipped. ``analyze`` counts this graph."""
        notes: list[str] = []
        if source.kind == "onnx":
            model = load_onnx_model(source.path)
        else:
            model = self._export(source, cfg)
        scopes = _node_scopes(model)
        if cfg.slim:
            try:
                import onnxslim

                with quiet_exporter():
                    model = onnxslim.slim(model)
            except Exception as e:  # slimming is an optimisation: keep the exported graph
                notes.append(f"onnxslim failed and was skipped: {first_line(e)}")
        _restore_scopes(model, scopes)
        return model, notes

    def _export(self, source: Source, cfg: DeployConfig) -> Any:
        import torch

        in_names = [s.name for s in source.inputs]
        out_names = [s.name for s in source.outputs]
        if source.exported is not None:
            model: Any = source.exported
            args: tuple = ()
            dynamic_shapes = None
        else:
            model = source.module
            examples = [torch.from_numpy(np.ascontiguousarray(a)) for a in source.example_inputs]
            dynamic_shapes = None
            if cfg.dynamic_batch:
                # an example batch of 1 would be specialised away: export at batch 2
                examples = [torch.cat([t, t]) if t.dim() > 0 and t.shape[0] == 1 else t for t in examples]
                batch = torch.export.Dim("batch", min=1, max=4096)
                dynamic_shapes = tuple({0: batch} if t.dim() > 0 else {} for t in examples)
            args = tuple(examples)
        try:
            with quiet_exporter():
                program = torch.onnx.export(
                    model, args, dynamo=True, input_names=in_names, output_names=out_names,
                    dynamic_shapes=dynamic_shapes, opset_version=cfg.opset, external_data=False,
                    optimize=False, verify=False, report=False,
                )
                # the optimiser folds BatchNormalization into the Conv before it and gives the fused
                # node the batch norm's module path; remember which conv each batch norm follows
                producer = {o: n for n in program.model_proto.graph.node for o in n.output}
                conv_of_bn = {}
                for n in program.model_proto.graph.node:
                    conv = producer.get(n.input[0]) if n.op_type == "BatchNormalization" and n.input else None
                    if conv is not None and conv.op_type == "Conv" and n.output:
                        conv_of_bn[n.output[0]] = [(p.key, p.value) for p in conv.metadata_props if p.key in SCOPE_KEYS]
                program.optimize()
                proto = program.model_proto
                for n in proto.graph.node:
                    if n.op_type == "Conv" and n.output and conv_of_bn.get(n.output[0]):
                        keep = [p for p in n.metadata_props if p.key not in SCOPE_KEYS]
                        del n.metadata_props[:]
                        n.metadata_props.extend(keep)
                        for k, v in conv_of_bn[n.output[0]]:
                            q = n.metadata_props.add()
                            q.key, q.value = k, v
        except Exception as e:
            raise UnsupportedError(
                f"torch.onnx could not export {source.name}: {first_line(e)}",
                hint="make the model torch.export-able (no data-dependent control flow), "
                     "or pass --no-dynamic-batch if the batch axis is the problem",
            ) from None
        return proto

    def derive(self, source: Source, parent: Artifact, out_dir: Path, cfg: DeployConfig, precision: str) -> Built:
        """int8 / fp16 from this target's fp32 artifact, within the accuracy budget (edgeship.quant)."""
        import onnx

        from ..quant import REPORT_FILE, quantize_onnx, summary

        path, report = quantize_onnx(source, parent, out_dir, cfg, precision, progress=self.say)
        model = onnx.load(str(path))
        self._embed_metadata(model, source)
        onnx.save(model, str(path))
        inputs, outputs = io_specs(model)
        pre = source.preprocess
        inputs = tuple(i.model_copy(update={"layout": pre.layout}) if pre and pre.input == i.name else i for i in inputs)
        s = summary(report)
        up = report.get("opset_upgrade")
        chosen = report["steps"][report["chosen"]]
        if precision == "fp16":
            notes = ["fp16 halves the size; ONNX Runtime's CPU provider has few fp16 kernels and casts around "
                     "them, so on a CPU expect it slower than fp32 (Lite0 here: 6.2 vs 4.7 ms): it pays off on "
                     "GPU/NPU execution providers (CUDA, CoreML, NNAPI, WebGPU)"]
        elif report["method"] == "weight-only":
            notes = [f"weight-only int8: the file is {report['compression_ratio']:.1f}x smaller, compute stays float. "
                     "In ONNX Runtime set the session config entry session.disable_quant_qdq = 1 so the weights are "
                     "dequantised once at load; without it every call dequantises them (Lite0 here: 13.9 vs 4.5 ms). "
                     "edgeship's runner sets it (artifact details.session_config)"]
        else:
            done = "every weighted layer quantised" if not (report.get("fallbacks") or report.get("elementwise_float")) else \
                "weighted layers quantised as below"
            notes = [f"{report['method']} {precision}: " + (f"{len(chosen['excluded'])} layer(s) kept in float to meet the budget"
                                                         if chosen.get("excluded") else done)
                     + (f", biases corrected in {report['bias_correction']['layers']} layer(s)" if "bias_correction" in report else "")]
            if report.get("fallbacks"):
                notes.append("ONNX Runtime's quantiser failed on this model; instead: "
                             + "; ".join(str(f.get("done")) for f in report["fallbacks"]))
            if report.get("elementwise_float"):
                notes.append(f"elementwise {'/'.join(report['elementwise_float'])} kept in float (weighted layers int8) "
                             "to meet the budget")
        if up:
            notes.append(f"the fp32 model is at ONNX opset {up['from']}: converted to opset {up['to']} (onnx version "
                         "converter) before quantising, as per-channel QDQ needs it")
        return Built(
            files=(MODEL_FILE, REPORT_FILE), inputs=inputs, outputs=outputs, stage=f"onnx.quantize.{report['method']}",
            config=quantize_record(cfg),
            tools=("onnx", "onnxruntime"), notes=tuple(notes),
            details={"quantization": s, **({"session_config": dict(WEIGHT_ONLY_SESSION_CONFIG)}
                                           if report["method"] == "weight-only" else {})},
        )

    @staticmethod
    def _embed_metadata(model: Any, source: Source) -> None:
        """Preprocessing and labels ride inside the .onnx so the file alone is self-describing."""
        meta = {p.key: p for p in model.metadata_props}
        entries = {"source_digest": source.digest}
        if source.preprocess:
            entries["preprocess"] = source.preprocess.model_dump_json()
        if source.labels:
            entries["labels"] = json.dumps(list(source.labels))
        for k, v in entries.items():
            key = METADATA_PREFIX + k
            if key in meta:
                meta[key].value = v
            else:
                p = model.metadata_props.add()
                p.key, p.value = key, v
        model.producer_name = "edgeship"

    def runner(self, artifact: Artifact, threads: int = 1) -> Runner:
        return OnnxRunner(artifact.model_path, threads=threads, session_config=artifact.details.get("session_config"))

