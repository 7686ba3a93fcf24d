"""A plugin target, written as a plugin author would: one file, nothing else in edgeship touched.

``onnx-plain`` ships the onnx target's fp32 graph as it is and derives int8 through edgeship's
shared quantisation flow; the base class runs the rest (precision checks, the fp32 parent, the
Artifact, verification, the manifest, the benchmark and the analysis preview).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from edgeship.artifact import Artifact, Format
from edgeship.formats.onnx import OnnxRunner
from edgeship.targets import Built, Runner, Target

MODEL_FILE = "model.onnx"


class PlainOptions(BaseModel):
    """The target's own knob: it joins the deploy options as onnx_plain_doc (--onnx-plain-doc)."""

    onnx_plain_doc: str | None = Field(None, description="onnx-plain: the doc string written into the graph")


class PlainOnnxTarget(Target):
    name: ClassVar[str] = "onnx-plain"
    format: ClassVar[Format] = Format.onnx
    description: ClassVar[str] = "the onnx target's graph, shipped as it is (a test plugin)"
    requires: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime")
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "int8")
    accepts: ClassVar[tuple[str, ...]] = ("torch", "pt2", "onnx")
    derives_from: ClassVar[str | None] = "onnx"
    hidden: ClassVar[bool] = True
    int8_knobs: ClassVar[tuple[str, ...]] = ("calibration", "max_float_layers")  # the shared flow takes them
    int8_methods: ClassVar[tuple[str, ...]] = ("auto", "static", "dynamic", "weight-only")
    Options: ClassVar[type[BaseModel] | None] = PlainOptions

    def export(self, source: Any, out_dir: Path, cfg: Any, precision: str = "fp32",
               base: Artifact | None = None) -> Built:
        assert base is not None
        shutil.copyfile(base.model_path, out_dir / MODEL_FILE)
        doc = self.options(cfg).onnx_plain_doc
        if doc is not None:
            import onnx

            model = onnx.load(str(out_dir / MODEL_FILE))
            model.graph.doc_string = doc
            onnx.save(model, str(out_dir / MODEL_FILE))
        return Built(files=(MODEL_FILE,), inputs=base.inputs, outputs=base.outputs, preprocess=base.preprocess,
                     stage="onnx-plain.copy", config={"onnx_digest": base.digest}, tools=("onnx", "onnxruntime"))

    def derive(self, source: Any, parent: Artifact, out_dir: Path, cfg: Any, precision: str) -> Built:
        from edgeship.quant import REPORT_FILE, quantize_onnx, summary

        _, report = quantize_onnx(source, parent, out_dir, cfg, precision, progress=self.say)
        return Built(files=(MODEL_FILE, REPORT_FILE), inputs=parent.inputs, outputs=parent.outputs,
                     preprocess=parent.preprocess, stage=f"onnx-plain.{report['method']}",
                     tools=("onnx", "onnxruntime"), details={"quantization": summary(report)})

    def runner(self, artifact: Artifact, threads: int = 1) -> Runner:
        return OnnxRunner(artifact.model_path, threads=threads)
