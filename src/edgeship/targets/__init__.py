"""Targets: one small class per runtime, registered by name and imported lazily.

A target converts a :class:`~edgeship.sources.Source` into files in a folder it is given and
returns an (unverified) :class:`~edgeship.artifact.Artifact`; the pipeline verifies it against the
source and only then moves the folder into place. ``runner()`` loads an artifact for inference.

Plugins register more targets through the ``edgeship.targets`` entry-point group
(``name = "package.module:TargetClass"``) or :func:`register_target`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import math
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, create_model

from .._util import article, tool_versions
from ..artifact import (
    ARTIFACT_JSON,
    Artifact,
    Format,
    Provenance,
    TensorSpec,
    Verification,
    check_shapes,
    file_entries,
    read_artifact,
)
from ..config import set_target_options
from ..errors import EdgeshipError, InputError, MissingExtraError, UnsupportedError, UsageError
from ..runner import Runner

if TYPE_CHECKING:
    from ..config import DeployConfig
    from ..sources import Source

__all__ = ["Target", "Built", "Runner", "register_target", "get_target", "available_targets", "runner_for", "load_artifact",
           "target_class", "target_of", "builtin_targets", "registered", "capability_table", "known_precisions",
           "default_targets", "SOURCE_KINDS"]


_SOURCE = object()  # Built.preprocess default: the source's preprocessing, unchanged


@dataclasses.dataclass(frozen=True)
class Built:
    """What a target's :meth:`Target.export` or :meth:`Target.derive` wrote into its folder, and
    what only the target knows of it; the base class makes the :class:`Artifact` from it."""

    files: tuple[str, ...]  # relative to the folder; the model file first (unless model_file says)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    stage: str  # provenance: what made it ("onnx.export", "tflite.int8", ...)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    tools: tuple[str, ...] = ()  # packages whose versions the provenance records
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    preprocess: Any = _SOURCE  # Preprocess | None; default: the source's
    model_file: str | None = None


class Target(ABC):
    """One runtime. Class attributes answer ``capabilities()`` without importing the SDK.

    A target declares and the base runs: :meth:`convert` checks the precision and the source,
    builds what the target needs first (its own verified fp32 for a reduced precision it derives,
    or the artifact of ``derives_from`` at that precision), calls :meth:`export` or :meth:`derive`, and makes the
    Artifact from their :class:`Built` in one place.
    """

    name: ClassVar[str]
    format: ClassVar[Format]
    description: ClassVar[str] = ""
    extra: ClassVar[str | None] = None  # pip extra that brings the SDK
    requires: ClassVar[tuple[str, ...]] = ()  # importable module names the target needs
    runtime_modules: ClassVar[tuple[str, ...] | None] = None  # what a runner imports (default: requires)
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    accepts: ClassVar[tuple[str, ...]] = ("torch", "pt2", "onnx")
    #: the target whose artifact of the same run (and precision) this one is built from ('ort', 'web'
    #: from 'onnx'), if any; deploy builds it first
    derives_from: ClassVar[str | None] = None
    #: left out of ``--targets all`` (a test or example target); named explicitly it still runs
    hidden: ClassVar[bool] = False
    #: reduced precisions are made from this target's own fp32 artifact (derive); False: export()
    #: builds every precision from the source (PT2E and Core ML quantise the torch program)
    derives_reduced: ClassVar[bool] = True
    #: converts a torch module only (not an ONNX file), whatever ``accepts`` lets the plan through
    needs_module: ClassVar[bool] = False
    #: int8 knobs beyond those every int8 honours (calibration/eval data and sizes, --max-drop,
    #: --min-cosine, --task, --no-bias-correction): a non-default value of one not listed is
    #: refused by name, never ignored (the onnx quantiser takes them all; a target whose int8 runs
    #: through :meth:`int8_under_budget` takes max_float_layers)
    int8_knobs: ClassVar[tuple[str, ...]] = ()
    #: its int8 starts from the torch source through :meth:`int8_under_budget`'s ``from_source``, so
    #: it shares the one learned rounding of the source (deploy's task graph runs that first)
    int8_from_torch: ClassVar[bool] = False
    #: the --method values its int8 builds (auto means the target's own recipe)
    int8_methods: ClassVar[tuple[str, ...]] = ("auto", "static")
    #: the target's own knobs: a pydantic model whose field names start with the target's name
    #: (``tflite_nhwc``); the registry adds them to the deploy options and the CLI (``--tflite-nhwc``)
    Options: ClassVar[type[BaseModel] | None] = None
    #: what the benchmark worker's memory limit caps (isolate.Limits.memory_kind): "address_space",
    #: or "data" for a runtime that reserves far more address space than it uses
    memory_limit: ClassVar[str] = "address_space"
    #: takes ONNX files through the onnx2torch bridge (edgeship.sources.bridge): its absence is the refusal
    bridges_onnx: ClassVar[bool] = False
    #: set by edgeship.convert for one conversion: steps of long work ("calibrating on 128 samples")
    progress: Callable[[str], None] | None = None

    def say(self, message: str) -> None:
        """Report a step of long work (calibration, quantisation) to whoever runs the conversion."""
        if self.progress is not None:
            self.progress(message)

    def options(self, cfg: Any) -> Any:
        """This target's :attr:`Options` as ``cfg`` sets them (their defaults where it does not)."""
        if self.Options is None:
            return None
        return self.Options.model_validate({k: getattr(cfg, k) for k in self.Options.model_fields if hasattr(cfg, k)})

    @classmethod
    def refuses(cls, source_kind: str | None = None, precision: str | None = None) -> str | None:
        """Why this target cannot build ``precision`` from a ``source_kind`` model (either may be
        left out), or None when it can: the one capability rule (:func:`capability_table`) that
        plan, ``edgeship targets`` and the precision check ask."""
        if source_kind == "onnx" and cls.bridges_onnx:  # an ONNX file reaches it through the bridge to torch
            from ..sources.bridge import available

            why = available()
            if why:
                return f"{cls.name} takes an ONNX file through a bridge to torch: {why}"
        if source_kind is not None and source_kind not in cls.accepts:
            return f"{cls.name} converts from {', '.join(cls.accepts)}, not {source_kind}"
        if precision is not None and precision not in cls.precisions:
            return f"{cls.name} offers {', '.join(cls.precisions)}"
        return None

    def capabilities(self) -> dict[str, Any]:
        return {"name": self.name, "format": self.format.value, "description": self.description,
                "precisions": list(self.precisions), "accepts": list(self.accepts), "extra": self.extra,
                "derives_from": self.derives_from, "hidden": self.hidden,
                "int8_knobs": list(self.int8_knobs) if "int8" in self.precisions else [],
                "options": sorted(self.Options.model_fields) if self.Options is not None else []}

    @classmethod
    def artifact_from_file(cls, path: Path) -> Artifact | None:
        """An in-memory artifact for a bare model file of this target's format (no artifact.json
        beside it): what the file itself says of its inputs, outputs, preprocessing and labels.
        None when this target cannot describe such a file (the default)."""
        return None

    def runtime_requirement(self, artifact: Artifact) -> dict[str, Any]:
        """What a device needs to run ``artifact``: the runtime's name, the version it was
        verified with here, and what the file itself requires (None when the format does not say)."""
        module = (self.runtime_modules or self.requires or (self.name,))[0]
        dist = module.replace("_", "-")
        tested = tool_versions(dist).get(dist)
        return {"name": dist, "tested_version": tested, "requires": None}

    @classmethod
    def can_run_here(cls) -> bool | str:
        """True when this machine can run the target's artifacts, else a one-line reason (Core ML
        predicts only on macOS). Asked before starting a runner, e.g. by the benchmark."""
        return True

    def check_environment(self) -> list[str]:
        """Names of the required modules that are not installed (empty when ready)."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def probe(self) -> str | None:
        """Whether what :meth:`check_environment` found installed starts here: None, or the
        runtime's own one-line error (``edgeship targets`` shows it instead of "ready"). The
        default has nothing to start."""
        return None

    def install_hint(self, missing: list[str]) -> str:
        """How to install what :meth:`check_environment` found ``missing``."""
        return f"pip install 'edgeship[{self.extra}]'" if self.extra else f"pip install {' '.join(missing)}"

    def ensure_environment(self) -> None:
        missing = self.check_environment()
        if missing:
            raise MissingExtraError(f"target {self.name!r} needs {', '.join(missing)}", hint=self.install_hint(missing))

    def convert(self, source: Source, out_dir: Path, cfg: DeployConfig, precision: str = "fp32",
                parent: Artifact | None = None) -> Artifact:
        """Write the artifact's files into ``out_dir`` (a fresh temp folder) and describe them.

        ``precision`` is one of ``precisions``; ``parent`` is the verified artifact of the same run
        this one is made from: this target's own fp32 (a reduced precision it derives), or the
        artifact of ``derives_from`` at this precision. Without one, it is built first in a
        scratch folder.
        """
        if self.refuses(precision=precision):
            raise UnsupportedError(f"the {self.name} target builds {', '.join(self.precisions)}, not {precision}")
        if self.needs_module and source.module is None:
            raise UnsupportedError(f"the {self.name} target converts torch models, not {article(source.kind)} file",
                                   hint="give the PyTorch model (a factory or a .pt2 program)")
        if precision == "int8":
            self.check_int8_knobs(cfg)
        self.check(source, cfg, precision)
        with contextlib.ExitStack() as stack:
            def scratch() -> Path:
                return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"edgeship-{self.name}-")))

            if precision == "fp32" or not self.derives_reduced:
                base = None
                if self.derives_from:  # its artifact at this precision (ort, web from onnx)
                    fmt = target_class(self.derives_from).format
                    base = parent if parent is not None and parent.format == fmt and parent.precision == precision \
                        else get_target(self.derives_from).convert(source, scratch(), cfg, precision)
                built = self.export(source, out_dir, cfg, precision, base)
                parent_digest = source.digest
            else:
                if parent is None or parent.format != self.format or parent.precision != "fp32":
                    parent = self.convert(source, scratch(), cfg, "fp32")
                built = self.derive(source, parent, out_dir, cfg, precision)
                parent_digest = parent.digest
        return self._artifact(source, out_dir, built, precision, parent_digest)

    def _artifact(self, source: Source, out_dir: Path, built: Built, precision: str, parent_digest: str) -> Artifact:
        pre = source.preprocess if built.preprocess is _SOURCE else built.preprocess
        return Artifact(
            name=f"{source.name}-{self.name}-{precision}", target=self.name, format=self.format, precision=precision,
            root=out_dir, files=file_entries(out_dir, list(built.files)), model_file=built.model_file or built.files[0],
            inputs=built.inputs, outputs=built.outputs, preprocess=pre, labels=source.labels,
            provenance=Provenance(stage=built.stage, parent_digest=parent_digest,
                                  source=source.origin, config=built.config, tool_versions=tool_versions(*built.tools)),
            notes=built.notes, details=built.details,
        )

    def int8_under_budget(self, source: Source, out_dir: Path, cfg: DeployConfig, parent_digest: str,
                          quantise: Callable[[list[str]], tuple[Built, list[dict[str, Any]]]],
                          from_source: Callable[[Source, Path], Callable[[list[str]], tuple[Built, list[dict[str, Any]]]]]
                          | None = None) -> Built:
        """The shared int8 flow (:mod:`edgeship.quant.flow`) for a target whose backend quantises
        with a list of layers kept in float.

        ``quantise(excluded)`` writes the int8 files into ``out_dir`` with those layers (node names
        as its attribution gives them) in float and returns what it built and its per-layer
        attribution, worst first. Each candidate is run through this target's runner on the
        evaluation inputs and judged against the source by the rule verify applies; while the
        budget is missed the worst layer is kept in float too, one at a time, up to
        ``--max-float-layers``. The steps go into ``details["quantization"]``; a model that still
        misses the budget is a ValidationError naming its worst layers. The artifact's per-layer
        figures (``layers``, ``most_sensitive_layers``, ``layer_metric``) are those of the candidate
        it ships, against the float weights before any rounding, by source module
        (:func:`shipped_layer_errors`).

        ``from_source(src, work)``, when the target gives it, returns the same ``quantise`` starting
        from another torch source (``work``: a scratch folder for its float files): the source with
        its weights rounded the learned way (:func:`edgeship.quant.rounding.rounded_source`, made
        once per source and shared by every target). With ``--rounding auto`` that candidate is
        measured after nearest rounding and kept only when it is closer to fp32; ``adaround`` keeps
        it; ``nearest`` skips it.
        """
        import tempfile

        from ..data import distinct_sources
        from ..fidelity import source_is_classifier
        from ..quant.flow import Budget
        from ..verify import artifact_inputs

        self.say("int8 budget: the source's outputs on the evaluation inputs")
        samples, labels, refs = source.evaluation(cfg.eval, cfg.eval_samples)
        ref = [np.concatenate([r[k] for r in refs]) for k in range(len(refs[0]))]
        budget = Budget(ref, cfg, source_is_classifier(ref[0], source, cfg, truth=labels), labels, self.say)
        result: dict[str, Any] = {}

        # what the candidate is quantised from: the source, or its equalised copy; and, once rounded
        # the learned way, that rounding's per-layer figures (its rows measure against rounded weights)
        current: dict[str, Any] = {"quantise": quantise, "equalized": False, "rounded": None}

        def attempt(excluded: list[str], note: str) -> dict[str, Any]:
            built, layers = current["quantise"](excluded)
            art = self._artifact(source, out_dir, built, "int8", parent_digest)
            self.say(f"int8 budget: measuring on {len(samples)} evaluation inputs")
            runner = self.runner(art, threads=0)
            try:
                got = runner.run_many([artifact_inputs(source, art, s) for s in samples])
            finally:
                runner.close()
            # "layers": the first candidate's (nearest rounding of the source: the float-layer order);
            # "shipped": the last one's, which is what the artifact holds
            result.update(built=built, layers=result.get("layers") or layers,
                          shipped=(layers, current["rounded"], current["equalized"]))
            own = [k for k in built.config.get("kept_float", []) if k not in excluded]  # the backend's own choice
            if own and not excluded:
                note = f"{note}, but {', '.join(own)} ({self.name} keeps it in float)"
            return budget.measure([np.concatenate([g[k] for g in got]) for k in range(len(got[0]))], excluded, note,
                                  size_bytes=sum(f.size for f in art.files))

        rounding: dict[str, Any] | None = None
        equalization: dict[str, Any] | None = None
        with tempfile.TemporaryDirectory(prefix=f"edgeship-{self.name}-rounded-") as work:
            attempt([], "all weighted layers int8")
            base = source  # the torch source the int8 starts from: the source, or its equalised copy
            if from_source is not None and source.module is not None:
                base, equalization = self._try_equalization(source, cfg, from_source, Path(work) / "equalized", budget,
                                                            attempt, current, len(result["layers"]))
            if from_source is not None and source.module is not None and cfg.rounding != "nearest" \
                    and not budget.climbs(cfg.rounding):
                rounding = budget.not_needed(cfg.rounding)
            elif from_source is not None and source.module is not None and cfg.rounding != "nearest":
                rounding = self._try_learned_rounding(base, cfg, from_source, Path(work) / "rounded", budget, attempt,
                                                      current)
            layers = result["layers"]
            named = layer_modules(source, layers)  # the source module of each (OpenVINO's op names are not)

            def label(r: dict[str, Any]) -> str:
                return f"{r['node']} ({named.get(r['node']) or r.get('module') or r['op']}, {r['weight_sqnr_db']:.1f} dB weights)"

            budget.keep_worst_in_float([(r["node"], label(r)) for r in layers], attempt)
        if not budget.last["within_budget"]:
            raise budget.missed(f"{self.name} int8", ", ".join(label(r) for r in layers[:3]))
        built = result["built"]
        quantization = {**built.details.get("quantization", {}), **budget.summary(),
                        "eval_samples": len(samples), "eval_labels": labels is not None,
                        "eval_sources": distinct_sources(cfg.eval, source, "evaluation", len(samples)),
                        "eval_data": cfg.eval or f"default: {source.inputs_origin('evaluation')}",
                        **shipped_layer_errors(source, *result["shipped"])}
        if rounding is not None:
            quantization["rounding"] = rounding
        if equalization is not None:
            quantization["equalization"] = {k: v for k, v in equalization.items() if k != "per_pair"}
        return dataclasses.replace(built, details={**built.details, "quantization": quantization})

    def _try_equalization(self, source: Source, cfg: DeployConfig, from_source: Callable[..., Any], work: Path,
                          budget: Any, attempt: Callable[[list[str], str], dict[str, Any]], current: dict[str, Any],
                          layers: int) -> tuple[Source, dict[str, Any]]:
        """Measure int8 from the equalised source (:func:`edgeship.quant.equalize.equalized_source`,
        shared by every target) when :func:`~edgeship.quant.equalize.plan` says it is worth it;
        keep it when closer to fp32 (or asked for). Returns the source to go on from and the record."""
        import time

        from ..quant.equalize import OFF, choice, equalized_source, note, plan

        if cfg.equalization == "off":
            return source, dict(OFF)
        if not budget.climbs(cfg.equalization):
            return source, budget.not_needed(cfg.equalization)
        t0 = time.perf_counter()
        eq, rec = equalized_source(source)
        go, record = plan(cfg, rec, layers)
        if not go:
            return source, record
        work.mkdir(parents=True, exist_ok=True)
        without = budget.last
        plain = current["quantise"]
        current.update(quantise=from_source(eq, work), equalized=True)
        self.say(note(rec))
        budget.rung = "equalisation"
        keep, record = choice(cfg, record, attempt([], note(rec)), without, rec, t0)
        if keep:
            return eq, record
        self.say("cross-layer equalisation did not help here: left out")
        current.update(quantise=plain, equalized=False)
        attempt([], "without equalisation (equalisation was no closer)")
        return source, record

    def _try_learned_rounding(self, source: Source, cfg: DeployConfig, from_source: Callable[..., Any], work: Path,
                              budget: Any, attempt: Callable[[list[str], str], dict[str, Any]],
                              current: dict[str, Any]) -> dict[str, Any]:
        """Measure int8 from the source with learned rounding after nearest rounding; keep the
        closer one (or the asked one) as what the budget loop starts from. The layers kept in float
        are still chosen in nearest rounding's order; the artifact's per-layer figures measure its
        weights against the float weights before rounding (:func:`shipped_layer_errors`), never
        against the rounded ones (weights already on the grid show no error there)."""
        import time

        from ..quant.rounding import choice, rounded_source

        nearest = budget.last
        budget.rung = "learned rounding"
        t0 = time.perf_counter()
        work.mkdir(parents=True, exist_ok=True)
        rounded, layers = rounded_source(source, cfg, self.say)
        quantise_nearest = current["quantise"]
        current.update(quantise=from_source(rounded, work), rounded=layers)
        learned = sum(1 for r in layers if r["kept"] == "learned")
        corrected = sum(1 for r in layers if r.get("bias_corrected") not in (None, "none", "off"))
        rec = attempt([], f"learned rounding ({learned} of {len(layers)} layers"
                          + (f", {corrected} bias-corrected against the original weights)" if corrected else ")"))
        keep, record = choice(cfg, rec, nearest, layers, t0)
        if not keep:
            self.say("learned rounding did not help here: nearest rounding kept")
            current.update(quantise=quantise_nearest, rounded=None)
            attempt([], "nearest rounding kept (learned rounding was no closer)")
        return {**record, "shared": "rounded once on the torch source for every target",
                "attribution": "layers kept in float are taken in nearest rounding's order of weight SQNR; the "
                               "per-layer figures (layers, layer_metric) measure the shipped weights against the "
                               "float weights before rounding"}

    def check_int8_knobs(self, cfg: DeployConfig) -> None:
        fields = type(cfg).model_fields
        bad = [f"--{k.replace('_', '-')} {getattr(cfg, k)}" for k in ("calibration", "max_float_layers", "equalization", "rounding",
                                                                        "rounding_iters")
               if k in fields and k not in self.int8_knobs and getattr(cfg, k) != fields[k].default]
        method = getattr(cfg, "method", "auto")
        if method not in self.int8_methods and method != "fp16":
            bad.insert(0, f"--method {method}")
        if bad:
            takes = ", ".join(f"--{k.replace('_', '-')}" for k in self.int8_knobs)
            raise UnsupportedError(f"the {self.name} target's int8 does not take {', '.join(bad)}",
                                   hint=f"{self.name} int8 builds {'/'.join(m for m in self.int8_methods if m != 'auto')} "
                                        f"int8 with min/max ranges" + (f" and takes {takes}" if takes else "")
                                        + "; leave the others at their defaults for it, or use --targets onnx for them")

    def check(self, source: Source, cfg: DeployConfig, precision: str) -> None:
        """Refuse, before any work, what this target cannot build (an UnsupportedError naming why)."""
        return None

    def export(self, source: Source, out_dir: Path, cfg: DeployConfig, precision: str = "fp32",
               base: Artifact | None = None) -> Built:
        """Build from the source (fp32, or every precision when ``derives_reduced`` is False);
        ``base`` is the artifact of ``derives_from`` at ``precision`` when the target declares one."""
        raise NotImplementedError(f"target {self.name!r} implements neither export() nor convert()")

    def derive(self, source: Source, parent: Artifact, out_dir: Path, cfg: DeployConfig, precision: str) -> Built:
        """A reduced precision made from this target's verified fp32 ``parent``."""
        raise UnsupportedError(f"the {self.name} target does not derive {precision} from its fp32 artifact")

    @abstractmethod
    def runner(self, artifact: Artifact, threads: int = 1) -> Runner: ...

    def verify(self, source: Source, artifact: Artifact, cfg: DeployConfig) -> Verification:
        """Compare the artifact with its source on real inputs (numerically, through ``runner``).

        An fp32 artifact that fails is located: the first node whose output diverges from the
        reference ONNX graph (:meth:`locate_divergence`). A target whose runtime cannot run here
        (Core ML on Linux) overrides this with structural checks and says so in the Verification's
        ``reference`` and ``criterion``.
        """
        from ..verify import verify

        runner = self.runner(artifact, threads=0)
        try:
            v = verify(source, artifact, runner, cfg)
        finally:
            runner.close()
        if not v.passed and artifact.precision == "fp32":
            try:
                where = self.locate_divergence(source, artifact, cfg)
            except EdgeshipError:  # locating is a help; the failed check stands without it
                where = None
            if where:
                v = v.model_copy(update={"first_divergence": where})
        return v

    def intermediates(self, artifact: Artifact, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """The artifact's intermediate tensors on ``feeds``, named as in the ONNX graph it came from;
        None when its format cannot expose them (the default for non-ONNX formats)."""
        if artifact.format != Format.onnx:
            return None
        from ..formats.onnx import onnx_intermediates

        return onnx_intermediates(artifact.model_path, feeds, optimize=True)

    def locate_divergence(self, source: Source, artifact: Artifact, cfg: DeployConfig) -> dict[str, Any] | None:
        """For an ONNX source: the first node of the source graph whose output differs in the
        artifact (name, op type, module, tensor, error), on up to four verification inputs; so the
        user knows whether the converter or the runtime went wrong, and at which op."""
        if source.kind != "onnx" or source.path is None:
            return None
        from ..formats.onnx import first_divergence, onnx_intermediates

        names = [s.name for s in source.inputs]
        for sample in source.verification_inputs(limit=4):
            feeds = dict(zip(names, sample))
            got = self.intermediates(artifact, feeds)
            if got is None:
                return None
            where = first_divergence(source.path, onnx_intermediates(source.path, feeds), got, cfg.atol, cfg.rtol)
            if where:
                return where
        return None


# ---- the int8 flow's per-layer figures ---------------------------------------------------

#: a backend's int8 weights "land on" the learned levels when their own error against the rounded
#: weights is below this share of the rounding's error (amplitude): the figure is then the rounding's
LANDED = 1e-3


def shipped_layer_errors(source: Source, rows: list[dict[str, Any]], rounded: list[dict[str, Any]] | None,
                         equalized: bool) -> dict[str, Any]:
    """``details.quantization``'s per-layer figures of the int8 an :meth:`Target.int8_under_budget`
    ships, from the backend's ``rows`` of that candidate (each layer's int8 weights against the
    float weights the backend was given, worst first): every layer named by its source module where
    the backend's name can be traced to one (:func:`layer_modules`), and measured against the float
    weights before any rounding (the source's, or its equalised copy's: the same function).

    When the backend quantised weights already rounded the learned way (``rounded``: that
    rounding's per-layer figures, :func:`edgeship.quant.rounding.round_torch_module`), its own rows
    only say how far its int8 is from those rounded weights (~150 dB, or none at all, when it lands
    on the learned levels). A rounded layer's figure is then the rounding's error against the float
    weights combined with the backend's: exact when the backend lands on the learned levels, else the
    lower bound the triangle inequality gives (``bound``: the true figure is at least that; never
    above the rounding's own). A layer that cannot be traced to a source module is left out and
    named in ``layer_metric.unattributed``: its figure is against weights nobody can name."""
    from ..quant import layer_errors

    modules = layer_modules(source, rows)
    by_module = {r["module"]: r for r in rounded or [] if r.get("module")}
    out: list[dict[str, Any]] = []
    unattributed: list[str] = []
    for r in rows:
        module = modules.get(r["node"])
        row = {**r, "module": module or r.get("module")}
        if rounded is not None:
            if module is None:
                unattributed.append(r["node"])
                continue
            done = by_module.get(module)
            if done is not None:  # quantised from rounded weights: the rounding's error first
                db, exact = _composed_db(done.get("weight_sqnr_db"), r.get("weight_sqnr_db"))
                if db is None:
                    unattributed.append(r["node"])
                    continue
                row["weight_sqnr_db"] = round(db, 2)
                if not exact:
                    row["bound"] = "at least"
        out.append(row)
    out.sort(key=lambda r: r["weight_sqnr_db"] if r.get("weight_sqnr_db") is not None else math.inf)
    compact = layer_errors(out)
    for c, r in zip(compact, out):
        if r.get("bound"):
            c["bound"] = r["bound"]
    reference = ("the float weights after cross-layer equalisation (the original model's function, its channels "
                 "rescaled between layer pairs)" if equalized else "the original float weights")
    metric: dict[str, Any] = {
        "metric": "weight_sqnr_db", "label": "weight SQNR",
        "reference": reference,
        "how": "each layer's int8 weights (dequantised) against " + reference + " (a batch norm after the layer folded "
               "into it, as the backend quantises it)"
               + (": for a layer rounded the learned way, the rounding's error against them (measured on the torch "
                  "model) combined with the backend's own against the rounded weights; exact where the backend's "
                  "int8 lands on the learned levels, else a lower bound (bound: at least)" if rounded is not None else ""),
        "named_by": "source module" if all(r.get("module") for r in out) else
                    "source module where the backend's layer names trace to one, else the backend's own layer name"}
    if unattributed:
        metric["unattributed"] = unattributed
        metric["unattributed_why"] = ("their int8 weights were measured against the rounded weights and their names "
                                      "do not trace to a source module, so no figure against " + reference + " is known")
    return {"layers": compact, "most_sensitive_layers": compact[:5], "layers_measured": len(compact), "layer_metric": metric}


def _composed_db(rounding_db: Any, backend_db: Any) -> tuple[float | None, bool]:
    """The SQNR (dB) of int8 weights against float weights ``W``, from the rounding's figure (the
    rounded weights ``R`` against ``W``) and the backend's (its int8 weights ``Q`` against ``R``):
    ``|Q - W| <= |R - W| + |Q - R|`` and ``|R| <= |W| (1 + |R - W| / |W|)``, so the relative error is at
    most ``a + b (1 + a)`` (``a``, ``b`` the two relative amplitudes). Whether that bound is the figure
    itself: the backend's error is negligible (:data:`LANDED`). (None, False) when either is missing."""
    def amplitude(db: Any) -> float | None:
        if not isinstance(db, (int, float)) or math.isnan(db):
            return None
        return 0.0 if math.isinf(db) and db > 0 else 10 ** (-float(db) / 20)

    a, b = amplitude(rounding_db), amplitude(backend_db)
    if a is None or b is None:
        return None, False
    total = a + b * (1 + a)
    exact = b * (1 + a) <= LANDED * a
    if total == 0:
        return math.inf, True
    return (float(rounding_db) if exact else -20 * math.log10(total)), exact


def layer_modules(source: Source, rows: list[dict[str, Any]]) -> dict[str, str]:
    """Per row (by its node name) the weighted source module it is, in the source's own names: the
    row's ``module`` (a unique tail, as LiteRT's '6._project_conv', made whole; a submodule of the
    layer, as LiteRT's '_blocks.3._depthwise_conv.static_padding' for a convolution it fused with
    its padding, taken to the layer), else what its ``source_ref`` points at in the source (a torch
    source's k-th convolution, linear layer or the layer its k-th batch norm reads, checked against
    the weight's ``shape``; an ONNX source's node). Rows that name none are left out."""
    names, graph = _source_layers(source, need_graph=any(r.get("module") is None and r.get("source_ref") for r in rows))
    out = {}
    for r in rows:
        module = _whole(r.get("module"), names) if r.get("module") else None
        if module is None and r.get("source_ref") and graph is not None:
            module = _resolve(r["source_ref"], r.get("shape"), graph)
        if module is not None:
            out[r["node"]] = module
    return out


def _whole(module: str, names: tuple[set[str], set[str]] | None) -> str | None:
    """``module`` as one of the weighted layers (``names``: every module's name and the weighted
    ones'; None: the source has no torch module, the name stands): the module it names, or the one
    it is the unique tail of, or the nearest weighted module it sits in."""
    if names is None:
        return module
    every, weighted = names
    if module not in every:
        tails = [n for n in every if n.endswith("." + module)]
        if len(tails) != 1:
            return None
        module = tails[0]
    parts = module.split(".")
    return next((".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in weighted), None)


def _source_layers(source: Source, need_graph: bool) -> tuple[tuple[set[str], set[str]] | None, dict[str, Any] | None]:
    """The source's module names and its weighted layers' (None when it has no torch module: names
    are taken as given), and when asked its weighted layers in graph order: {"conv": [(module,
    shape)...], "linear": [...], "bn_input": [...], "onnx": {node name: module}}."""
    if source.module is None:
        if not need_graph or source.kind != "onnx" or source.path is None:
            return None, None
        from ..formats.onnx import module_path
        from ..sources import load_onnx_model

        try:
            model = load_onnx_model(Path(source.path), weights=False)
        except EdgeshipError:
            return None, None
        return None, {"onnx": {n.name: m for n in model.graph.node if (m := module_path(n))}}
    # every module, and the weighted layers: those holding a weight of two or more dimensions
    every = {n for n, _ in source.module.named_modules() if n}
    names = (every, {n for n, m in source.module.named_modules()
                     if n and "weight" in dict(m.named_parameters(recurse=False)) and m.weight.ndim >= 2})
    if not need_graph:
        return names, None
    import torch

    from ..quant.pt2e import graph_attr, weighted_ops

    conv, linear = weighted_ops()
    try:
        with torch.no_grad():
            gm = torch.export.export(source.module, tuple(torch.from_numpy(np.ascontiguousarray(a))
                                                          for a in source.example_inputs)).module()
    except Exception:  # noqa: BLE001 - naming is a help: the rows keep the backend's names
        return names, None

    def module(n: Any) -> str | None:
        stack = n.meta.get("nn_module_stack") or {}
        return next(reversed(list(stack.values())))[0] if stack else None

    def shape(n: Any) -> tuple[int, ...] | None:
        w = n.args[1] if len(n.args) > 1 else None
        return tuple(graph_attr(gm, w.target).shape) if getattr(w, "op", None) == "get_attr" else None

    graph: dict[str, Any] = {"conv": [], "linear": [], "bn_input": []}
    for n in gm.graph.nodes:
        if n.op != "call_function":
            continue
        if n.target in conv or n.target in linear:
            graph["conv" if n.target in conv else "linear"].append((module(n), shape(n)))
        elif "batch_norm" in str(n.target):
            x = n.args[0] if n.args else None
            graph["bn_input"].append((module(x), shape(x)) if getattr(x, "target", None) in conv else (None, None))
    return names, graph


def _resolve(ref: dict[str, Any], shape: Any, graph: dict[str, Any]) -> str | None:
    if "onnx_nodes" in ref:
        return next((graph["onnx"][n] for n in ref["onnx_nodes"] if n in graph.get("onnx", {})), None)
    layers = graph.get(ref.get("kind"), [])
    k = ref.get("index")
    if not isinstance(k, int) or not 0 <= k < len(layers):
        return None
    module, want = layers[k]
    if module is None or want is None or shape is None:
        return None
    # the same weight: as many values, as many output channels (a linear layer's may be stored transposed)
    same = int(np.prod(want)) == int(np.prod(shape)) and (ref.get("kind") == "linear" or want[0] == shape[0])
    return module if same else None


# ---- registry ---------------------------------------------------------------------------

_BUILTIN: dict[str, str] = {
    "onnx": "edgeship.targets.onnx:OnnxTarget",
    "tflite": "edgeship.targets.tflite:TfliteTarget",
    "ort": "edgeship.targets.ort:OrtTarget",
    "executorch": "edgeship.targets.executorch:ExecuTorchTarget",
    "openvino": "edgeship.targets.openvino:OpenVinoTarget",
    "coreml": "edgeship.targets.coreml:CoreMLTarget",
    "web": "edgeship.targets.web:WebTarget",
}
_REGISTRY: dict[str, str | type[Target]] = dict(_BUILTIN)
_ENTRY_POINTS_LOADED = False


def register_target(name: str, target: str | type[Target]) -> None:
    """Register a target class (or its 'module:Class' path, imported on first use)."""
    _REGISTRY[name] = target


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in importlib.metadata.entry_points(group="edgeship.targets"):
        _REGISTRY.setdefault(ep.name, ep.value)


SOURCE_KINDS = ("torch", "pt2", "onnx")


def capability_table(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Target × source kind × precision: whether each registered target (or those in ``names``)
    builds it, and why not (:meth:`Target.refuses`). Reads the classes only, no SDK."""
    rows = []
    for name in names if names is not None else available_targets():
        cls = target_class(name)
        for kind in SOURCE_KINDS:
            for precision in cls.precisions:
                why = cls.refuses(kind, precision)
                rows.append({"target": name, "source_kind": kind, "precision": precision, "ok": why is None, "reason": why})
    return rows


def known_precisions() -> list[str]:
    """Every reduced precision some registered target offers (what --quantize takes)."""
    return list(dict.fromkeys(r["precision"] for r in capability_table() if r["precision"] != "fp32"))


def default_targets() -> list[str]:
    """What ``--targets all`` means: every registered target not marked ``hidden``."""
    return [n for n in available_targets() if not target_class(n).hidden]


_WITH_OPTIONS: dict[tuple[Any, ...], type[DeployConfig]] = {}


def _with_target_options(base: type[DeployConfig]) -> type[DeployConfig]:
    """``base`` with every registered target's Options fields (cached per registry state). A
    field must start with its target's name and be taken once; a plugin whose module does not
    import is left out here (using it names the error)."""
    if base in _WITH_OPTIONS.values():
        return base
    fields: dict[str, Any] = {}
    owners: dict[str, str] = {}
    holders: dict[type[BaseModel], list[str]] = {}  # a subclass registered under another name shares its Options
    for name in available_targets():
        try:
            cls = target_class(name)
        except Exception:
            if name in _BUILTIN:
                raise
            continue
        opts = getattr(cls, "Options", None)
        if opts is not None:
            declared_by = next(c for c in cls.__mro__ if "Options" in vars(c))  # named after the class that declares them
            holders.setdefault(opts, []).extend([getattr(declared_by, "name", name), name])
    for opts, names in holders.items():
        prefixes = tuple(dict.fromkeys(n.replace("-", "_") + "_" for n in names))
        for f, info in opts.model_fields.items():
            if not f.startswith(prefixes):
                raise UsageError(f"target {names[0]!r}: its option {f!r} must start with {prefixes[0]!r}",
                                 hint=f"name a target's options after it, e.g. {prefixes[0]}layout")
            if f in base.model_fields or f in owners:
                raise UsageError(f"target {names[0]!r}: its option {f!r} is already an option of "
                                 f"{'target ' + repr(owners[f]) if f in owners else 'edgeship'}")
            owners[f] = names[0]
            fields[f] = (info.annotation, info)
    key = (base, *sorted(id(opts) for opts in holders))
    if key not in _WITH_OPTIONS:
        _WITH_OPTIONS[key] = create_model(base.__name__, __base__=base, __module__=base.__module__, **fields)
    return _WITH_OPTIONS[key]


set_target_options(_with_target_options)


def available_targets() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def builtin_targets() -> dict[str, str]:
    """The targets edgeship ships: name -> 'module:Class'."""
    return dict(_BUILTIN)


def registered() -> dict[str, str | type[Target]]:
    """Every registered target: name -> 'module:Class' (not yet imported) or the class."""
    _load_entry_points()
    return dict(_REGISTRY)


def registered_ref(name: str) -> str | type[Target] | None:
    """What ``name`` is registered as ('module:Class' not yet imported, or the class), without importing."""
    _load_entry_points()
    return _REGISTRY.get(name)


def target_class(name: str) -> type[Target]:
    """The class registered as ``name`` (imported on first use); UsageError naming the known ones."""
    _load_entry_points()
    ref = _REGISTRY.get(name)
    if ref is None:
        raise UsageError(f"unknown target {name!r}", hint=f"known targets: {', '.join(available_targets())}")
    if isinstance(ref, str):
        mod, _, cls = ref.partition(":")
        ref = getattr(importlib.import_module(mod), cls)
        _REGISTRY[name] = ref
    return ref


def get_target(name: str) -> Target:
    return target_class(name)()


def target_for_format(fmt: Format) -> Target:
    for name in available_targets():
        t = get_target(name)
        if t.format == fmt:
            return t
    raise UsageError(f"no registered target runs {fmt.value} artifacts",
                     hint=f"known targets: {', '.join(available_targets())}")


def target_of(artifact: Artifact) -> Target:
    """The target that produced ``artifact`` (by name, else by format)."""
    _load_entry_points()
    return get_target(artifact.target) if artifact.target in _REGISTRY else target_for_format(artifact.format)


def runner_for(artifact: Artifact, threads: int = 1) -> Runner:
    """The runner of the target that produced ``artifact`` (by name, else by format)."""
    target = target_of(artifact)
    target.ensure_environment()
    return target.runner(artifact, threads=threads)


def load_artifact(path: str | Path) -> Artifact:
    """Load an artifact from its folder, its artifact.json, or its model file; a bare model file
    with no artifact.json beside it (any .onnx, any .tflite) is described by the target of its
    format, detected by content (:meth:`Target.artifact_from_file`)."""
    p = Path(path)
    if p.is_file() and p.name != ARTIFACT_JSON and not (p.parent / ARTIFACT_JSON).is_file():
        from ..sources import sniff_format

        kind = sniff_format(p)
        try:
            fmt = Format(kind)
        except ValueError:
            fmt = None
        if fmt is not None:
            try:
                cls = target_class(kind) if registered_ref(kind) is not None else type(target_for_format(fmt))
            except UsageError:
                cls = None
            art = cls.artifact_from_file(p) if cls is not None and cls.format == fmt else None
            if art is not None:  # what the file declares, checked as a record's is
                check_shapes(art, str(p), "the file is corrupt or hand-edited: convert the model again")
                return art
        raise InputError(f"{p} is not an edgeship artifact (no {ARTIFACT_JSON} beside it)",
                         hint="give a folder written by edgeship deploy (e.g. edgeship-out/onnx-fp32), "
                              "or an .onnx or .tflite file")
    return read_artifact(p)
