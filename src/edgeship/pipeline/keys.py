"""The cache keys of a deploy's tasks (:mod:`edgeship.cache`): each conversion, the documents a
run computes once per source (predictions, benchmark figures), the memory a worker needed; and
what a run reused, built and noted."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import cache, errors
from .._util import Progress
from ..artifact import Artifact
from ..config import DeployConfig
from ..errors import EdgeshipError, UnsupportedError
from ..sources import Source, load_source
from ..targets import get_target, load_artifact
from .plan import Plan

__all__ = ["TaskKeys", "mark_cached", "rounding_cached"]


class TaskKeys:
    """The cache keys of a deploy's conversions (:mod:`edgeship.cache`), and what was reused."""

    def __init__(self, cfg: DeployConfig, source: Source, p: Plan) -> None:
        self.cfg, self.source, self.cache = cfg, source, cache
        self.source_key = cache.source_key(source)
        reduced = any(s.precision != "fp32" for s in p.steps)
        self.data = {"calib": cache.data_key(cfg.calib, source, cfg.calib_samples, "calibration")} if reduced else {}
        if reduced or cfg.eval:  # fp32 is verified on --eval data too
            self.data["eval"] = cache.data_key(cfg.eval, source, cfg.eval_samples, "evaluation")
        self.keys: dict[tuple[str, str], str] = {}
        self.reused: list[str] = []
        self.built: list[str] = []
        self.notes: list[str] = []

    def convert(self, target: str, precision: str) -> str:
        if (target, precision) in self.keys:
            return self.keys[(target, precision)]
        t = get_target(target)
        # the key of what it is built from, by the rule deploy picks its parent (onnx's for ort/web, else
        # its own fp32; an fp32 is never its own parent)
        parent = self.keys.get((t.derives_from or "", precision)) or (
            self.keys.get((target, "fp32")) if precision != "fp32" else None)
        own = t.Options.model_fields if t.Options is not None else ()
        # a plugin target's code is not edgeship's: its file is part of the key
        k = cache.convert_key(self.cfg, self.source_key, target, precision, own, self.data,
                              parent, cache.class_digest(type(t)))
        self.keys[(target, precision)] = k
        return k

    def reuse(self, k: str, folder: Path, name: str, progress: Progress) -> Artifact | None:
        """The artifact stored under ``k``, copied into ``folder`` and checked; raises the stored
        failure of a precision that did not meet its budget; None: build it."""
        doc = cache.fetch_json(k)
        if doc is not None and isinstance(doc.get("failed"), dict):
            f = doc["failed"]
            self.reused.append(name)
            progress(f"{name}: the same build failed before (cache); --no-cache tries again")
            # only a failure that says the same again is kept: below its budget, or a converter's refusal
            err = errors.from_dict({"type": f.get("error"), "message": str(f.get("message", "")),
                                    "hint": str(f.get("hint") or "")}, default=UnsupportedError)
            err.from_cache = True  # type: ignore[attr-defined]
            raise err
        meta, why = cache.fetch_dir(k, folder)
        if why:
            self.notes.append(f"{name}: cache entry {why}")
            progress(f"{name}: cache entry {why}")
        if meta is None:
            return None
        art = load_artifact(folder)
        self.reused.append(name)
        took = meta.get("seconds")
        progress(f"{name}: reused from the cache, files re-verified" + (f" (built in {took:.0f} s)" if took else ""))
        return art.model_copy(update={"root": folder})

    def keep(self, k: str, folder: Path, name: str, seconds: float) -> None:
        self.built.append(name)
        cache.store_dir(k, folder, {"kind": "artifact", "name": name, "seconds": round(seconds, 2)})

    def keep_failure(self, k: str, failure: dict[str, Any], seconds: float) -> None:
        cache.store_json(k, {"failed": failure}, {"kind": "failure", "seconds": round(seconds, 2)})

    def document(self, kind: str, compute: Callable[[], dict[str, Any]], keep: Callable[[dict[str, Any]], bool] | None = None,
                 **parts: Any) -> tuple[dict[str, Any], bool]:
        """A JSON result of this source (figures, predictions) computed once per ``parts`` (JSON-ready):
        (the document, whether it came from the cache). ``keep(doc)`` False: not stored."""
        k = cache.key(kind, source=self.source_key, **parts)
        doc = cache.fetch_json(k)
        if doc is not None:
            return doc, True
        doc = compute()
        if keep is None or keep(doc):
            cache.store_json(k, doc, {"kind": kind})
        return doc, False

    def last_worker(self, unit: str) -> tuple[int | None, float | None]:
        """(peak memory, seconds) a worker of ``unit`` needed the last time this source was built."""
        doc = cache.fetch_json(cache.key("memory", source=self.source_key, unit=unit)) or {}
        peak, secs = doc.get("peak_rss_bytes"), doc.get("seconds")
        return (peak if isinstance(peak, int) else None, float(secs) if isinstance(secs, (int, float)) else None)

    def remember_memory(self, unit: str, peak: int, seconds: float | None = None) -> None:
        k = cache.key("memory", source=self.source_key, unit=unit)
        cache.store_json(k, {"peak_rss_bytes": peak, "seconds": seconds}, {"kind": "memory"}, replace=True)

    def record(self) -> dict[str, Any]:
        return {"dir": str(cache.tasks_dir()), "reused": self.reused, "built": self.built, "notes": self.notes}


def rounding_cached(cfg: DeployConfig, source: Source, keys: TaskKeys | None) -> bool:
    """Whether the cache holds the source's learned rounding already (no worker needed for it)."""
    if keys is None or source.module is None:
        return False
    from ..quant.rounding import rounding_key  # torch

    return cache.has(rounding_key(source, cfg))


def mark_cached(cfg: DeployConfig, p: Plan) -> Plan:
    """For ``--dry-run``: the plan with which steps the cache holds (``cached``: a re-run copies
    them). Only for a model that is not a file: a file is parsed in the isolated child, never for a
    dry run (the plan comes back as it was)."""
    if not cache.enabled(cfg.cache) or Path(cfg.model).exists() or not p.ready:
        return p
    try:
        source = load_source(cfg.model, **cfg.source_kwargs())
    except EdgeshipError:
        return p  # the real run says what is wrong with the model
    keys = TaskKeys(cfg, source, p)
    steps = tuple(dataclasses.replace(s, cached=cache.has(keys.convert(s.target, s.precision))) for s in p.steps)
    held = source.module is not None and rounding_cached(cfg, source, keys)
    return dataclasses.replace(p, steps=steps, shared=tuple({**t, "cached": held} for t in p.shared))
