"""What deploy will do, decided before any work: the typed :class:`Plan` of :class:`Step` s.

One step per (target, precision): fp32 always, then each ``--quantize`` precision the target
offers; a precision a target does not offer is ``skipped`` with the reason. Each step knows what it
runs ``after`` (its fp32, the artifact it is built from, the shared learned rounding) and the worker
``group`` it shares a process with. :func:`check_plan` refuses a plan that cannot run before any
work starts.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .._util import article, safe_name
from ..config import DeployConfig
from ..errors import InputError, UnsupportedError, UsageError
from ..sources import BUILTIN_MODELS, sniff_format
from ..targets import default_targets, get_target, known_precisions

__all__ = ["Step", "Plan", "plan", "check_plan", "source_kind", "ROUNDING_TASK"]

#: the id of the task several int8 steps wait for: the source's learned rounding, computed once
ROUNDING_TASK = "learned-rounding"


@dataclasses.dataclass(frozen=True)
class Step(Mapping[str, Any]):
    """One conversion of the plan: ``target`` at ``precision`` into the folder ``id``. It reads as
    its JSON record too (``step["target"]``, ``dict(step)``), the form it crosses to a worker in."""

    id: str
    target: str
    format: str
    precision: str
    accepts_source: bool
    missing: tuple[str, ...] = ()
    install: str | None = None
    after: tuple[str, ...] = ()
    group: str = ""
    stages: tuple[str, ...] = ("convert", "verify")
    cached: bool | None = None  # --dry-run: whether the cache holds it (None: not looked up)

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "target": self.target, "format": self.format, "precision": self.precision,
             "stages": list(self.stages), "accepts_source": self.accepts_source, "missing": list(self.missing),
             "install": self.install, "after": list(self.after), "group": self.group}
        if self.cached is not None:
            d["cached"] = self.cached
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Step:
        return cls(id=d["id"], target=d["target"], format=d["format"], precision=d["precision"],
                   accepts_source=bool(d["accepts_source"]), missing=tuple(d.get("missing") or ()),
                   install=d.get("install"), after=tuple(d.get("after") or ()), group=d.get("group") or d["target"],
                   stages=tuple(d.get("stages") or ("convert", "verify")), cached=d.get("cached"))

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


@dataclasses.dataclass(frozen=True)
class Plan:
    """What deploy will do, as a task graph: ``steps`` (one conversion each), the ``shared`` tasks
    several steps wait for (the source's learned rounding), and what is ``skipped`` and why."""

    model: str
    source_kind: str
    out: Path
    steps: tuple[Step, ...]
    skipped: tuple[dict[str, Any], ...] = ()
    shared: tuple[dict[str, Any], ...] = ()
    jobs: int = 1  # worker processes at once (1: in this process)

    @property
    def ready(self) -> bool:
        return all(not s.missing and s.accepts_source for s in self.steps)

    @property
    def groups(self) -> list[list[Step]]:
        """The steps by worker group, in plan order: a target family (onnx with ort and web, which
        are built from its artifacts) runs in one process, one step after another."""
        out: dict[str, list[Step]] = {}
        for s in self.steps:
            out.setdefault(s.group, []).append(s)
        return list(out.values())

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "source_kind": self.source_kind, "out": str(self.out),
                "ready": self.ready, "jobs": self.jobs, "steps": [s.to_dict() for s in self.steps],
                "shared": list(self.shared), "skipped": list(self.skipped)}


def source_kind(model: str) -> str:
    """What kind of source ``model`` names (torch, pt2, onnx, tflite ...), without loading it."""
    if model in BUILTIN_MODELS:
        return "torch"
    p = Path(model)
    if p.exists():
        kind = sniff_format(p)
        return {"torch-zip": "torch", "torch-pickle": "torch"}.get(kind, kind)
    if ":" in model:
        return "torch"
    raise InputError(f"no such model file: {model}",
                     hint=f"give a model file, a factory 'package.module:function', or a built-in name ({', '.join(BUILTIN_MODELS)})")


def plan(cfg: DeployConfig) -> Plan:
    """Resolve targets and check the whole chain before any work: unknown targets, missing extras.

    One step per (target, precision): fp32 always, then each ``--quantize`` precision the target
    offers. A precision a target does not offer is listed in ``skipped`` with the reason.
    """
    names = default_targets() if "all" in cfg.targets else list(dict.fromkeys(cfg.targets))
    targets = [get_target(name) for name in names]  # UsageError on unknown names
    # a target built from another's artifact (ort, web from onnx) comes after it, to reuse it
    targets.sort(key=lambda t: t.derives_from in names)
    if cfg.quantize:  # the precisions are the registered targets' (a plugin may add one)
        known = known_precisions()
        bad = [q for q in cfg.quantize if q not in known]
        if bad:
            raise UsageError(f"unknown precision {bad[0]!r}", hint=f"choose {', '.join(known)} or none")
    kind = source_kind(cfg.model)
    wanted: list[tuple[Any, str, tuple[str, ...]]] = []
    skipped = []
    every = "all" in cfg.targets
    for t in targets:
        missing = t.check_environment()
        refused = t.refuses(source_kind=kind)
        if every and (refused or missing):
            # 'all' means every target that can take this model here; named targets still fail loudly
            reason = refused or f"missing {', '.join(missing)}: {t.install_hint(missing)}"
            skipped.extend({"target": t.name, "precision": pr, "reason": reason}
                           for pr in ["fp32", *cfg.quantize] if pr in t.precisions)
            continue
        for precision in ["fp32", *cfg.quantize]:
            refused = t.refuses(precision=precision)
            if refused:
                skipped.append({"target": t.name, "precision": precision, "reason": refused})
                continue
            wanted.append((t, precision, tuple(missing)))
    steps, shared = _link(wanted, cfg, kind)
    p = Plan(model=cfg.model, source_kind=kind, out=cfg.out, steps=tuple(steps), skipped=tuple(skipped),
             shared=tuple(shared))
    return dataclasses.replace(p, jobs=_jobs(cfg, p))


def _link(wanted: list[tuple[Any, str, tuple[str, ...]]], cfg: DeployConfig,
          kind: str) -> tuple[list[Step], list[dict[str, Any]]]:
    """The steps, each with what it runs ``after`` and its worker ``group``, and the shared tasks.

    A reduced precision comes after its target's fp32; a target built from another's artifact
    (ort, web from onnx) after that artifact at its precision, in the same group; the int8 of a
    target that starts from the torch source (tflite, executorch, openvino) after the one learned
    rounding of the source they share, when it is asked for (``--rounding adaround``; ``auto`` climbs
    to it only when the rungs below miss the budget, and then the first target to need it computes
    it for the others: :func:`edgeship.quant.rounding.rounded_source` holds one in flight)."""
    ids = {safe_name(f"{t.name}-{pr}") for t, pr, _ in wanted}
    names = {t.name for t, _, _ in wanted}
    wants_rounding = kind in ("torch", "pt2") and cfg.rounding == "adaround"
    shared_by = []
    steps = []
    for t, precision, missing in wanted:
        sid = safe_name(f"{t.name}-{precision}")
        after = []
        if t.derives_from and safe_name(f"{t.derives_from}-{precision}") in ids:
            after.append(safe_name(f"{t.derives_from}-{precision}"))
        if precision != "fp32" and safe_name(f"{t.name}-fp32") in ids:
            after.append(safe_name(f"{t.name}-fp32"))
        if precision == "int8" and t.int8_from_torch and wants_rounding:
            after.append(ROUNDING_TASK)
            shared_by.append(sid)
        steps.append(Step(id=sid, target=t.name, format=t.format.value, precision=precision,
                          accepts_source=kind in t.accepts, missing=missing,
                          install=t.install_hint(list(missing)) if missing else None, after=tuple(after),
                          group=t.derives_from if t.derives_from and t.derives_from in names else t.name))
    if not shared_by:
        return steps, []
    return steps, [{"id": ROUNDING_TASK, "what": f"AdaRound of the source's weights ({cfg.rounding_iters} steps per "
                    "layer), shared by " + ", ".join(shared_by), "for": shared_by}]


def _jobs(cfg: DeployConfig, p: Plan) -> int:
    """How many worker processes build the plan: 1 (in this process) for a single group, else
    ``--jobs``, or with 0 ``$EDGESHIP_JOBS`` or as many as CPUs (the free memory is checked as
    each starts)."""
    groups = len(p.groups) + (1 if p.shared else 0)
    env = os.environ.get("EDGESHIP_JOBS", "").strip()
    jobs = cfg.jobs or (int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1))
    return 1 if groups < 2 else min(groups, jobs)


def check_plan(p: Plan) -> None:
    """Refuse before any work a plan none of whose targets can take the model, or one that names a
    target whose extra is missing. A named target that cannot take this kind of model beside others
    that can is one failed cell (its reason in the manifest), and the others are built."""
    if p.steps and not any(s.accepts_source for s in p.steps):
        s = p.steps[0]
        accepts = ", ".join(get_target(s.target).accepts)
        raise UnsupportedError(f"target {s.target!r} cannot convert {article(p.source_kind)} model",
                               hint=f"it converts from: {accepts}")
    for s in p.steps:
        if s.missing:
            get_target(s.target).ensure_environment()
