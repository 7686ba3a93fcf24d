"""The one interface every runtime implements: a loaded model, numpy inputs in, numpy outputs out.

It sits at the bottom of the layers (it knows tensor specs and errors only), so sources, the
quantisation flow, verification and the benchmark run any model through it without importing
a target.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    from .artifact import TensorSpec

__all__ = ["Runner"]


class Runner(ABC):
    """A loaded model: numpy inputs in, numpy outputs out. Loads once; thread count explicit."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.path = Path(path)
        self.threads = threads

    #: the time the runtime itself measured for the last call, in ms, when a call crosses a boundary
    #: a device does not pay for (the web runner's page); None: the caller's wall time is the figure
    last_run_ms: float | None = None

    @property
    @abstractmethod
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    def close(self) -> None:
        """Free what the runtime holds beyond memory (a browser page, a server); idempotent."""
        return None

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def run_prepared(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run feeds already named, shaped and typed as the model takes them (the app-side runtime
        builds them so); no checks, so nothing beyond numpy and the runtime is needed."""
        return self._run(feeds)

    def run(self, inputs: Sequence[np.ndarray] | dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._run(self.prepare(inputs))

    def run_many(self, samples: Sequence[Sequence[np.ndarray] | dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
        """Each sample run on its own (batch as given), the outputs in order: what verification and
        the int8 budget call, so a runtime behind a costly boundary (a browser page) can cross it
        once for many samples."""
        return [self.run(s) for s in samples]

    def prepare(self, inputs: Sequence[np.ndarray] | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The feeds ``run`` gives the runtime: named, checked against the model's inputs, cast to their dtypes."""
        specs = self.inputs
        if isinstance(inputs, dict):
            feeds = dict(inputs)
            missing = [s.name for s in specs if s.name not in feeds]
            if missing:
                raise InputError(f"missing model inputs: {', '.join(missing)}",
                                 hint=f"the model takes {', '.join(s.name for s in specs)}")
        else:
            if len(inputs) != len(specs):
                raise InputError(f"the model takes {len(specs)} inputs, got {len(inputs)}",
                                 hint=f"inputs: {', '.join(f'{s.name} {s.shape} {s.dtype}' for s in specs)}")
            feeds = {s.name: a for s, a in zip(specs, inputs)}
        for s in specs:
            a = np.asarray(feeds[s.name])
            if not s.fits(a.shape):
                raise InputError(f"input {s.name!r} has shape {tuple(a.shape)}, the model takes {s.shape}",
                                 hint="resize or reshape the input to fit")
            if a.dtype != np.dtype(s.dtype):
                a = a.astype(s.dtype)
            feeds[s.name] = np.ascontiguousarray(a)
        return feeds
