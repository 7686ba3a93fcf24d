"""The target registry: names -> target classes, imported on first use.

Plugins register more targets through the ``edgeship.targets`` entry-point group
(``name = "package.module:TargetClass"``) or :func:`register_target`. Registering (or first
importing) a target registers its format (:func:`~edgeship.artifact.register_format`), so its
artifacts read back. The registry also answers what the classes say without any SDK: the
capability table, ``--targets all``, the targets' Options joined to the deploy options, and which
target loads and runs an artifact.

The classes are :class:`~edgeship.targets.base.Target` subclasses; this module does not import
that one (the base class looks the target it derives from up here), so it types them loosely.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, create_model

from ..artifact import ARTIFACT_JSON, Artifact, Format, check_shapes, read_artifact, register_format
from ..config import set_target_options
from ..errors import FormatError, InputError, UsageError
from ..runner import Runner

if TYPE_CHECKING:
    from ..config import DeployConfig

__all__ = ["register_target", "get_target", "target_class", "available_targets", "builtin_targets", "registered",
           "registered_ref", "capability_table", "known_precisions", "default_targets", "target_for_format",
           "target_of", "runner_for", "load_artifact", "SOURCE_KINDS"]

#: a Target subclass (:class:`edgeship.targets.base.Target`)
TargetClass = type[Any]

_BUILTIN: dict[str, str] = {
    "onnx": "edgeship.targets.onnx:OnnxTarget",
    "tflite": "edgeship.targets.tflite:TfliteTarget",
    "ort": "edgeship.targets.ort:OrtTarget",
    "executorch": "edgeship.targets.executorch:ExecuTorchTarget",
    "openvino": "edgeship.targets.openvino:OpenVinoTarget",
    "coreml": "edgeship.targets.coreml:CoreMLTarget",
    "web": "edgeship.targets.web:WebTarget",
}
_REGISTRY: dict[str, str | TargetClass] = dict(_BUILTIN)
_ENTRY_POINTS_LOADED = False


def register_target(name: str, target: str | TargetClass) -> None:
    """Register a target class (or its 'module:Class' path, imported on first use); a class's
    format is registered with it."""
    if not isinstance(target, str):
        _with_format(target)
    _REGISTRY[name] = target


def _with_format(cls: TargetClass) -> TargetClass:
    """``cls`` with its format registered: a target declaring its format as a plain name
    (``format = "npz-graph"``) gets the registered :class:`~edgeship.artifact.Format` of it."""
    fmt = getattr(cls, "format", None)
    if isinstance(fmt, str) and not isinstance(fmt, Format):
        cls.format = register_format(fmt)
    return cls


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in importlib.metadata.entry_points(group="edgeship.targets"):
        _REGISTRY.setdefault(ep.name, ep.value)


SOURCE_KINDS = ("torch", "pt2", "onnx")


def capability_table(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Target × source kind × precision: whether each registered target (or those in ``names``)
    builds it, and why not (:meth:`Target.refuses`). Reads the classes only, no SDK."""
    rows = []
    for name in names if names is not None else available_targets():
        cls = target_class(name)
        for kind in SOURCE_KINDS:
            for precision in cls.precisions:
                why = cls.refuses(kind, precision)
                rows.append({"target": name, "source_kind": kind, "precision": precision, "ok": why is None, "reason": why})
    return rows


def known_precisions() -> list[str]:
    """Every reduced precision some registered target offers (what --quantize takes)."""
    return list(dict.fromkeys(r["precision"] for r in capability_table() if r["precision"] != "fp32"))


def default_targets() -> list[str]:
    """What ``--targets all`` means: every registered target not marked ``hidden``."""
    return [n for n in available_targets() if not target_class(n).hidden]


_WITH_OPTIONS: dict[tuple[Any, ...], type[DeployConfig]] = {}


def _with_target_options(base: type[DeployConfig]) -> type[DeployConfig]:
    """``base`` with every registered target's Options fields (cached per registry state). A
    field must start with its target's name and be taken once; a plugin whose module does not
    import is left out here (using it names the error)."""
    if base in _WITH_OPTIONS.values():
        return base
    fields: dict[str, Any] = {}
    owners: dict[str, str] = {}
    holders: dict[type[BaseModel], list[str]] = {}  # a subclass registered under another name shares its Options
    for name in available_targets():
        try:
            cls = target_class(name)
        except Exception:
            if name in _BUILTIN:
                raise
            continue
        opts = getattr(cls, "Options", None)
        if opts is not None:
            declared_by = next(c for c in cls.__mro__ if "Options" in vars(c))  # named after the class that declares them
            holders.setdefault(opts, []).extend([getattr(declared_by, "name", name), name])
    for opts, names in holders.items():
        prefixes = tuple(dict.fromkeys(n.replace("-", "_") + "_" for n in names))
        for f, info in opts.model_fields.items():
            if not f.startswith(prefixes):
                raise UsageError(f"target {names[0]!r}: its option {f!r} must start with {prefixes[0]!r}",
                                 hint=f"name a target's options after it, e.g. {prefixes[0]}layout")
            if f in base.model_fields or f in owners:
                raise UsageError(f"target {names[0]!r}: its option {f!r} is already an option of "
                                 f"{'target ' + repr(owners[f]) if f in owners else 'edgeship'}")
            owners[f] = names[0]
            fields[f] = (info.annotation, info)
    key = (base, *sorted(id(opts) for opts in holders))
    if key not in _WITH_OPTIONS:
        _WITH_OPTIONS[key] = create_model(base.__name__, __base__=base, __module__=base.__module__, **fields)
    return _WITH_OPTIONS[key]


set_target_options(_with_target_options)


def available_targets() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def builtin_targets() -> dict[str, str]:
    """The targets edgeship ships: name -> 'module:Class'."""
    return dict(_BUILTIN)


def registered() -> dict[str, str | TargetClass]:
    """Every registered target: name -> 'module:Class' (not yet imported) or the class."""
    _load_entry_points()
    return dict(_REGISTRY)


def registered_ref(name: str) -> str | TargetClass | None:
    """What ``name`` is registered as ('module:Class' not yet imported, or the class), without importing."""
    _load_entry_points()
    return _REGISTRY.get(name)


def target_class(name: str) -> TargetClass:
    """The class registered as ``name`` (imported on first use); UsageError naming the known ones."""
    _load_entry_points()
    ref = _REGISTRY.get(name)
    if ref is None:
        raise UsageError(f"unknown target {name!r}", hint=f"known targets: {', '.join(available_targets())}")
    if isinstance(ref, str):
        mod, _, cls = ref.partition(":")
        ref = _with_format(getattr(importlib.import_module(mod), cls))
        _REGISTRY[name] = ref
    return ref


def get_target(name: str) -> Any:
    return target_class(name)()


def target_for_format(fmt: Format) -> Any:
    for name in available_targets():
        t = get_target(name)
        if t.format == fmt:
            return t
    raise UsageError(f"no registered target runs {fmt.value} artifacts",
                     hint=f"known targets: {', '.join(available_targets())}")


def target_of(artifact: Artifact) -> Any:
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
                cls = target_class(kind) if registered_ref(kind) is not None else type(target_for_format(fmt))
            except UsageError:
                cls = None
            art = cls.artifact_from_file(p) if cls is not None and cls.format == fmt else None
            if art is not None:  # what the file declares, checked as a record's is
                check_shapes(art, str(p), "the file is corrupt or hand-edited: convert the model again")
                return art
        raise InputError(f"{p} is not an edgeship artifact (no {ARTIFACT_JSON} beside it)",
                         hint="give a folder written by edgeship deploy (e.g. edgeship-out/onnx-fp32), "
                              "or an .onnx or .tflite file")
    try:
        return read_artifact(p)
    except FormatError:
        if not _import_plugins():  # every target is imported: the record itself is wrong
            raise
    return read_artifact(p)  # its format may be one a plugin registers when imported


def _import_plugins() -> bool:
    """Import the registered plugin targets not imported yet (their modules register their
    formats); whether any was. One that does not import is left out (reading its artifact then
    names the unknown format)."""
    imported = False
    for name, ref in registered().items():
        if isinstance(ref, str) and ref != _BUILTIN.get(name):
            try:
                target_class(name)
            except Exception:  # noqa: BLE001 - a broken plugin is reported where it is used
                continue
            imported = True
    return imported
