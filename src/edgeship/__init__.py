"""edgeship: take a trained model to the edge — converted, verified, measured, packaged."""

from __future__ import annotations

from ._util import calm_library_loggers, no_vendor_telemetry  # noqa: E402
from ._version import __version__

calm_library_loggers()
no_vendor_telemetry()

from .api import (  # noqa: E402
    DeployResult,
    Plan,
    analyze,
    benchmark,
    classify,
    convert,
    deploy,
    keygen,
    load,
    package,
    plan,
    quantize,
    verify_bundle,
)
from .artifact import Artifact, Format, Preprocess, TensorSpec  # noqa: E402
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
from .targets import (  # noqa: E402
    Runner,
    Target,
    available_targets,
    get_target,
    load_artifact,
    register_target,
    runner_for,
)

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
    "analyze",
    "available_targets",
    "benchmark",
    "classify",
    "convert",
    "deploy",
    "get_target",
    "keygen",
    "load",
    "load_artifact",
    "package",
    "plan",
    "quantize",
    "register_target",
    "runner_for",
    "verify_bundle",
]
