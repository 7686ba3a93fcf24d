"""The benchmark's options, defined once: ``edgeship benchmark`` generates its flags from these
fields (``options_from`` in the CLI) and ``edgeship.api.benchmark(**options)`` takes the same names."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from ..config import ConfigModel, int_list, split_commas

__all__ = ["BenchConfig", "parse_cpus"]


def parse_cpus(v: Any) -> Any:
    """'0', '0,1', '0-3', [0, 1] -> [0, 1, ...]; None stays None."""
    if v is None:
        return None
    parts = split_commas(v if not isinstance(v, int) else [str(v)])
    if not isinstance(parts, list):
        return v
    out: list[int] = []
    for p in parts:
        p = str(p)
        if "-" in p.strip("-"):
            lo, _, hi = p.partition("-")
            try:
                a, b = int(lo), int(hi)
            except ValueError:
                raise ValueError(f"{p!r} is not a CPU range like 0-3") from None
            if b < a:
                raise ValueError(f"{p!r}: the range runs backwards")
            out.extend(range(a, b + 1))
        else:
            try:
                out.append(int(p))
            except ValueError:
                raise ValueError(f"{p!r} is not a CPU id") from None
    return list(dict.fromkeys(out))


class BenchConfig(ConfigModel):
    command: ClassVar[str] = "benchmark"
    baseline: str | None = Field(
        None, description="PyTorch model to compare with (built-in name, factory pkg.mod:fn, .pt2); "
                          "default: an out dir's own source")
    auto_baseline: bool = Field(True, description="with an out dir, benchmark its source in PyTorch eager as the baseline")
    threads: list[int] | None = Field(
        None, description="runtime thread counts, comma separated (default: the profile's, else 1)")
    cpus: list[int] | None = Field(
        None, description="CPU ids to pin to, e.g. 0 or 0,1 or 0-1 (default: the profile's, else the first N for N threads)")
    runs: int = Field(1000, ge=1, description="timed warm calls per artifact and thread count, split over the rounds")
    max_seconds: float | None = Field(
        None, gt=0, description="seconds of timed calls per artifact and thread count at most: the calls stop at --runs "
                                "or here, whichever first (at least 30; split over the rounds); default: --runs alone")
    warmup: int = Field(20, ge=0, description="untimed warm-up calls in each benchmark process")
    rounds: int = Field(3, ge=1, le=100,
                        description="fresh processes per artifact; each round alternates the artifacts and the baseline")
    fresh_input: bool = Field(False, description="a new random input for every call (made outside the timed region)")
    batch_sizes: list[int] = Field(default_factory=lambda: [8],
                                   description="throughput batch sizes when the batch axis is dynamic (none: skip)")
    timeout: float = Field(600.0, gt=0, description="seconds one benchmark process may take before it is reported incomplete")
    profile: str | None = Field(None, description="device profile, built-in name or JSON file: threads, cores, power")
    roofline: bool = Field(True, description="report achieved GOP/s and % of this machine's GEMM peak (measured once, cached)")
    register_target: list[str] = Field(
        default_factory=list,
        description="extra targets for the benchmark processes, NAME=module:Class (repeatable)")

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, v: Any) -> Any:
        return int_list(v)

    @field_validator("batch_sizes", mode="before")
    @classmethod
    def _batches(cls, v: Any) -> Any:
        v = int_list(v)
        if isinstance(v, list) and [str(x).lower() for x in v] in (["none"], ["0"]):
            return []
        return v

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus(cls, v: Any) -> Any:
        return parse_cpus(v)

    @field_validator("register_target", mode="before")
    @classmethod
    def _register(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return [f"{k}={r}" for k, r in v.items()]
        return split_commas(v)

    @field_validator("threads")
    @classmethod
    def _threads_ok(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            if not v:
                raise ValueError("give at least one thread count")
            if any(t < 1 for t in v):
                raise ValueError("thread counts start at 1 (a benchmark sets them explicitly)")
        return v

    @field_validator("batch_sizes")
    @classmethod
    def _batches_ok(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v):
            raise ValueError("batch sizes start at 1")
        return v

    @field_validator("cpus", mode="after")
    @classmethod
    def _cpus_ok(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(c < 0 for c in v)):
            raise ValueError("give CPU ids like 0 or 0,1 or 0-1")
        return v

    @field_validator("register_target", mode="after")
    @classmethod
    def _register_ok(cls, v: list[str]) -> list[str]:
        for r in v:
            name, eq, ref = r.partition("=")
            if not eq or not name or ":" not in ref:
                raise ValueError(f"{r!r} is not NAME=module:Class")
        return v

    def registrations(self) -> dict[str, str]:
        return dict(r.split("=", 1) for r in self.register_target)
