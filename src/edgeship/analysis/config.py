"""The typed options of ``edgeship analyze`` (the CLI flags are generated from these fields)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from ..config import SourceConfig, split_commas

__all__ = ["AnalyzeConfig"]


class AnalyzeConfig(SourceConfig):
    command: ClassVar[str] = "analyze"
    targets: list[str] = Field(
        default_factory=lambda: ["all"],
        description="targets to preview, comma separated, or all (every target deploy --targets all builds), or none")
    profile: str | None = Field(None, description="device profile for the roofline estimate: built-in name or "
                                                  "JSON file (default host-1core)")
    roofline: bool = Field(True, description="include the roofline estimate")
    top: int = Field(10, ge=1, le=1000, description="how many layers to rank in the summary")
    isolate: bool = Field(True, description="parse and analyse a model file in a child process with limits")

    @field_validator("targets", mode="before")
    @classmethod
    def _targets(cls, v: Any) -> Any:
        return split_commas(v)
