"""Device profiles: what a target device can do, for roofline estimates and benchmark limits.

A profile is a small JSON file (schema below). Built-in profiles live beside this module;
``load_profile(NAME_OR_FILE)`` takes a built-in name or a path to a user's own JSON file.

Fields (all figures nominal; measured ones say so in ``source``):

``name``                  short name
``description``           one line
``threads``               threads a benchmark should use to mimic the device
``cores``                 CPU ids to pin to on this machine when mimicking it (``null`` = don't pin)
``peak_gops_fp32``        peak fp32 multiply-adds x2 per second, in G-ops/s (GFLOP/s)
``peak_gops_int8``        peak int8 ops/s, in G-ops/s
``memory_bandwidth_gbs``  sustained DRAM bandwidth, GB/s
``power_active_w``        CPU package power while running inference on ``threads`` threads, W
``power_idle_w``          idle power, W
``source``                where the figures come from
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError, UsageError

__all__ = ["DeviceProfile", "load_profile", "builtin_profiles"]

_HERE = Path(__file__).parent


class DeviceProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    threads: int = Field(1, ge=1)
    cores: list[int] | None = None
    peak_gops_fp32: float = Field(gt=0)
    peak_gops_int8: float = Field(gt=0)
    memory_bandwidth_gbs: float = Field(gt=0)
    power_active_w: float = Field(gt=0)
    power_idle_w: float = Field(0.0, ge=0)
    source: str = ""


def builtin_profiles() -> dict[str, Path]:
    return {p.stem: p for p in sorted(_HERE.glob("*.json"))}


def load_profile(name_or_file: str | Path) -> DeviceProfile:
    """A built-in profile by name, or a JSON profile file."""
    builtins = builtin_profiles()
    key = str(name_or_file)
    path = builtins.get(key)
    if path is None:
        path = Path(key)
        if not path.exists():
            raise UsageError(f"unknown device profile {key!r}",
                             hint=f"built-in profiles: {', '.join(builtins)}; or give a JSON file")
    from ..readers import read_structured

    doc = read_structured(path, "device profile", hint="see edgeship.profiles for the fields")
    if not isinstance(doc, dict):
        raise InputError(f"{path} is not a valid device profile: it holds a {type(doc).__name__}, not an object",
                         hint="see edgeship.profiles for the fields")
    try:
        return DeviceProfile(**doc)
    except (ValueError, TypeError) as e:
        raise InputError(f"{path} is not a valid device profile: {str(e).splitlines()[0]}",
                         hint="see edgeship.profiles for the fields") from None
