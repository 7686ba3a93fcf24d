"""The accuracy-budget loop, written once for every int8 backend.

int8 climbs a ladder and stops at the first rung that meets the budget (:data:`RUNGS`): nearest
rounding (with bias correction where it is on) -> + cross-layer equalisation (where it applies) ->
+ learned rounding -> layers kept in float. ``--equalization on`` and ``--rounding adaround`` take
their rung whatever the budget says (a user who asks for more accuracy pays for it); ``auto`` takes
it only while the budget is missed (:meth:`Budget.climbs`). Every step records its rung; the
summary says which rung was reached.

A backend (ONNX Runtime's recipes, ai-edge-quantizer, PT2E, NNCF) quantises with a list of layers
to keep in float and ranks its layers by the error they bring (its per-layer attribution). The
:class:`Budget` measures each candidate against fp32 on the evaluation data with the rule verify
applies (:func:`edgeship.fidelity.judge`), records it as a step, and when the budget is missed
keeps the worst layers in float one at a time, each step measured, until it holds or
``--max-float-layers`` is spent; a model that still misses it is a ValidationError naming the
worst layers, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._util import share_text
from ..errors import ValidationError
from ..fidelity import TaskMeasure, judge

if TYPE_CHECKING:
    from ..config import DeployConfig

#: the ladder's rungs in order, as steps and summaries name them
RUNGS = ("nearest rounding", "equalisation", "learned rounding", "layers in float")

#: layers kept in float one after another without coming closer to fp32 before the last rung gives up
#: (a loss spread over the whole model is not fixed by a few float layers; each step is a whole
#: quantisation and measurement)
STALL_LAYERS = 3

#: the figures of a step that the artifact's summary keeps
STEP_KEYS = ("rung", "note", "excluded", "top1_agreement", "top5_agreement", "cosine", "kl_divergence", "sqnr_db", "accuracy",
             "accuracy_fp32", "task", "p50_ms_1thread", "latency_vs_first_step", "size_bytes", "within_budget")


class Budget:
    """The steps of one quantisation, each judged against the fp32 reference outputs ``ref``."""

    def __init__(self, ref: Sequence[np.ndarray], cfg: DeployConfig, classifier: bool,
                 labels: Sequence[int] | None = None, say: Callable[[str], None] | None = None,
                 task: TaskMeasure | None = None) -> None:
        self.ref, self.cfg, self.classifier, self.labels, self.task = list(ref), cfg, classifier, labels, task
        self.say = say or (lambda _msg: None)
        self.steps: list[dict[str, Any]] = []
        self.rung = RUNGS[0]  #: the rung the next steps are on (:data:`RUNGS`)
        self.stalled = 0  #: float layers that came no closer before the last rung gave up (0: it did not)

    def climbs(self, asked: str) -> bool:
        """Whether to take the next rung, whose option was asked ``asked`` (``auto``; ``on`` /
        ``adaround``; ``off`` / ``nearest``): asked for, or ``auto`` while the last step misses the budget."""
        if asked in ("off", "nearest"):
            return False
        return asked != "auto" or not (self.steps and self.last["within_budget"])

    def not_needed(self, asked: str) -> dict[str, Any]:
        """The record of a rung ``auto`` left out because an earlier one met the budget."""
        return {"asked": asked, "chosen": "off" if asked == "auto" else asked, "tried": False,
                "why": f"not needed: the budget was met at the rung before ({self.last.get('rung', self.rung)})"}

    def measure(self, got: Sequence[np.ndarray], excluded: Sequence[str], note: str, p50_ms: float | None = None,
                size_bytes: int | None = None) -> dict[str, Any]:
        """Judge one candidate's outputs on the evaluation inputs and record it as the next step."""
        f = judge(self.ref, list(got), classifier=self.classifier, min_cosine=self.cfg.min_cosine,
                  max_drop=self.cfg.max_drop, labels=list(self.labels) if self.labels is not None else None,
                  task=self.task)
        rec: dict[str, Any] = {"rung": self.rung, "excluded": list(excluded), "note": note, **f, "p50_ms_1thread": p50_ms,
                               "size_bytes": size_bytes, "within_budget": f["passed"]}
        first = self.steps[0]["p50_ms_1thread"] if self.steps else p50_ms
        if p50_ms is not None and first:
            rec["latency_vs_first_step"] = p50_ms / first
        self.steps.append(rec)
        return rec

    @property
    def last(self) -> dict[str, Any]:
        return self.steps[-1]

    def keep_worst_in_float(self, order: Sequence[tuple[str, str]], attempt: Callable[[list[str], str], dict[str, Any]],
                            excluded: Sequence[str] = ()) -> dict[str, Any]:
        """While the last step misses the budget, keep the next layer of ``order`` ((node, label),
        worst first) in float as well and ``attempt`` again (it builds the candidate without those
        layers and :meth:`measure`\\ s it); at most ``--max-float-layers`` layers."""
        kept = list(excluded)
        best, flat = self.last, 0
        for node, label in [(n, lab) for n, lab in order if n not in kept][: max(self.cfg.max_float_layers - len(kept), 0)]:
            if self.last["within_budget"]:
                break
            if flat >= STALL_LAYERS:  # the worst layers moved nothing: the loss is not in a few layers
                self.say(f"int8 budget: {flat} more layers in float came no closer to fp32; stopping there")
                self.stalled = flat
                break
            kept.append(node)
            self.rung = RUNGS[-1]
            self.say(f"keeping {len(kept)} layer(s) in float ({label})")
            rec = attempt(list(kept), f"+ {label} in float")
            if closer(rec, best):
                best, flat = rec, 0
            else:
                flat += 1
        return self.last

    def describe(self, rec: dict[str, Any]) -> str:
        cfg = self.cfg
        if "chunk_agreement" in (rec.get("task") or {}):
            t = rec["task"]
            return (f"speech decisions agree on {share_text(t['chunk_agreement'])} of {t['chunks']} chunks (needs >= "
                    f"{getattr(self.task.task, 'min_agreement', 0.98):.0%}), max |dp| {t['max_prob_diff']:.3f}")
        if "accuracy" in rec:
            return (f"accuracy {share_text(rec['accuracy'])} vs fp32 {share_text(rec['accuracy_fp32'])} "
                    f"(max drop {cfg.max_drop:.1%})")
        if "top1_agreement" in rec:
            return (f"top-1 agreement {share_text(rec['top1_agreement'])} (needs >= {1 - cfg.max_drop:.1%}), "
                    f"cosine {_cosine(rec['cosine'])}")
        return f"cosine {_cosine(rec['cosine'])} (needs >= {cfg.min_cosine})"

    def missed(self, what: str, worst: str = "", hint: str = "") -> ValidationError:
        """The error when the last step still misses the budget: nothing is written."""
        stalled = (f"; {self.stalled} layers kept in float one after another came no closer to fp32, so no more were "
                   "tried") if self.stalled else ""
        return ValidationError(
            f"{what} misses the budget: " + self.describe(self.last) + (f"; most harmful layers: {worst}" if worst else "")
            + stalled,
            hint="raise --max-drop, allow more float layers (--max-float-layers)" + hint + "; the artifact was not written",
            steps=[{k: s.get(k) for k in ("rung", "note", "top1_agreement", "cosine", "within_budget", "p50_ms_1thread")}
                   for s in self.steps])

    def rung_reached(self) -> str:
        """The highest rung the ladder took (the steps before it are the rungs below)."""
        return max((s.get("rung") for s in self.steps), key=_rung_index, default=RUNGS[0])

    def summary(self) -> dict[str, Any]:
        """The budget's figures for the artifact: the criterion, every step, the one chosen."""
        return {"max_drop": self.cfg.max_drop, "min_cosine": self.cfg.min_cosine, "max_float_layers": self.cfg.max_float_layers,
                "chosen": len(self.steps) - 1, "rung": self.rung_reached(), "steps": [{k: s.get(k) for k in STEP_KEYS} for s in self.steps]}


def _rung_index(rung: str | None) -> int:
    return RUNGS.index(rung) if rung in RUNGS else 0


def _cosine(c: float) -> str:
    """A cosine with the digits that tell it from 1 (0.9999996 is not 1.0000)."""
    return f"{c:.4f}" if c < 0.9999 else f"{c:.7f}"


def closer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether budget step ``a`` came out closer to fp32 than step ``b``: inside the budget first,
    then label accuracy, top-1 agreement, output SQNR (whichever each measured)."""
    def key(r: dict[str, Any]) -> tuple:
        return (bool(r.get("within_budget")), r.get("accuracy") or 0.0, r.get("top1_agreement") or 0.0,
                (r.get("task") or {}).get("chunk_agreement") or 0.0, r.get("sqnr_db") or r.get("cosine") or 0.0)
    return key(a) > key(b)
