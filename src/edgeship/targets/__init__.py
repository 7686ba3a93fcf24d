"""Targets: one small class per runtime, registered by name and imported lazily.

A target converts a :class:`~edgeship.sources.Source` into files in a folder it is given and
returns an (unverified) :class:`~edgeship.artifact.Artifact`; the pipeline verifies it against the
source and only then moves the folder into place. ``runner()`` loads an artifact for inference.

Plugins register more targets through the ``edgeship.targets`` entry-point group
(``name = "package.module:TargetClass"``) or :func:`register_target`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..artifact import Artifact, Format, TensorSpec, Verification
from ..errors import InputError, MissingExtraError, UsageError

if TYPE_CHECKING:
    from ..config import DeployConfig
    from ..sources import Source

__all__ = ["Target", "Runner", "register_target", "get_target", "available_targets", "runner_for"]


class Runner(ABC):
    """A loaded model: numpy inputs in, numpy outputs out. Loads once; thread count explicit."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.path = Path(path)
        self.threads = threads

    @property
    @abstractmethod
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def run(self, inputs: Sequence[np.ndarray] | dict[str, np.ndarray]) -> list[np.ndarray]:
        specs = self.inputs
        if isinstance(inputs, dict):
            feeds = dict(inputs)
            missing = [s.name for s in specs if s.name not in feeds]
            if missing:
                raise InputError(f"missing model inputs: {', '.join(missing)}",
                                 hint=f"the model takes {', '.join(s.name for s in specs)}")
        else:
            if len(inputs) != len(specs):
                raise InputError(f"the model takes {len(specs)} inputs, got {len(inputs)}",
                                 hint=f"inputs: {', '.join(f'{s.name} {s.shape} {s.dtype}' for s in specs)}")
            feeds = {s.name: a for s, a in zip(specs, inputs)}
        for s in specs:
            a = np.asarray(feeds[s.name])
            if not s.fits(a.shape):
                raise InputError(f"input {s.name!r} has shape {tuple(a.shape)}, the model takes {s.shape}",
                                 hint="resize or reshape the input to fit")
            if a.dtype != np.dtype(s.dtype):
                a = a.astype(s.dtype)
            feeds[s.name] = np.ascontiguousarray(a)
        return self._run(feeds)


class Target(ABC):
    """One runtime. Class attributes answer ``capabilities()`` without importing the SDK."""

    name: ClassVar[str]
    format: ClassVar[Format]
    description: ClassVar[str] = ""
    extra: ClassVar[str | None] = None  # pip extra that brings the SDK
    requires: ClassVar[tuple[str, ...]] = ()  # importable module names the target needs
    runtime_modules: ClassVar[tuple[str, ...] | None] = None  # what a runner imports (default: requires)
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    accepts: ClassVar[tuple[str, ...]] = ("torch", "pt2", "onnx")
    #: set by edgeship.convert for one conversion: steps of long work ("calibrating on 128 samples")
    progress: Callable[[str], None] | None = None

    def say(self, message: str) -> None:
        """Report a step of long work (calibration, quantisation) to whoever runs the conversion."""
        if self.progress is not None:
            self.progress(message)

    def capabilities(self) -> dict[str, Any]:
        return {"name": self.name, "format": self.format.value, "description": self.description,
                "precisions": list(self.precisions), "accepts": list(self.accepts), "extra": self.extra}

    @classmethod
    def can_run_here(cls) -> bool | str:
        """True when this machine can run the target's artifacts, else a one-line reason (Core ML
        predicts only on macOS). Asked before starting a runner, e.g. by the benchmark."""
        return True

    def check_environment(self) -> list[str]:
        """Names of the required modules that are not installed (empty when ready)."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def ensure_environment(self) -> None:
        missing = self.check_environment()
        if missing:
            how = f"pip install 'edgeship[{self.extra}]'" if self.extra else f"pip install {' '.join(missing)}"
            raise MissingExtraError(f"target {self.name!r} needs {', '.join(missing)}", hint=how)

    @abstractmethod
    def convert(self, source: Source, out_dir: Path, cfg: DeployConfig, precision: str = "fp32",
                parent: Artifact | None = None) -> Artifact:
        """Write the artifact's files into ``out_dir`` (a fresh temp folder) and describe them.

        ``precision`` is one of ``precisions``; for a reduced precision, ``parent`` is this
        target's verified fp32 artifact from the same run (a target may derive from it).
        """

    @abstractmethod
    def runner(self, artifact: Artifact, threads: int = 1) -> Runner: ...

    def verify(self, source: Source, artifact: Artifact, cfg: DeployConfig) -> Verification:
        """Compare the artifact with its source on real inputs (numerically, through ``runner``).

        A target whose runtime cannot run here (Core ML on Linux) overrides this with structural
        checks and says so in the Verification's ``reference`` and ``criterion``.
        """
        from ..verify import verify

        runner = self.runner(artifact, threads=0)
        try:
            return verify(source, artifact, runner, cfg)
        finally:
            del runner


# ---- registry ---------------------------------------------------------------------------

_BUILTIN: dict[str, str] = {
    "onnx": "edgeship.targets.onnx:OnnxTarget",
    "tflite": "edgeship.targets.tflite:TfliteTarget",
    "ort": "edgeship.targets.ort:OrtTarget",
    "executorch": "edgeship.targets.executorch:ExecuTorchTarget",
    "openvino": "edgeship.targets.openvino:OpenVinoTarget",
    "coreml": "edgeship.targets.coreml:CoreMLTarget",
}
_REGISTRY: dict[str, str | type[Target]] = dict(_BUILTIN)
_ENTRY_POINTS_LOADED = False


def register_target(name: str, target: str | type[Target]) -> None:
    """Register a target class (or its 'module:Class' path, imported on first use)."""
    _REGISTRY[name] = target


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in importlib.metadata.entry_points(group="edgeship.targets"):
        _REGISTRY.setdefault(ep.name, ep.value)


def available_targets() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def get_target(name: str) -> Target:
    _load_entry_points()
    ref = _REGISTRY.get(name)
    if ref is None:
        raise UsageError(f"unknown target {name!r}", hint=f"known targets: {', '.join(available_targets())}")
    if isinstance(ref, str):
        mod, _, cls = ref.partition(":")
        ref = getattr(importlib.import_module(mod), cls)
        _REGISTRY[name] = ref
    return ref()


def target_for_format(fmt: Format) -> Target:
    for name in available_targets():
        t = get_target(name)
        if t.format == fmt:
            return t
    raise UsageError(f"no registered target runs {fmt.value} artifacts",
                     hint=f"known targets: {', '.join(available_targets())}")


def runner_for(artifact: Artifact, threads: int = 1) -> Runner:
    """The runner of the target that produced ``artifact`` (by name, else by format)."""
    _load_entry_points()
    target = get_target(artifact.target) if artifact.target in _REGISTRY else target_for_format(artifact.format)
    target.ensure_environment()
    return target.runner(artifact, threads=threads)
