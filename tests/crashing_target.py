"""A target whose converter fails with its own exception (not an edgeship error), as a real
converter's bug does: the cell fails, named as an internal error; the other cells still land."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from edgeship.artifact import Artifact, Format
from edgeship.formats.onnx import OnnxRunner
from edgeship.targets import Built, Runner, Target


class CrashingTarget(Target):
    name: ClassVar[str] = "crash"
    format: ClassVar[Format] = Format.onnx
    requires: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime")
    accepts: ClassVar[tuple[str, ...]] = ("onnx",)
    hidden: ClassVar[bool] = True

    def export(self, source: Any, out_dir: Path, cfg: Any, precision: str = "fp32",
               base: Artifact | None = None) -> Built:
        (out_dir / "half-written.bin").write_bytes(b"\0" * 16)
        raise RuntimeError("the converter's own bug: index 7 is out of range")

    def runner(self, artifact: Artifact, threads: int = 1) -> Runner:
        return OnnxRunner(artifact.model_path, threads=threads)


from corrupting_target import CorruptingTarget  # noqa: E402


class CorruptFirstConv(CorruptingTarget):
    """Scales the first Conv's weights: its fp32 does not verify (a ValidationError)."""

    name: ClassVar[str] = "corrupt0"
    conv_index: ClassVar[int] = 0
