"""What a model file is, from its bytes rather than its name."""

from __future__ import annotations

from pathlib import Path

from ..errors import FormatError, InputError
from ..readers import regular_file
from ..readers.archives import open_zip


def sniff_format(path: Path) -> str:
    """'onnx', 'tflite', 'pt2', 'torch-zip', 'torch-pickle', 'npy' — from the bytes, not the name.
    A folder, a FIFO or a device is refused before anything opens it (:func:`edgeship.readers.regular_file`)."""
    if Path(path).is_dir():
        raise InputError(f"{path} is a folder, not a model file",
                         hint="give a .onnx/.pt2/.tflite/.pt file or a factory 'pkg.module:fn'")
    regular_file(path, "model file", hint="give a .onnx/.pt2/.tflite/.pt file or a factory 'pkg.module:fn'")
    with open(path, "rb") as fh:  # a regular file: reading its head cannot block
        head = fh.read(64)
    if not head:
        raise FormatError(f"{path} is empty", hint="the file was probably truncated; export it again")
    if head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(b"PK\x03\x04"):
        with open_zip(path, "model archive") as z:
            names = z.namelist()
        if any(n.endswith("archive_format") for n in names) or any("/models/" in n and n.endswith(".json") for n in names):
            return "pt2"
        if any(n.endswith("data.pkl") for n in names):
            return "torch-zip"
        raise FormatError(f"{path} is a zip archive but neither a torch checkpoint nor a .pt2 program")
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch-pickle"
    return "onnx"  # protobuf has no magic; parsing confirms or refuses
