"""edgeship: take a trained model to the edge — converted, verified, measured, packaged."""

from __future__ import annotations

from ._util import calm_library_loggers, no_vendor_telemetry  # noqa: E402
from ._version import __version__

calm_library_loggers()
no_vendor_telemetry()

# Names resolve on first use (PEP 562), so `import edgeship` and `edgeship.runtime` (what a device
# runs) stay light: numpy, Pillow and one runtime, not pydantic, the converters or the CLI.
_LAZY = {
    **dict.fromkeys(("DeployResult", "Plan", "analyze", "benchmark", "classify", "compress", "convert", "deploy", "keygen", "load",
                     "package", "plan", "quantize", "report", "verify_bundle"), "api"),
    **dict.fromkeys(("Artifact", "Format", "Preprocess", "TensorSpec"), "artifact"),
    "DeployConfig": "config",
    **dict.fromkeys(("EdgeshipError", "FormatError", "InputError", "MissingExtraError", "SecurityError", "UnsupportedError",
                     "UsageError", "ValidationError"), "errors"),
    **dict.fromkeys(("Classifier", "Embedder", "Prediction", "Stream"), "runtime"),
    **dict.fromkeys(("Source", "TorchModel"), "sources"),
    **dict.fromkeys(("Runner", "Target", "available_targets", "get_target", "load_artifact", "register_target",
                     "runner_for"), "targets"),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeship' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "__version__",
    "Artifact",
    "Classifier",
    "DeployConfig",
    "DeployResult",
    "EdgeshipError",
    "Embedder",
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
    "Stream",
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
    "compress",
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
    "report",
    "runner_for",
    "verify_bundle",
]
