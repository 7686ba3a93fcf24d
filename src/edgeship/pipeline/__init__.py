"""The deploy engine: a typed :class:`Plan` of :class:`Step` s decided before any work
(:mod:`.plan`), the cache keys of its tasks (:mod:`.keys`), building and verifying each step
(:mod:`.build`), the worker scheduler (:mod:`.workers`), the stages after verification
(:mod:`.stages`) and :func:`deploy` itself (:mod:`.orchestration`); and the commands built on it:
:mod:`.quantize`, :mod:`.compress`, :mod:`.classify`. :mod:`edgeship.api` is its facade.
"""

from __future__ import annotations

from .build import cell_failure, convert, failure_error
from .orchestration import DeployResult, deploy
from .plan import ROUNDING_TASK, Plan, Step, check_plan, plan, source_kind
from .workers import portable_target

__all__ = ["Plan", "Step", "plan", "check_plan", "source_kind", "ROUNDING_TASK", "convert", "deploy", "DeployResult",
           "cell_failure", "failure_error", "portable_target"]
