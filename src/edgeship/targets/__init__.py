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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..artifact import ARTIFACT_JSON, Artifact, Format, Verification, read_artifact
from ..errors import InputError, MissingExtraError, UsageError
from ..runner import Runner

if TYPE_CHECKING:
    from ..config import DeployConfig
    from ..sources import Source

__all__ = ["Target", "Runner", "register_target", "get_target", "available_targets", "runner_for", "load_artifact",
           "target_class", "target_of", "builtin_targets", "registered"]


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
    #: the target whose fp32 artifact of the same run this one is built from ('ort' from 'onnx'), if any
    derives_from: ClassVar[str | None] = None
    #: left out of ``--targets all`` (a test or example target); named explicitly it still runs
    hidden: ClassVar[bool] = False
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
    def artifact_from_file(cls, path: Path) -> Artifact | None:
        """An in-memory artifact for a bare model file of this target's format (no artifact.json
        beside it): what the file itself says of its inputs, outputs, preprocessing and labels.
        None when this target cannot describe such a file (the default)."""
        return None

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


def builtin_targets() -> dict[str, str]:
    """The targets edgeship ships: name -> 'module:Class'."""
    return dict(_BUILTIN)


def is_registered(name: str) -> bool:
    _load_entry_points()
    return name in _REGISTRY


def registered() -> dict[str, str | type[Target]]:
    """Every registered target: name -> 'module:Class' (not yet imported) or the class."""
    _load_entry_points()
    return dict(_REGISTRY)


def registered_ref(name: str) -> str | type[Target] | None:
    """What ``name`` is registered as ('module:Class' not yet imported, or the class), without importing."""
    _load_entry_points()
    return _REGISTRY.get(name)


def target_class(name: str) -> type[Target]:
    """The class registered as ``name`` (imported on first use); UsageError naming the known ones."""
    _load_entry_points()
    ref = _REGISTRY.get(name)
    if ref is None:
        raise UsageError(f"unknown target {name!r}", hint=f"known targets: {', '.join(available_targets())}")
    if isinstance(ref, str):
        mod, _, cls = ref.partition(":")
        ref = getattr(importlib.import_module(mod), cls)
        _REGISTRY[name] = ref
    return ref


def get_target(name: str) -> Target:
    return target_class(name)()


def target_for_format(fmt: Format) -> Target:
    for name in available_targets():
        t = get_target(name)
        if t.format == fmt:
            return t
    raise UsageError(f"no registered target runs {fmt.value} artifacts",
                     hint=f"known targets: {', '.join(available_targets())}")


def target_of(artifact: Artifact) -> Target:
    """The target that produced ``artifact`` (by name, else by format)."""
    _load_entry_points()
    return get_target(artifact.target) if artifact.target in _REGISTRY else target_for_format(artifact.format)


def runner_for(artifact: Artifact, threads: int = 1) -> Runner:
    """The runner of the target that produced ``artifact`` (by name, else by format)."""
    target = target_of(artifact)
    target.ensure_environment()
    return target.runner(artifact, threads=threads)


def load_artifact(path: str | Path) -> Artifact:
    """Load an artifact from its folder, its artifact.json, or its model file; a bare model file
    with no artifact.json beside it (any .onnx, any .tflite) is described by the target of its
    format, detected by content (:meth:`Target.artifact_from_file`)."""
    p = Path(path)
    if p.is_file() and p.name != ARTIFACT_JSON and not (p.parent / ARTIFACT_JSON).is_file():
        from ..sources import sniff_format

        kind = sniff_format(p)
        try:
            fmt = Format(kind)
        except ValueError:
            fmt = None
        if fmt is not None:
            try:
                cls = target_class(kind) if is_registered(kind) else type(target_for_format(fmt))
            except UsageError:
                cls = None
            art = cls.artifact_from_file(p) if cls is not None and cls.format == fmt else None
            if art is not None:
                return art
        raise InputError(f"{p} is not an edgeship artifact (no {ARTIFACT_JSON} beside it)",
                         hint="give a folder written by edgeship deploy (e.g. edgeship-out/onnx-fp32), "
                              "or an .onnx or .tflite file")
    return read_artifact(p)
