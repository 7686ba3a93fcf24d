"""Latency statistics: the figures the benchmark reports for a list of samples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["latency_stats", "latency_quantiles", "MIN_RUNS_FOR_P99"]

# Below this many samples the p99 is the one or two slowest calls: reported, with a note.
MIN_RUNS_FOR_P99 = 300


def latency_stats(samples_ms: Sequence[float]) -> dict[str, Any]:
    """n, min, mean, p50, p90, p99, max and std (population) of ``samples_ms``, in ms.

    Percentiles use linear interpolation between order statistics (numpy's default).
    """
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "n": int(a.size),
        "min": round(float(a.min()), 4),
        "mean": round(float(a.mean()), 4),
        "p50": round(float(p50), 4),
        "p90": round(float(p90), 4),
        "p99": round(float(p99), 4),
        "max": round(float(a.max()), 4),
        "std": round(float(a.std()), 4),
    }


def latency_quantiles(samples_ms: Sequence[float]) -> list[float]:
    """The 0th, 1st, ... 100th percentile of ``samples_ms`` (101 values, ms): the whole distribution
    in a fixed size, from which a report draws it (empty when there are no samples)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return []
    return [round(float(v), 4) for v in np.percentile(a, np.arange(101))]
