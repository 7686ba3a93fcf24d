"""TFLite flatbuffers: the LiteRT interpreter's op and tensor tables, read in a child process.

The flatbuffer is parsed by native code, so it is read in an isolated child process
(:func:`edgeship.isolate.run_isolated`): a malformed file that crashes the parser becomes a typed
error, not a dead CLI. Analysis and the tflite target both read files through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import EdgeshipError, FormatError, MissingExtraError

__all__ = ["module_from_tensor_name", "read_tflite", "tflite_tables"]


def tflite_tables(path: str) -> dict[str, Any]:  # runs in the isolated child process
    import contextlib
    import io

    from ai_edge_litert.interpreter import Interpreter

    from .._util import native_stderr_silenced

    # LiteRT announces its XNNPACK delegate on fd 2 ("INFO: Created TensorFlow Lite XNNPACK delegate")
    with native_stderr_silenced(), contextlib.redirect_stdout(io.StringIO()):
        try:
            it = Interpreter(model_path=path)
        except ValueError as e:  # LiteRT's refusal of a file that is no valid flatbuffer: the file, not a bug
            raise FormatError(f"the LiteRT interpreter cannot read {path}: {str(e).strip().splitlines()[0][:300]}",
                              hint="the file is corrupt or not a TFLite flatbuffer; export it again") from None
        ops = [{"index": int(o["index"]), "op": str(o["op_name"]), "inputs": [int(i) for i in o["inputs"]],
                "outputs": [int(i) for i in o["outputs"]]} for o in it._get_ops_details()]
        tensors = []
        for t in it.get_tensor_details():
            import numpy as np

            dt = np.dtype(t["dtype"])
            tensors.append({"index": int(t["index"]), "name": str(t["name"]),
                            "shape": [int(d) for d in t["shape"]], "dtype": dt.name, "itemsize": dt.itemsize})
        inputs = [int(d["index"]) for d in it.get_input_details()]
        outputs = [int(d["index"]) for d in it.get_output_details()]
        delegates: list[dict[str, Any]] = []
        try:
            it.allocate_tensors()
            n = len(ops)
            for o in it._get_ops_details()[n:]:
                if str(o["op_name"]) == "DELEGATE":
                    delegates.append({"inputs": [int(i) for i in o["inputs"]], "outputs": [int(i) for i in o["outputs"]]})
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            delegates = [{"error": str(e)[:300]}]
    return {"ops": ops, "tensors": tensors, "inputs": inputs, "outputs": outputs, "delegates": delegates}


def read_tflite(path: Path) -> dict[str, Any]:
    """The op/tensor tables of a .tflite file, read by the LiteRT interpreter in an isolated child."""
    import importlib.util

    from ..isolate import IsolatedInternalError, in_child, run_isolated

    if importlib.util.find_spec("ai_edge_litert") is None:
        raise MissingExtraError("reading a .tflite file needs ai-edge-litert", hint="pip install 'edgeship[tflite]'")
    if in_child():  # already isolated (analyze on a file): no second child
        return tflite_tables(str(path))
    try:
        return run_isolated("edgeship.formats.tflite:tflite_tables", {"path": str(path)}, what=str(path))
    except FormatError:
        raise
    except EdgeshipError as e:
        if isinstance(e, (MissingExtraError, IsolatedInternalError)):  # a bug keeps its log hint
            raise
        raise FormatError(f"the LiteRT interpreter cannot read {path}: {e.message}",
                          hint="the file is corrupt or not a TFLite flatbuffer; export it again") from None


def module_from_tensor_name(name: str) -> str | None:
    """'pkg.Model/torch.nn...Sequential_features/torch.nn...Conv2d_0;1' -> 'features.0'."""
    if "/" not in name:
        return None
    last = name.split(";;")[-1].split(";")[0]
    parts = last.split("/")[1:]
    attrs = []
    for seg in parts:
        cls = seg.rsplit(".", 1)[-1]
        if "_" not in cls:
            return None
        attrs.append(cls.split("_", 1)[1])
    return ".".join(attrs) or None
