"""ONNX model files from outside: parsed only here (:func:`parse_onnx`), for ``sources`` to vet
further (external data, input and output types and dimensions).

Beyond the protobuf parse, every text field of the model (graph, node, value, tensor, attribute,
function and metadata names, op types, domains, doc strings, in subgraphs too) must be UTF-8: the
ONNX format says so, and a name that is bytes cannot be written to a JSON record, shown or fed.
Protobuf's own reader keeps such a field as bytes; here it is a FormatError naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FormatError
from . import regular_file

__all__ = ["parse_onnx", "check_text_fields", "MAX_SUBGRAPH_DEPTH"]

MAX_SUBGRAPH_DEPTH = 64  # graphs inside If/Loop/Scan attributes inside graphs ...


def parse_onnx(path: str | Path, what: str = "ONNX model") -> Any:
    """An ``onnx.ModelProto`` from ``path`` (external data not loaded), its text fields checked."""
    import onnx
    from google.protobuf.message import DecodeError

    p = regular_file(path, what, hint="give a .onnx file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError, TypeError, MemoryError, RecursionError) as e:
        raise FormatError(f"{p} is not a valid ONNX model ({type(e).__name__})",
                          hint="the file is corrupt or of another format; export it again") from None
    check_text_fields(model, str(p))
    return model


def check_text_fields(msg: Any, where: str) -> None:
    """Every string field of the protobuf message ``msg`` and of the messages inside it is text
    (str), walked without recursion, at most :data:`MAX_SUBGRAPH_DEPTH` graphs deep."""
    from google.protobuf.descriptor import FieldDescriptor as F

    stack: list[tuple[Any, str, int]] = [(msg, "model", 0)]
    while stack:
        m, at, graphs = stack.pop()
        for fd, value in m.ListFields():
            here = f"{at}.{fd.name}"
            repeated = fd.is_repeated
            if fd.type == F.TYPE_STRING:
                for i, v in enumerate(value if repeated else (value,)):
                    if not isinstance(v, str):
                        raise FormatError(f"{where}: {here}{f'[{i}]' if repeated else ''} is not UTF-8 text "
                                          f"({bytes(v)[:60]!r})",
                                          hint="ONNX names are UTF-8 text; export the model again (or rename with "
                                               "onnx.compose / onnx-graphsurgeon)")
            elif fd.type == F.TYPE_MESSAGE:
                depth = graphs + (fd.message_type.name == "GraphProto")
                if depth > MAX_SUBGRAPH_DEPTH:
                    raise FormatError(f"{where}: graphs nest more than {MAX_SUBGRAPH_DEPTH} deep at {here}")
                items = value if repeated else (value,)
                for i, v in enumerate(items):
                    label = f"{here}[{i}]" if repeated else here
                    name = getattr(v, "name", "") if fd.message_type.name in ("NodeProto", "ValueInfoProto",
                                                                                "TensorProto", "AttributeProto") else ""
                    if isinstance(name, str) and name:
                        label += f"({name[:40]})"
                    stack.append((v, label, depth))
