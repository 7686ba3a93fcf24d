"""What the user pointed at: an artifact folder, an output folder with its manifest, another
folder, a file (a model file, or a file in an artifact folder) or nothing that exists.

One reading for every command that takes "an artifact or an output folder" (benchmark, analyze,
compare-cloud): :func:`locate` says which it is and reads what says so (the artifact record, the
typed manifest); each caller words its own refusal of what it cannot take.

It sits right above the targets (it loads an artifact through :func:`edgeship.targets.load_artifact`,
which knows every format's record) and below everything that takes such a path.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .artifact import ARTIFACT_JSON, Artifact
from .manifest import MANIFEST, Manifest, load_manifest
from .targets import load_artifact

__all__ = ["Located", "locate"]


@dataclasses.dataclass(frozen=True)
class Located:
    """``kind``: ``artifact`` (a folder with artifact.json: ``artifact`` loaded), ``outdir`` (a
    folder with manifest.json and no artifact.json: ``manifest`` read), ``folder`` (neither),
    ``file`` or ``missing``."""

    kind: str
    path: Path
    artifact: Artifact | None = None
    manifest: Manifest | None = None


def locate(path: str | Path) -> Located:
    """What ``path`` is (:class:`Located`). An artifact record or a manifest that cannot be read
    raises its typed error (InputError, FormatError, SecurityError for a path a manifest points
    outside its folder)."""
    p = Path(path)
    if p.is_dir():
        if (p / ARTIFACT_JSON).is_file():
            return Located("artifact", p, artifact=load_artifact(p))
        if (p / MANIFEST).is_file():
            m = load_manifest(p)
            if m is not None:
                return Located("outdir", p, manifest=m)
        return Located("folder", p)
    return Located("file" if p.is_file() else "missing", p)
