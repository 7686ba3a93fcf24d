"""A plugin runtime with a file format of its own, written as a plugin author would: this one file,
nothing in edgeship touched.

``npz-graph`` ships the onnx target's fp32 graph inside a numpy archive (``model.npz``: the graph's
bytes as a uint8 array) and runs it by handing those bytes to ONNX Runtime. Its format is new to
edgeship: the module registers it (:func:`edgeship.artifact.register_format`), so its records read
back anywhere the module is registered. ``npz_graph_compress`` (its own option) stores the archive
compressed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from edgeship.artifact import Artifact, Format, TensorSpec, register_format
from edgeship.targets import Built, Runner, Target

FORMAT = register_format("npz-graph")
MODEL_FILE = "model.npz"


class NpzGraphOptions(BaseModel):
    """The target's own knob: it joins the deploy options as npz_graph_compress (--npz-graph-compress)."""

    npz_graph_compress: bool = Field(False, description="npz-graph: store the archive compressed")


class NpzGraphRunner(Runner):
    """The archive's graph on ONNX Runtime's CPU provider."""

    def __init__(self, artifact: Artifact, threads: int = 1) -> None:
        super().__init__(artifact.model_path, threads)
        import onnxruntime as ort

        with np.load(self.path, allow_pickle=False) as archive:
            graph = archive["graph"].tobytes()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(int(threads), 0)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        self._inputs = artifact.inputs

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o) for o in self.session.run(None, feeds)]


class NpzGraphTarget(Target):
    name: ClassVar[str] = "npz-graph"
    format: ClassVar[Format] = FORMAT
    description: ClassVar[str] = "the onnx target's graph in a numpy archive (a test plugin with its own format)"
    requires: ClassVar[tuple[str, ...]] = ("onnxruntime",)
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    accepts: ClassVar[tuple[str, ...]] = ("torch", "pt2", "onnx")
    derives_from: ClassVar[str | None] = "onnx"
    hidden: ClassVar[bool] = True
    Options: ClassVar[type[BaseModel] | None] = NpzGraphOptions

    def export(self, source: Any, out_dir: Path, cfg: Any, precision: str = "fp32",
               base: Artifact | None = None) -> Built:
        assert base is not None
        compress = self.options(cfg).npz_graph_compress
        graph = np.frombuffer(base.model_path.read_bytes(), np.uint8)
        (np.savez_compressed if compress else np.savez)(out_dir / MODEL_FILE, graph=graph)
        return Built(files=(MODEL_FILE,), inputs=base.inputs, outputs=base.outputs, preprocess=base.preprocess,
                     stage="npz-graph.pack", config={"onnx_digest": base.digest, "compressed": compress},
                     tools=("numpy", "onnxruntime"))

    def runner(self, artifact: Artifact, threads: int = 1) -> Runner:
        return NpzGraphRunner(artifact, threads=threads)
