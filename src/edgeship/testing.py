"""Test doubles for edgeship users and plugin authors: a target that needs no heavy SDK.

``FakeTarget`` saves a torch source as a ``torch.export`` program (``model.pt2``) and runs it with
torch, so pipelines, manifests and error paths can be tested without any vendor runtime. Knobs
make it misbehave on purpose:

* ``precisions``: it "builds" every precision listed (the model stays fp32; a reduced precision
  is only a label, plus ``reduced_noise``);
* ``noise``: added to every output, so verification fails (ValidationError);
* ``reduced_noise``: relative noise added to the outputs of non-fp32 artifacts only;
* ``fail_after_write``: raises after writing a partial file, to check nothing half-written lands;
* ``hang_seconds``: the runner sleeps this long per call (a hanging runtime).

Register it with ``edgeship.register_target("fake", FakeTarget)`` or a configured subclass.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .artifact import Artifact, Format, TensorSpec
from .errors import UnsupportedError
from .runner import Runner
from .targets import Built, Target

if TYPE_CHECKING:
    from .config import DeployConfig
    from .sources import Source

__all__ = ["FakeTarget", "FakeRunner", "hang", "spin", "crash", "allocate", "echo"]


# ---- misbehaving work for the isolation tests (run through edgeship.isolate) ------------

def hang(seconds: float = 3600) -> None:
    time.sleep(seconds)


def spin(seconds: float = 3600) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def crash(signal_name: str = "SIGSEGV") -> None:
    import os
    import signal

    os.kill(os.getpid(), getattr(signal, signal_name))


def allocate(gb: float) -> int:
    buf = bytearray(int(gb * (1 << 30)))
    return len(buf)


def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


class FakeRunner(Runner):
    def __init__(self, artifact: Artifact, threads: int = 1, noise: float = 0.0, hang_seconds: float = 0.0) -> None:
        super().__init__(artifact.model_path, threads)
        import torch

        self._inputs = artifact.inputs
        self.module = torch.export.load(str(artifact.model_path)).module()
        self.noise = noise
        self.hang_seconds = hang_seconds

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        from .sources import flatten_outputs

        if self.hang_seconds:
            time.sleep(self.hang_seconds)
        with torch.no_grad():
            out = self.module(*[torch.from_numpy(feeds[s.name]) for s in self._inputs])
        return [t.numpy() + np.asarray(self.noise, dtype=t.numpy().dtype) for t in flatten_outputs(out)]


class FakeTarget(Target):
    name: ClassVar[str] = "fake"
    format: ClassVar[Format] = Format.torch
    description: ClassVar[str] = "test double: a torch.export program run by torch"
    requires: ClassVar[tuple[str, ...]] = ("torch",)
    accepts: ClassVar[tuple[str, ...]] = ("torch", "pt2")
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    derives_reduced: ClassVar[bool] = False  # every precision is exported from the source
    noise: ClassVar[float] = 0.0
    reduced_noise: ClassVar[float] = 0.0
    fail_after_write: ClassVar[bool] = False
    hang_seconds: ClassVar[float] = 0.0

    def export(self, source: Source, out_dir: Path, cfg: DeployConfig, precision: str = "fp32",
               base: Artifact | None = None) -> Built:
        import torch

        if source.module is None:
            raise UnsupportedError("the fake target needs a torch source")
        args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in source.example_inputs)
        ep = source.exported or torch.export.export(source.module, args)
        path = out_dir / "model.pt2"
        torch.export.save(ep, str(path))
        if self.fail_after_write:
            raise RuntimeError("fake target failed on purpose after writing model.pt2")
        inputs = tuple(s.model_copy(update={"shape": tuple(a.shape)}) for s, a in zip(source.inputs, source.example_inputs))
        return Built(files=("model.pt2",), inputs=inputs, outputs=source.outputs, stage="fake.export")

    def runner(self, artifact: Artifact, threads: int = 1, **_: Any) -> Runner:
        noise = self.noise
        if artifact.precision != "fp32":
            noise += self.reduced_noise
        return FakeRunner(artifact, threads, noise=noise, hang_seconds=self.hang_seconds)
