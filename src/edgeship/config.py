"""Typed configuration, defined once. The CLI flags are generated from these fields.

Each field has a type, a default and a one-line description; the CLI's ``--help`` shows the
description, and ``edgeship.deploy(**kwargs)`` takes the same names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ._util import check_example_size
from .errors import UsageError

__all__ = ["SourceConfig", "VerifyConfig", "QuantizeConfig", "QuantizeCommandConfig", "OnnxConfig", "DeployConfig",
           "ClassifyConfig", "OcrConfig",
           "load_config"]


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    #: the command whose --help lists these options (named in a bad value's hint)
    command: ClassVar[str] = ""

    @classmethod
    def build(cls, **kwargs: Any):
        """Validate kwargs into the config; a bad value is a UsageError naming the option."""
        try:
            return cls(**kwargs)
        except ValueError as e:  # pydantic.ValidationError
            errs = getattr(e, "errors", lambda: [])()
            if errs:
                first = errs[0]
                where = "--" + "-".join(str(x) for x in first.get("loc", ())).replace("_", "-")
                msg = str(first.get("msg", "")).removeprefix("Value error, ")
                raise UsageError(f"{where}: {msg}",
                                 hint=f"see edgeship {cls.command + ' ' if cls.command else ''}--help for {where}") from None
            raise UsageError(str(e)) from None


def split_commas(v: Any) -> Any:
    if isinstance(v, str):
        v = [v]
    if isinstance(v, (list, tuple)):
        return [p.strip() for item in v for p in str(item).split(",") if p.strip()]
    return v


def int_list(v: Any) -> Any:
    """A number, '1,2', or a list of either -> a list (pydantic checks the items are integers)."""
    return [v] if isinstance(v, int) else split_commas(v)


#: field types that also take comma-separated text: "onnx,tflite" / "1,2"
CommaList = Annotated[list[str], BeforeValidator(split_commas)]
IntList = Annotated[list[int], BeforeValidator(int_list)]


class SourceConfig(ConfigModel):
    input_shape: list[str] = Field(
        default_factory=list,
        description="the input's shape for examples, verification and calibration: NAME=1,3,640,640 by input name "
                    "(NAME= a scalar) or 1,3,224,224 in input order; repeat for several inputs (a model file's "
                    "dynamic dims stay dynamic in its artifacts)")
    input_value: list[str] = Field(
        default_factory=list,
        description="the values an input takes, NAME=V[,V...] (e.g. sr=16000,8000): examples and random inputs use "
                    "only these; repeat per input")
    input_dtype: list[str] = Field(
        default_factory=list, description="dtype of each input (one for all), e.g. float32 or int64")
    weights: Path | None = Field(None, description="state_dict checkpoint for a factory's model (loaded weights-only)")
    allow_pickle: bool = Field(False, description="allow loading a pickled model that can run code (trusted files only)")
    dynamic_batch: bool = Field(True, description="export with a dynamic batch axis")
    input_range: list[str] = Field(
        default_factory=list,
        description="values random inputs are drawn from, LO,HI (token ids LO..HI-1); repeat per input or give once "
                    "for all (default for ids: the rows of the embedding that reads them)")
    preprocess: str | None = Field(
        None, description="image preprocessing for a model file that does not carry it: a JSON file, or "
                          "key=value pairs, e.g. 'mean=127,std=128' or 'imagenet,size=224' (keys: input, size, height, "
                          "width, layout, color, mean, std, crop, resample, output; mean/std per channel as a/b/c)")
    task_record: str | None = Field(None, description="what the model's inputs and outputs are (edgeship.tasks), JSON "
                                                      'or a .json file, e.g. {"kind": "text_recognition"}; it travels '
                                                      "in every artifact's record (a pipeline file gives each model's)")
    labels: Path | None = Field(None, description="class labels for a model file that does not carry them: labels.txt "
                                                  "(one per line) or a JSON list")

    @field_validator("input_dtype", mode="before")
    @classmethod
    def _dtypes(cls, v: Any) -> Any:
        return split_commas(v)

    def shapes(self) -> list[tuple[int, ...]] | dict[str, tuple[int, ...]] | None:
        """``--input-shape``: in input order (``1,3,224,224``), or by input name (``x=1,3,640,640``;
        ``sr=`` a scalar) as a dict; the two forms are not mixed."""
        def parse(text: str, spec: str, named: bool) -> tuple[int, ...]:
            if text.lower() in ("scalar", "()", "[]"):
                text = ""
            hint = "write it like 1,3,224,224, or by input name x=1,3,640,640 (sr= for a scalar)"
            try:
                dims = tuple(int(p) for p in text.strip("[]()").replace("x", ",").split(",") if p.strip())
            except ValueError:
                raise UsageError(f"--input-shape {spec!r} is not a list of integers", hint=hint) from None
            if (not dims and not named) or any(d <= 0 for d in dims):
                raise UsageError(f"--input-shape {spec!r} needs positive dimensions", hint=hint)
            check_example_size(dims, 4, f"--input-shape {spec}")
            return dims

        return _by_name_or_in_order("--input-shape", self.input_shape, parse, "x=1,3,224,224")

    def values(self) -> dict[str, tuple[float, ...]] | None:
        """``--input-value NAME=V[,V...]``: the values an input takes (a sample rate, a mode flag)."""
        def parse(text: str, spec: str, named: bool) -> tuple[float, ...]:
            try:
                vals = tuple(float(p) for p in text.replace("|", ",").split(",") if p.strip())
            except ValueError:
                vals = ()
            if not named or not vals or not all(math.isfinite(v) for v in vals):
                raise UsageError(f"--input-value {spec!r} is not NAME=V[,V...]", hint="write it like sr=16000 or sr=16000,8000")
            return tuple(dict.fromkeys(vals))

        return _by_name_or_in_order("--input-value", self.input_value, parse, "sr=16000,8000")  # type: ignore[return-value]

    def ranges(self) -> list[tuple[float, float]] | dict[str, tuple[float, float]] | None:
        """``--input-range LO,HI`` (repeat per input, or once for all) as ``[(low, high), ...]``, or
        by input name (``ids=0,30522``) as a dict."""
        def parse(text: str, spec: str, named: bool) -> tuple[float, float]:
            parts = [p.strip() for p in text.replace(":", ",").split(",") if p.strip()]
            try:
                lo, hi = (float(p) for p in parts)
            except ValueError:
                raise UsageError(f"--input-range {spec!r} is not two numbers LO,HI",
                                 hint="write it like 0,30000 (token ids 0..29999) or -1,1, or by name ids=0,30000") from None
            if not hi > lo:
                raise UsageError(f"--input-range {spec!r}: HI must be greater than LO", hint="write it like 0,30000")
            return lo, hi

        return _by_name_or_in_order("--input-range", self.input_range, parse, "ids=0,30000")

    def source_kwargs(self) -> dict[str, Any]:
        return dict(input_shapes=self.shapes(), input_dtypes=self.input_dtype or None, weights=self.weights,
                    allow_pickle=self.allow_pickle, dynamic_batch=self.dynamic_batch,
                    input_ranges=self.ranges(), input_values=self.values(), preprocess=self.preprocess,
                    labels=self.labels, task=self.task_record)


def _by_name_or_in_order(flag: str, specs: list[str], parse: Callable[[str, str, bool], Any], example: str
                         ) -> list[Any] | dict[str, Any] | None:
    """An option given per input, by name (``NAME=...``, a dict) or in input order (a list), never
    both; ``parse(text, spec, named)`` reads one value. A name given twice, or an '=' with no name
    before it, is an error."""
    if not specs:
        return None
    named: dict[str, Any] = {}
    ordered: list[Any] = []
    for spec in specs:
        s = str(spec)
        name, eq, text = s.partition("=")
        name = name.strip() if eq else ""
        if eq and not name:
            raise UsageError(f"{flag} {s!r}: name the input before '='", hint=f"write it like {example}")
        value = parse((text if eq else s).strip(), s, bool(eq))
        if not eq:
            ordered.append(value)
        elif name in named:
            raise UsageError(f"{flag} gives input {name!r} twice", hint=f"give each input once, like {example}")
        else:
            named[name] = value
    if named and ordered:
        raise UsageError(f"{flag}: give every value by input name ({example}) or every value in input order, not both")
    return named or ordered


class VerifyConfig(ConfigModel):
    atol: float = Field(1e-4, ge=0, description="verification: absolute tolerance per output element (fp32)")
    rtol: float = Field(1e-4, ge=0, description="verification: relative tolerance per output element (fp32)")
    samples: int = Field(8, ge=1, le=256, description="verification: number of real inputs to compare on")
    min_cosine: float = Field(0.99, ge=0, le=1,
                              description="verification of fp16/int8 artifacts: minimum cosine similarity per output")
    max_drop: float = Field(0.05, ge=0, le=1,
                            description="fp16/int8 budget: largest allowed fall in top-1 agreement with fp32 "
                                        "(or in label accuracy when --eval data has labels)")
    eval_samples: int = Field(256, ge=1, le=4096,
                              description="fp16/int8: number of evaluation inputs (photos and crops, never calibration data)")
    allow_unverified: bool = Field(
        False, description="write (and package) fp16/int8 artifacts judged only on random inputs: without real data "
                           "(--eval) they are marked unverified and left out of the release")
    task: Literal["auto", "classify", "other"] = Field(
        "auto", description="how fp16/int8 fidelity is judged: classify (top-1 agreement, label accuracy, and cosine), "
                            "other (cosine per output: embeddings, detections, any tensor), or auto (classify when "
                            "labels count the output's columns or its name says logits/probs/scores)")


class QuantizeConfig(ConfigModel):
    method: Literal["auto", "static", "dynamic", "weight-only", "fp16"] = Field(
        "auto", description="recipe: auto (static int8 for CNNs, dynamic int8 for MatMul-heavy models), static, dynamic, "
                            "weight-only, or fp16")
    calibration: Literal["minmax", "percentile", "entropy"] = Field(
        "minmax", description="static int8: how activation ranges are calibrated")
    calib: str | None = Field(None, description="calibration data: image folder, .npy/.npz, .txt of sentences (a factory "
                                                          "with a tokenizer), or pkg.mod:fn (default: the model's sample inputs "
                                                          "or augmented sample photos)")
    eval: str | None = Field(None, description="evaluation data, kept apart from calibration: image folder (class sub-folders give "
                                                         "labels), .npy/.npz, .txt of sentences, or pkg.mod:fn")
    bias_correction: bool = Field(True, description="static int8: correct each layer's bias for the mean error its int8 "
                                                    "weights add (measured on the calibration data)")
    equalization: Literal["auto", "on", "off"] = Field(
        "auto", description="static int8: cross-layer equalisation of conv pairs (data-free, the float model unchanged); "
                            "auto tries it only when nearest rounding misses the budget and a quarter of the layers are "
                            "in pairs, and keeps it only when closer to fp32")
    rounding: Literal["auto", "nearest", "adaround"] = Field(
        "auto", description="static int8: how weights round to their int8 levels: nearest, adaround (learned per layer "
                            "from the calibration data, minutes per model), or auto (adaround only when the rungs below "
                            "miss the budget, kept only when it measures closer to fp32)")
    rounding_iters: int = Field(300, ge=10, le=100000, description="static int8 with learned rounding: optimisation "
                                                                  "steps per layer (time grows with it)")
    calib_samples: int = Field(128, ge=1, le=65536, description="static int8: number of calibration inputs")
    max_cer: float = Field(0.02, ge=0, le=1, description="pipelines (deploy PIPELINE.yaml): the largest character "
                                                         "error rate against the fp32 pipeline a reduced-precision "
                                                         "artifact set may have")
    max_float_layers: int = Field(12, ge=0, le=1000, description="budget: at most this many layers kept in float before giving up")


class OnnxConfig(ConfigModel):
    opset: int = Field(18, ge=18, le=23, description="ONNX opset (the dynamo exporter starts at 18)")
    slim: bool = Field(True, description="simplify the exported graph with onnxslim")


class DeployConfig(SourceConfig, VerifyConfig, QuantizeConfig, OnnxConfig):
    command: ClassVar[str] = "deploy"
    model: str = Field("efficientnet-lite0", description="model: built-in name, factory pkg.mod:fn, or a model file")
    out: Path = Field(Path("edgeship-out"), description="output folder")
    overwrite: bool = Field(False, description="replace what another model left in the output folder (its manifest "
                                               "and artifacts), as one step")
    targets: list[str] = Field(default_factory=lambda: ["onnx"], description="targets to build, comma separated, or 'all'")
    quantize: list[str] = Field(default_factory=list,
                                description="also build these precisions where a target offers them (fp16, int8; "
                                            "Core ML: palettize6, palettize4; `edgeship targets` lists them), or none")
    dry_run: bool = Field(False, description="print the resolved plan and missing extras, build nothing")
    isolate: bool = Field(True, description="work on model files (not factories) in a child process with limits")
    cache: bool = Field(True, description="reuse what an identical earlier run built or measured (verified artifacts, "
                                          "benchmark figures), its files re-checked ($EDGESHIP_CACHE_DIR/tasks); "
                                          "--no-cache does everything again")
    jobs: int = Field(0, ge=0, le=64, description="conversions at once, each target family in a worker process: 0 = "
                                                  "$EDGESHIP_JOBS, else as many as CPUs and free memory allow; 1 = one "
                                                  "after another in this process")
    benchmark: bool = Field(False, description="benchmark after building, against the source in PyTorch eager: each "
                                               "target's fp32 and the reduced precision it would ship (its lowest "
                                               "verified one) (manifest stages.benchmark)")
    benchmark_all: bool = Field(False, description="with --benchmark: every artifact, not only each target's fp32 and "
                                                   "its lowest verified precision")
    bench_threads: list[int] = Field(default_factory=lambda: [1], description="benchmark: runtime thread counts, comma separated")
    bench_runs: int = Field(300, ge=1, description="benchmark: timed warm calls per artifact and thread count")
    bench_seconds: float = Field(3.0, gt=0, description="benchmark: seconds of timed calls per artifact and thread "
                                                        "count at most (--bench-runs or this, whichever first)")
    bench_rounds: int = Field(1, ge=1, le=100, description="benchmark: rounds, each a fresh process per artifact, "
                                                         "interleaved (edgeship benchmark measures 3)")
    package: bool = Field(True, description="end with a signed release bundle in OUT/release (edgeship package)")
    release_version: str | None = Field(None, description="the bundle's semantic version (default: the next patch after "
                                                          "the newest in OUT/release, else 0.1.0)")
    sign_key: Path | None = Field(None, description="EC private key (PEM) that signs the bundle (default: OUT/keys, "
                                                    "made if missing)")
    keep_releases: int = Field(3, ge=0, description="releases kept in OUT/release after a new one, newest first "
                                                    "(0: all); one an update repository serves is never removed")
    # each target's own knobs (--tflite-nhwc, ...) are its Options model; the targets registry adds
    # them to this class (with_target_options), so they are typed and checked like every field here

    @classmethod
    def with_target_options(cls) -> type[DeployConfig]:
        """This config class with every registered target's ``Options`` fields added (what
        :meth:`build`, the API and the CLI use); the class itself when no registry is loaded."""
        return _TARGET_OPTIONS(cls) if _TARGET_OPTIONS is not None else cls

    @classmethod
    def build(cls, **kwargs: Any):
        return ConfigModel.build.__func__(cls.with_target_options(), **kwargs)  # type: ignore[attr-defined]

    @field_validator("targets", mode="before")
    @classmethod
    def _targets(cls, v: Any) -> Any:
        return split_commas(v)

    @field_validator("bench_threads", mode="before")
    @classmethod
    def _bench_threads(cls, v: Any) -> Any:
        return int_list(v)

    @field_validator("bench_threads", mode="after")
    @classmethod
    def _bench_threads_ok(cls, v: list[int]) -> list[int]:
        if not v or any(t < 1 for t in v):
            raise ValueError("give thread counts of 1 or more, e.g. 1,2")
        return v

    @field_validator("quantize", mode="before")
    @classmethod
    def _quantize(cls, v: Any) -> Any:
        v = split_commas(v)
        if isinstance(v, list):  # which names exist is the targets' to say (api.plan checks them)
            v = [str(p) for p in dict.fromkeys(v) if p != "none"]
        return v

    @model_validator(mode="after")
    def _check(self) -> DeployConfig:
        if not self.targets:
            raise ValueError("targets: give at least one target")
        return self


#: set by :mod:`edgeship.targets` (above this module, which cannot import it): DeployConfig class ->
#: the same class with the registered targets' Options fields
_TARGET_OPTIONS: Callable[[type[DeployConfig]], type[DeployConfig]] | None = None


def set_target_options(hook: Callable[[type[DeployConfig]], type[DeployConfig]]) -> None:
    global _TARGET_OPTIONS
    _TARGET_OPTIONS = hook


class QuantizeCommandConfig(SourceConfig, VerifyConfig, QuantizeConfig, OnnxConfig):
    """Options of ``edgeship quantize``: the deploy options that concern one quantised ONNX artifact."""

    command: ClassVar[str] = "quantize"

    precision: Literal["int8", "fp16"] = Field("int8", description="what to build: int8 (see --method) or fp16")
    isolate: bool = Field(True, description="work on the model file in a child process with limits")
    overwrite: bool = Field(False, description="replace an artifact (or output folder) made from another model")
    out: Path | None = Field(None, description="from an artifact: the new artifact's folder (default: beside it, "
                                               "onnx-<precision>); from a model: the output folder that gets onnx-fp32, "
                                               "onnx-<precision> and manifest.json (default: edgeship-out)")


class ClassifyConfig(ConfigModel):
    """Options of ``edgeship classify`` / :func:`edgeship.classify`."""

    command: ClassVar[str] = "classify"

    top_k: int = Field(3, ge=1, le=1000, description="how many labels per image")
    threshold: float = Field(0.1, ge=0, le=1, description="hide labels below this confidence")
    threads: int = Field(1, ge=0, le=256, description="runtime threads (0 = runtime default)")
    preprocess: str | None = Field(
        None, description="image preprocessing for a model file that does not carry it (as deploy --preprocess)")
    labels: Path | None = Field(None, description="class labels for a model file that does not carry them: "
                                                  "labels.txt (one per line) or a JSON list")
    key: Path | None = Field(None, description="a release bundle: check its signature with this public key first")


class OcrConfig(ConfigModel):
    """Options of ``edgeship ocr`` / :func:`edgeship.api.ocr_bundle`."""
    command: ClassVar[str] = "ocr"
    threads: int = ClassifyConfig.model_fields["threads"]
    key: Path | None = ClassifyConfig.model_fields["key"]


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML file of option values (keys are the option names)."""
    from .readers import read_structured

    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise UsageError(f"no such config file: {p}")
    data = read_structured(p, "config file", hint="a JSON or YAML mapping of option names to values")
    if not isinstance(data, dict):
        raise UsageError(f"{p} must hold a mapping of option names to values")
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise UsageError(f"{p}: {str(odd[0])[:40]!r} is not an option name (keys are option names, as text)",
                         hint="write each key as the option's name, e.g. targets: [onnx]")
    return data
