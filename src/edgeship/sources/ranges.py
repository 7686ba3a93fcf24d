"""The values of a source's inputs: seeded random inputs shaped like its examples, the range each
input's values are drawn from (token ids: the rows of the embedding that reads them), and the
values an input takes (``--input-value``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UsageError


def random_like(examples: Sequence[np.ndarray], seed: int,
                ranges: Sequence[tuple[float, float] | None] = (),
                values: Sequence[Sequence[float] | None] = ()) -> tuple[np.ndarray, ...]:
    """Seeded inputs shaped like ``examples``: one of ``values[i]`` where given (a sample rate: the
    same value for the whole tensor), values in ``ranges[i]`` (``[low, high)``) where given, else
    floats around the example's scale and ints in its range."""
    rng = np.random.default_rng(1234 + seed)
    out = []
    for k, a in enumerate(examples):
        a = np.asarray(a)
        r = ranges[k] if k < len(ranges) else None
        v = values[k] if k < len(values) else None
        if v:
            out.append(np.full(a.shape, v[int(rng.integers(len(v)))]).astype(a.dtype))
        elif r is not None and a.dtype != np.bool_:
            out.append(draw(rng, a.shape, a.dtype, r))
        elif np.issubdtype(a.dtype, np.integer):
            lo, hi = int(a.min()), int(a.max())
            out.append(rng.integers(lo, max(hi, lo) + 1, size=a.shape).astype(a.dtype))
        elif a.dtype == np.bool_:
            out.append(rng.random(a.shape) < 0.5)
        else:
            scale = float(np.std(a)) or 1.0
            out.append((rng.standard_normal(a.shape) * scale + float(np.mean(a))).astype(a.dtype))
    return tuple(out)


def draw(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, r: tuple[float, float]) -> np.ndarray:
    """Values in ``[low, high)``: integers for integer dtypes, uniform floats otherwise."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        lo, hi = int(r[0]), int(r[1])
        return rng.integers(lo, max(hi, lo + 1), size=shape).astype(dt)
    return rng.uniform(float(r[0]), float(r[1]), size=shape).astype(dt)


# ---- value ranges of integer inputs (token ids) -------------------------------------------

DEFAULT_ID_RANGE = (0, 100)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class Ranges:
    """Decides the value range of each input and says in words where it came from."""

    def __init__(self, names: Sequence[str], dtypes: Sequence[Any], given: Sequence[tuple[float, float]] | None) -> None:
        self.names, self.dtypes = list(names), [np.dtype(d) for d in dtypes]
        self.ranges: list[tuple[float, float] | None] = [None] * len(self.names)
        self.notes: list[str] = []
        if isinstance(given, dict):  # by input name: the others keep their own range
            given = [given.get(n) for n in by_name(given, self.names, "--input-range")]
        elif given:
            if len(given) not in (1, len(self.names)):
                raise UsageError(f"{len(given)} --input-range for {len(self.names)} inputs",
                                 hint="give one range for all inputs or one per input")
            given = list(given) * len(self.names) if len(given) == 1 else list(given)
        for i, r in enumerate(given or ()):
            if r is not None:
                self.ranges[i] = tuple(r)  # type: ignore[assignment]
                self.notes.append(f"input {self.names[i]!r}: random values in [{_fmt(r[0])}, {_fmt(r[1])}) "
                                  "from --input-range")

    def is_int(self, i: int) -> bool:
        return bool(np.issubdtype(self.dtypes[i], np.integer))

    def open(self) -> list[int]:
        """Integer inputs whose range is not decided yet."""
        return [i for i in range(len(self.names)) if self.is_int(i) and self.ranges[i] is None]

    def embedding(self, i: int, table: str, rows: int) -> None:
        self.ranges[i] = (0, rows)
        self.notes.append(f"input {self.names[i]!r}: random ids in [0, {rows}), the rows of embedding {table!r} "
                          "that reads it (--input-range to change)")

    def smallest_table(self, i: int, tables: Sequence[tuple[str, int]]) -> None:
        name, rows = min(tables, key=lambda t: t[1])
        self.ranges[i] = (0, rows)
        self.notes.append(f"input {self.names[i]!r}: random ids in [0, {rows}), the smallest embedding "
                          f"({name!r}); which embedding reads it was not seen (--input-range to say)")

    def default(self, i: int, example: np.ndarray | None) -> None:
        if example is not None and example.size:
            lo, hi = int(example.min()), int(example.max()) + 1
            self.ranges[i] = (lo, hi)
            self.notes.append(f"input {self.names[i]!r}: random ids in [{lo}, {hi}), the range of the example input "
                              "(no embedding shows the vocabulary: give --input-range LO,HI for the real one)")
        else:
            self.ranges[i] = DEFAULT_ID_RANGE
            self.notes.append(f"input {self.names[i]!r}: random ids in [0, 100), a guess (no embedding shows the "
                              "vocabulary: give --input-range LO,HI for the real one)")


def by_name(given: dict[str, Any], names: Sequence[str], flag: str) -> list[str]:
    """``names`` after checking that every key of ``given`` (an option stated by input name) names
    one of them: a value given for an input the model does not have is an error, never ignored."""
    unknown = [k for k in given if k not in names]
    if unknown:
        raise UsageError(f"{flag} names input {unknown[0]!r}, which the model does not have",
                         hint=f"its inputs: {', '.join(names) or 'none'}")
    return list(names)


def values_for(values: dict[str, Sequence[float]] | None, names: Sequence[str],
                dtypes: Sequence[Any]) -> tuple[tuple[float, ...] | None, ...]:
    """``--input-value`` per input in order (None where not given); integer inputs take integers."""
    if not values:
        return ()
    by_name(values, names, "--input-value")
    out = []
    for n, dt in zip(names, dtypes):
        v = values.get(n)
        if v is not None and np.issubdtype(np.dtype(dt), np.integer) and any(float(x) != int(x) for x in v):
            raise UsageError(f"--input-value {n}={','.join(f'{x:g}' for x in v)}: input {n!r} is {np.dtype(dt).name}, "
                             "its values are whole numbers")
        out.append(tuple(v) if v is not None else None)
    return tuple(out)
