"""Parse a model file and run it once — the riskiest thing edgeship does with an untrusted file.

``probe(path)`` is meant to run isolated (``edgeship.isolate.run_isolated("edgeship.probe:probe",
{"path": ...})``): the fuzz script and the isolation tests use it; deploy runs its whole job
isolated for model files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import FormatError, UnsupportedError


def probe(path: str, run: bool = True) -> dict[str, Any]:
    """Format, inputs and outputs of a model file; with ``run``, one inference on zeros."""
    from .sources import load_onnx_model, load_source, sniff_format

    p = Path(path)
    kind = sniff_format(p)
    if kind == "onnx":
        from .formats.onnx import OnnxRunner, io_specs

        model = load_onnx_model(p)
        ins, outs = io_specs(model)
        result: dict[str, Any] = {"format": "onnx", "inputs": [i.model_dump() for i in ins],
                                  "outputs": [o.model_dump() for o in outs]}
        if run:
            runner = OnnxRunner(p, threads=1)
            feeds = {s.name: np.zeros(s.concrete_shape(1), dtype=_np_dtype(s.dtype)) for s in runner.inputs}
            result["output_shapes"] = [list(np.shape(o)) for o in runner.run(feeds)]
        return result
    if kind == "tflite":
        return _probe_tflite(p, run)
    source = load_source(str(p))
    return {"format": source.kind, "inputs": [i.model_dump() for i in source.inputs],
            "outputs": [o.model_dump() for o in source.outputs]}


def _np_dtype(name: str) -> Any:
    try:
        return np.dtype(name)
    except TypeError:
        raise UnsupportedError(f"input dtype {name} is not supported for a probe run") from None


def _probe_tflite(p: Path, run: bool) -> dict[str, Any]:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UnsupportedError("reading .tflite files needs the LiteRT interpreter",
                               hint="pip install 'edgeship[tflite]'") from None
    try:
        interp = Interpreter(model_path=str(p), num_threads=1)
        interp.allocate_tensors()
        ins = interp.get_input_details()
        outs = interp.get_output_details()
        result: dict[str, Any] = {
            "format": "tflite",
            "inputs": [{"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name} for d in ins],
            "outputs": [{"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name} for d in outs],
        }
        if run:
            for d in ins:
                interp.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
            interp.invoke()
            result["output_shapes"] = [list(interp.get_tensor(d["index"]).shape) for d in outs]
        return result
    except (ValueError, RuntimeError) as e:
        raise FormatError(f"{p} is not a valid .tflite model: {str(e).splitlines()[0][:300]}",
                          hint="the file is corrupt or of another format; convert it again") from None
