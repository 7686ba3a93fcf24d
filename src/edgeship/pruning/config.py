"""The typed options of ``edgeship compress`` (the CLI flags are generated from these fields)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ..config import SourceConfig
from ..errors import UsageError

__all__ = ["CompressConfig"]


class CompressConfig(SourceConfig):
    prune: float = Field(..., description="share of each layer's channels to remove (channel), or of the weights to "
                                          "zero (magnitude), strictly between 0 and 1, e.g. 0.5")
    method: Literal["channel", "magnitude"] = Field(
        "channel", description="channel: structural pruning with torch-pruning (coupled channels removed together; "
                               "smaller and faster on every runtime); magnitude: unstructured sparsity (zeros only: "
                               "smaller when compressed, no faster on most edge runtimes)")
    eval_samples: int = Field(256, ge=1, le=65536, description="inputs the pruned model's fidelity to the original is "
                                                               "measured on")
    seed: int = Field(0, description="random seed (pruning is deterministic; training, when given data, is seeded)")
    out: Path = Field(Path("edgeship-compressed"), description="output folder (model.pt2 and compress.json)")
    overwrite: bool = Field(False, description="replace an existing output folder")

    @field_validator("prune", mode="before")
    @classmethod
    def _ratio(cls, v: Any) -> Any:
        try:
            r = float(v)
        except (TypeError, ValueError):
            raise UsageError(f"--prune {v!r} is not a number", hint="give the share to remove, e.g. --prune 0.5") from None
        if not 0.0 < r < 1.0:
            raise UsageError(f"--prune {r:g} is outside (0, 1)",
                             hint="give the share of channels (or weights) to remove, strictly between 0 and 1, e.g. 0.5")
        return r
