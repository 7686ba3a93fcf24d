"""edgeship: take a trained model to the edge — converted, verified, measured, packaged."""

from __future__ import annotations

__version__ = "0.1.0"

from .api import DeployResult, Plan, classify, convert, deploy, load, plan  # noqa: E402
from .artifact import Artifact, Format, Preprocess, TensorSpec, load_artifact  # noqa: E402
from .config import DeployConfig  # noqa: E402
from .errors import (  # noqa: E402
    EdgeshipError,
    FormatError,
    InputError,
    MissingExtraError,
    SecurityError,
    UnsupportedError,
    UsageError,
    ValidationError,
)
from .runtime import Classifier, Prediction  # noqa: E402
from .sources import Source, TorchModel  # noqa: E402
from .targets import Runner, Target, available_targets, get_target, register_target, runner_for  # noqa: E402

__all__ = [
    "__version__",
    "Artifact",
    "Classifier",
    "DeployConfig",
    "DeployResult",
    "EdgeshipError",
    "Format",
    "FormatError",
    "InputError",
    "MissingExtraError",
    "Plan",
    "Prediction",
    "Preprocess",
    "Runner",
    "SecurityError",
    "Source",
    "Target",
    "TensorSpec",
    "TorchModel",
    "UnsupportedError",
    "UsageError",
    "ValidationError",
    "available_targets",
    "classify",
    "convert",
    "deploy",
    "get_target",
    "load",
    "load_artifact",
    "plan",
    "register_target",
    "runner_for",
]
