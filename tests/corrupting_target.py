"""A target that converts an ONNX file wrongly on purpose (one Conv's weights scaled), to show that
a failed fp32 verification names the first node whose output diverges."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
from onnx import numpy_helper

from edgeship.artifact import Artifact, Format
from edgeship.formats.onnx import OnnxRunner, io_specs
from edgeship.targets import Built, Runner, Target


class CorruptingTarget(Target):
    name: ClassVar[str] = "corrupt"
    format: ClassVar[Format] = Format.onnx
    requires: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime")
    accepts: ClassVar[tuple[str, ...]] = ("onnx",)
    hidden: ClassVar[bool] = True
    conv_index: ClassVar[int] = 1  # which Conv (in graph order) gets wrong weights

    def export(self, source: Any, out_dir: Path, cfg: Any, precision: str = "fp32",
               base: Artifact | None = None) -> Built:
        model = onnx.load(str(source.path))
        conv = [n for n in model.graph.node if n.op_type == "Conv"][self.conv_index]
        for init in model.graph.initializer:
            if init.name == conv.input[1]:
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.5), init.name))
        onnx.save(model, str(out_dir / "model.onnx"))
        ins, outs = io_specs(model)
        return Built(files=("model.onnx",), inputs=ins, outputs=outs, stage="corrupt.scale", tools=("onnx",))

    def runner(self, artifact: Artifact, threads: int = 1) -> Runner:
        return OnnxRunner(artifact.model_path, threads=threads)
