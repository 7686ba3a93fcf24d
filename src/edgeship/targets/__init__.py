"""Targets: one small class per runtime, registered by name and imported lazily.

A target converts a :class:`~edgeship.sources.Source` into files in a folder it is given and
returns an (unverified) :class:`~edgeship.artifact.Artifact`; the pipeline verifies it against the
source and only then moves the folder into place. ``runner()`` loads an artifact for inference.

Plugins register more targets through the ``edgeship.targets`` entry-point group
(``name = "package.module:TargetClass"``) or :func:`register_target`.

The parts: :mod:`.base` (the Target base class and what it builds), :mod:`.registry` (names ->
classes, capabilities, the targets' Options, loading an artifact and its runner), :mod:`.layers`
(the per-layer int8 figures an artifact ships); one module per runtime beside them.
"""

from __future__ import annotations

from ..runner import Runner
from .base import Built, Target
from .layers import layer_modules, shipped_layer_errors
from .registry import (
    SOURCE_KINDS,
    available_targets,
    builtin_targets,
    capability_table,
    default_targets,
    get_target,
    known_precisions,
    load_artifact,
    register_target,
    registered,
    registered_ref,
    runner_for,
    target_class,
    target_for_format,
    target_of,
)

__all__ = ["Target", "Built", "Runner", "register_target", "get_target", "available_targets", "runner_for", "load_artifact",
           "target_class", "target_of", "builtin_targets", "registered", "capability_table", "known_precisions",
           "default_targets", "SOURCE_KINDS", "registered_ref", "target_for_format", "shipped_layer_errors",
           "layer_modules"]
