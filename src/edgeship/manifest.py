"""manifest.json: one record of a deploy run, designed to grow.

Top-level keys (schema ``edgeship.manifest/1``):

``schema``, ``edgeship_version``, ``created``  — what wrote it and when
``source``      — the model that was deployed (kind, origin, digest, I/O, preprocessing)
``config``      — the resolved options of the run
``artifacts``   — one record per artifact: id, target, format, precision, path, files with
                  sha256 and size, digest, I/O, preprocessing, verification figures, provenance
``stages``      — per-stage results keyed by stage name (``convert`` now; later ``benchmark``,
                  ``quantize``, ``analysis``, ``bundle``); each stage adds its own key
``timings_s``   — wall time of each step
``environment`` — python, platform, CPU count, tool versions

Readers must ignore keys they do not know; writers only add keys.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any

from ._util import atomic_write_text, tool_versions

SCHEMA = "edgeship.manifest/1"
MANIFEST = "manifest.json"


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "tool_versions": tool_versions("torch", "onnx", "onnxruntime", "onnxscript", "onnxslim", "numpy"),
    }


def build_manifest(*, source: dict[str, Any], config: dict[str, Any], artifacts: list[dict[str, Any]],
                   stages: dict[str, Any], timings: dict[str, float]) -> dict[str, Any]:
    from . import __version__

    return {
        "schema": SCHEMA,
        "edgeship_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "config": config,
        "artifacts": artifacts,
        "stages": stages,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "environment": environment(),
    }


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    path = Path(out) / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(out: Path) -> dict[str, Any]:
    return json.loads((Path(out) / MANIFEST).read_text())
