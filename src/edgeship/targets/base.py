"""The Target base class: one small class per runtime, registered by name (:mod:`.registry`).

A target converts a :class:`~edgeship.sources.Source` into files in a folder it is given and
returns an (unverified) :class:`~edgeship.artifact.Artifact`; the pipeline verifies it against the
source and only then moves the folder into place. ``runner()`` loads an artifact for inference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel

from .._util import article, tool_versions
from ..artifact import Artifact, Format, Provenance, TensorSpec, Verification, file_entries
from ..errors import EdgeshipError, MissingExtraError, UnsupportedError
from ..runner import Runner
from .layers import layer_modules, shipped_layer_errors
from .registry import get_target, target_class

if TYPE_CHECKING:
    from ..config import DeployConfig
    from ..sources import Source

__all__ = ["Target", "Built"]


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
            inputs=built.inputs, outputs=built.outputs, preprocess=pre, task=source.task, labels=source.labels,
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
        from ..data import distinct_sources
        from ..fidelity import source_is_classifier, task_measure
        from ..quant.flow import Budget
        from ..verify import run_samples

        self.say("int8 budget: the source's outputs on the evaluation inputs")
        samples, labels, refs = source.evaluation(cfg.eval, cfg.eval_samples)
        ref = [np.concatenate([r[k] for r in refs]) for k in range(len(refs[0]))]
        budget = Budget(ref, cfg, source_is_classifier(ref[0], source, cfg, truth=labels), labels, self.say,
                        task_measure(source, samples))
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
                got = run_samples(runner, source, art, samples)
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
