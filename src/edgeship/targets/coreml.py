"""Core ML target: an ML Program ``model.mlpackage`` (a folder) for iOS/macOS, via coremltools.

Conversion goes through ``torch.export`` (coremltools' trace path breaks with numpy 2.4). Image
models get an ``ImageType`` input: the app hands Core ML RGB (or BGR) pixels and the model applies
``(pixel - mean) / std`` itself, through the ImageType scale/bias when ``std`` is one number, or
through ops placed in front of the model when ``std`` differs per channel; an NHWC model gets a
transpose in front too. Classifiers (labels, one output of one score per label) get a
``ClassifierConfig``: outputs ``classLabel`` and ``classLabel_probs`` (the model's own scores,
logits unless the preprocessing says probabilities).

Precisions and the fp32-first plan. edgeship builds every target's fp32 artifact first and derives
reduced precisions on request (``--quantize``). Core ML's own default is fp16 compute (the Neural
Engine runs fp16 only), so here:

* ``fp32``: an fp32 ML Program, the reference package — its weights are bit-exact copies of the
  source's, which the structural verification checks;
* ``fp16``: Core ML's default (fp16 compute and weights) — ask for it with ``--quantize fp16``;
* ``int8``: fp16 compute with int8 per-channel (symmetric) weights (``linear_quantize_weights``);
* ``palettize6`` / ``palettize4``: fp16 compute with 6-/4-bit k-means palettised weights.

Weights smaller than ``weight_threshold`` elements stay fp16 (Core ML's own default, 2048).

Core ML cannot predict on Linux, so verification is structural and says so: the package reloads,
input and output names and types, image size and colour, label count and order, an op histogram
that matches the conversion, compression ops present, and every weight decompressed and compared —
with the source's weights (fp32) or with the fp32 conversion of the same source (reduced
precisions). The runner raises :class:`UnsupportedError`: prediction needs macOS.
"""

from __future__ import annotations

import platform
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import cache
from .._util import quiet
from ..artifact import (
    Artifact,
    Format,
    OutputCheck,
    TensorSpec,
    Verification,
)
from ..errors import FormatError, UnsupportedError, ValidationError, first_line
from ..runner import Runner
from .base import Built, Target

if TYPE_CHECKING:
    from ..config import DeployConfig
    from ..sources import Source

PACKAGE = "model.mlpackage"
CLASS_LABEL = "classLabel"
PROBS = "classLabel_probs"
DEPLOYMENT_TARGET = "iOS16"  # ML Program with constexpr int8 / LUT weights
# 4-bit palettes per group of output channels need iOS 18 / macOS 15 (constexpr_lut_to_dense with
# grouped LUTs): one 16-entry palette per tensor leaves Lite0's weights at cosine 0.988, per 8
# channels at >= 0.9917 for every tensor
DEPLOYMENT_TARGET_FOR = {"palettize4": "iOS18"}
PALETTE_GROUP = 8
_COMPUTE = {"fp32": "FLOAT32", "fp16": "FLOAT16", "int8": "FLOAT16", "palettize6": "FLOAT16", "palettize4": "FLOAT16"}
_CT_DTYPES = {"float32": "FLOAT32", "float16": "FLOAT16", "int32": "INT32", "int64": "INT32", "float64": "FLOAT32"}
_REF_CACHE = cache.Memo("Core ML fp32 weights", keep=2)  # source digest -> fp32 conversion weights


def _quiet() -> Any:
    """coremltools talks a lot (progress bars on stderr, warnings, logs): keep it off the screen."""
    return quiet("coremltools", "torch", "torch.export", stderr=True)


def _ct() -> Any:
    with _quiet():
        import coremltools as ct
    return ct


# ---- image front ------------------------------------------------------------------------

def _image_plan(source: Source) -> dict[str, Any] | None:
    """How the image input is fed: ImageType scale/bias and what runs in front of the model."""
    pre = source.preprocess
    if pre is None:
        return None
    idx = next((i for i, s in enumerate(source.inputs) if s.name == pre.input), None)
    if idx is None:
        return None
    shape = tuple(np.asarray(source.example_inputs[idx]).shape)
    expect = (1, 3, pre.height, pre.width) if pre.layout == "NCHW" else (1, pre.height, pre.width, 3)
    if shape != expect:
        return None
    std = tuple(float(s) for s in pre.std)
    mean = tuple(float(m) for m in pre.mean)
    uniform = len(set(std)) == 1
    if uniform:
        scale, bias = 1.0 / std[0], [-m / std[0] for m in mean]
    else:  # Core ML's scale is one number: normalise in the graph instead
        scale, bias = 1.0, [0.0, 0.0, 0.0]
    return {"index": idx, "name": pre.input, "height": pre.height, "width": pre.width, "color": pre.color,
            "layout": pre.layout, "scale": scale, "bias": bias, "in_graph_norm": not uniform,
            "mean": mean, "std": std}


def _wrap(source: Source, image: dict[str, Any] | None) -> Any:
    """The source module, with the image's per-channel normalisation and NHWC transpose in front."""
    import torch

    if image is None or (not image["in_graph_norm"] and image["layout"] == "NCHW"):
        return source.module

    class ImageFront(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner
            self.idx = image["index"]
            self.norm = image["in_graph_norm"]
            self.nhwc = image["layout"] == "NHWC"
            self.register_buffer("mean", torch.tensor(image["mean"]).reshape(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(image["std"]).reshape(1, 3, 1, 1), persistent=False)

        def forward(self, *xs: Any) -> Any:
            xs = list(xs)
            x = xs[self.idx]
            if self.norm:
                x = (x - self.mean) / self.std
            if self.nhwc:
                x = x.permute(0, 2, 3, 1)
            xs[self.idx] = x
            return self.inner(*xs)

    return ImageFront(source.module).eval()


def _is_classifier(source: Source) -> bool:
    if not source.labels or source.preprocess is None or len(source.inputs) != 1 or len(source.outputs) != 1:
        return False
    shape = source.outputs[0].shape
    return len(shape) == 2 and shape[-1] == len(source.labels)


# ---- op support, before the conversion --------------------------------------------------

def unsupported_ops(exported: Any) -> dict[str, list[str]]:
    """Op types of an exported (ATen) program that coremltools has no translation for, with the
    modules that call them."""
    from coremltools.converters.mil.frontend.torch.torch_op_registry import (
        _TORCH_OPS_REGISTRY,
    )
    from coremltools.converters.mil.frontend.torch.utils import (
        sanitize_op_kind,
        unify_inplace_and_functional,
    )

    missing: dict[str, list[str]] = {}
    for n in exported.graph.nodes:
        if n.op != "call_function":
            continue
        try:
            kind = n.target.name()
        except Exception:
            kind = getattr(n.target, "__name__", str(n.target))
        k = unify_inplace_and_functional(sanitize_op_kind(kind))
        if k in _TORCH_OPS_REGISTRY or "getitem" in k:
            continue
        stack = n.meta.get("nn_module_stack") or {}
        where = list(stack.values())[-1][0] if stack else n.name
        missing.setdefault(kind, [])
        if where not in missing[kind]:
            missing[kind].append(where)
    return missing


# ---- reading a package back --------------------------------------------------------------

def _canonical_package(pkg: Path) -> None:
    """Make a saved .mlpackage the same bytes on every build of the same model: coremltools gives
    its items random UUIDs, writes the spec's maps in a per-process hash order and stamps the
    conversion date; here the ids are UUID5 of each item's path, the spec is written
    deterministically and the date left out (the coremltools version stays in the metadata)."""
    import json
    import uuid

    from coremltools.proto import Model_pb2

    manifest = pkg / "Manifest.json"
    man = json.loads(manifest.read_text())
    entries = man.get("itemInfoEntries") or {}
    ids = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, "edgeship:" + e["path"])).upper() for old, e in entries.items()}
    man["itemInfoEntries"] = {ids[k]: v for k, v in sorted(entries.items(), key=lambda kv: ids[kv[0]])}
    if man.get("rootModelIdentifier") in ids:
        man["rootModelIdentifier"] = ids[man["rootModelIdentifier"]]
    manifest.write_text(json.dumps(man, indent=4, sort_keys=True) + "\n")
    root = next((e for e in entries.values() if e.get("name") == "model.mlmodel"), None)
    if root is None:
        return
    spec_path = pkg / "Data" / root["path"]
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_path.read_bytes())
    spec.description.metadata.userDefined.pop("com.github.apple.coremltools.conversion_date", None)
    spec_path.write_bytes(spec.SerializeToString(deterministic=True))


def _load_program(path: Path) -> tuple[Any, Any]:
    """(spec, MIL main function) of a saved .mlpackage, without Core ML (works on Linux)."""
    ct = _ct()
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    try:
        with _quiet():
            model = ct.models.MLModel(str(path), skip_model_load=True)
            spec = model.get_spec()
            if spec.WhichOneof("Type") != "mlProgram":
                raise FormatError(f"{path} is not an ML Program (it is {spec.WhichOneof('Type')})")
            prog = milproto_load(spec, spec.specificationVersion, model.weights_dir)
    except FormatError:
        raise
    except Exception as e:
        raise FormatError(f"coremltools cannot reload {path}: {first_line(e)}",
                          hint="the package is damaged; convert again") from None
    return spec, prog.functions["main"]


def _base_name(name: str) -> str:
    for suffix in ("_quantized", "_palettized", "_to_fp16", "_to_fp32", "_cast_fp16", "_cast_fp32"):
        while name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def program_weights(fn: Any) -> dict[str, tuple[str, np.ndarray]]:
    """Every weight tensor of a MIL function, decompressed (constexpr ops materialised), as float32.

    Keyed by where it is used, ``"<consuming op's output>:<argument>"`` (stable across compute
    precisions and compression, unlike the converter's anonymous ``const_N`` names), with its own
    name (without cast/compression suffixes) beside it."""
    values: dict[str, np.ndarray] = {}
    for op in fn.operations:
        if op.op_type.startswith("constexpr"):
            with _quiet():
                val = op.materialized_val_inference() if hasattr(op, "materialized_val_inference") else op.value_inference()
            values[op.outputs[0].name] = np.asarray(val, dtype=np.float32)
        elif op.op_type == "const" and op.outputs[0].val is not None:
            arr = np.asarray(op.outputs[0].val)
            if arr.dtype.kind == "f" and arr.size >= 2:
                values[op.outputs[0].name] = arr.astype(np.float32)
    out: dict[str, tuple[str, np.ndarray]] = {}
    for op in fn.operations:
        if op.op_type == "const" or op.op_type.startswith("constexpr") or not op.outputs:
            continue
        for slot, var in op.inputs.items():
            name = getattr(var, "name", None)
            if name in values:
                out[f"{_base_name(op.outputs[0].name)}:{slot}"] = (_base_name(name), values[name])
    return out


def weight_report(before: dict[str, tuple[str, np.ndarray]], after: dict[str, tuple[str, np.ndarray]]) -> list[dict[str, Any]]:
    """Per-layer attribution of compressed weights (int8 or palettes): for every weight the
    compression changed, its SQNR against the same weight before compression (matched by use,
    as :func:`program_weights` keys them), worst first."""
    from ..fidelity import db_from_sums

    rows = []
    for key, (name, w) in before.items():
        got = after.get(key)
        if got is None or got[1].shape != w.shape or np.array_equal(got[1], w):
            continue  # below the size threshold (left as it was) or not matched
        w64, d = w.astype(np.float64), got[1].astype(np.float64) - w.astype(np.float64)
        rows.append({"node": name, "module": None, "op": key.split(":")[0],
                     "weight_sqnr_db": round(db_from_sums(float(np.sum(w64 ** 2)), float(np.sum(d ** 2))), 2)})
    return sorted(rows, key=lambda r: r["weight_sqnr_db"])


def op_histogram(fn: Any) -> dict[str, int]:
    return dict(sorted(Counter(op.op_type for op in fn.operations).items()))


# ---- runner ------------------------------------------------------------------------------

class CoreMLRunner(Runner):
    """Core ML prediction needs macOS (the Core ML framework); on other systems it says so."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        super().__init__(path, threads)
        if platform.system() != "Darwin":
            raise UnsupportedError(
                f"Core ML prediction needs macOS (Core ML.framework); this is {platform.system()}: "
                f"{Path(path).name} cannot run here",
                hint="it was verified structurally instead; run it on a Mac or an iOS device "
                     "(coremltools.models.MLModel(path).predict), or benchmark another target here")
        ct = _ct()
        try:
            with _quiet():
                self.model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
        except Exception as e:  # pragma: no cover - macOS only
            raise FormatError(f"Core ML cannot load {path}: {first_line(e)}") from None
        spec = self.model.get_spec()
        self._inputs = tuple(TensorSpec(name=i.name, shape=tuple(i.type.multiArrayType.shape) or (1,),
                                        dtype="float32") for i in spec.description.input)
        self._outputs = [o.name for o in spec.description.output]

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:  # pragma: no cover - macOS only
        return self._inputs

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:  # pragma: no cover - macOS only
        out = self.model.predict(feeds)
        return [np.asarray(out[n]) for n in self._outputs]


# ---- target ------------------------------------------------------------------------------

class CoreMLTarget(Target):
    name: ClassVar[str] = "coreml"
    format: ClassVar[Format] = Format.coreml
    description: ClassVar[str] = ("Core ML ML Program .mlpackage for iOS/macOS (fp32, fp16, int8 weights, "
                                  "6/4-bit palettes); verified structurally off macOS")
    extra: ClassVar[str | None] = "coreml"
    requires: ClassVar[tuple[str, ...]] = ("coremltools",)
    runtime_modules: ClassVar[tuple[str, ...]] = ("coremltools",)
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8", "palettize6", "palettize4")
    accepts: ClassVar[tuple[str, ...]] = ("torch", "pt2")
    needs_module: ClassVar[bool] = True
    derives_reduced: ClassVar[bool] = False  # coremltools converts and compresses from the torch program
    verifies_structurally: ClassVar[bool] = True  # Core ML cannot predict here: no numeric verification
    weight_threshold: ClassVar[int] = 2048  # smaller weights stay fp16 (coremltools' default)

    # ---- convert ------------------------------------------------------------------------
    @classmethod
    def can_run_here(cls) -> bool | str:
        if platform.system() == "Darwin":
            return True
        return f"Core ML prediction needs macOS (this is {platform.system()}); run it on a Mac or an iOS device"

    def export(self, source: Source, out_dir: Path, cfg: DeployConfig, precision: str = "fp32",
               base: Artifact | None = None) -> Built:
        ct = _ct()
        image = _image_plan(source)
        classifier = _is_classifier(source) and image is not None
        ep = self._export(source, image)
        missing = unsupported_ops(ep)
        if missing:
            listed = "; ".join(f"{op} (in {', '.join(w[:3])})" for op, w in missing.items())
            raise UnsupportedError(f"Core ML has no conversion for {len(missing)} op type(s) of {source.name}: {listed}",
                                   hint="replace these ops/modules, or register a coremltools torch op "
                                        "(@register_torch_op)", ops=list(missing), modules=sorted({m for w in missing.values() for m in w}))
        model = self._convert(ct, source, ep, image, classifier, precision)
        notes: list[str] = []
        config: dict[str, Any] = {"compute_precision": _COMPUTE[precision],
                                  "minimum_deployment_target": DEPLOYMENT_TARGET_FOR.get(precision, DEPLOYMENT_TARGET),
                                  "classifier": classifier}
        uncompressed = None
        if precision in ("int8", "palettize6", "palettize4"):
            uncompressed = program_weights(model._mil_program.functions["main"])
            model = self._compress(ct, model, precision, config)
        path = out_dir / PACKAGE
        try:
            with _quiet():
                model.save(str(path))
        except Exception as e:
            raise UnsupportedError(f"coremltools could not save the package: {first_line(e)}") from None
        _canonical_package(path)
        spec, fn = _load_program(path)
        hist = op_histogram(fn)
        config["ops"] = hist
        if precision == "fp32":
            _REF_CACHE.put(source.digest, program_weights(fn))
        notes.append("Core ML prediction needs macOS: verified structurally here (no outputs computed)")
        notes.append("ops: " + ", ".join(f"{k}×{v}" for k, v in hist.items()))
        if image is not None:
            how = ("ImageType scale/bias" if not image["in_graph_norm"] else "ops in front of the model (per-channel std)")
            notes.append(f"image input {image['name']!r} {image['width']}x{image['height']} {image['color']}: "
                         f"(pixel - mean) / std applied by {how}"
                         + ("; NHWC transpose in the graph" if image["layout"] == "NHWC" else "")
                         + "; resize and centre crop stay with the app (e.g. Vision's VNImageCropAndScaleOption)")
        if classifier:
            kind = "probabilities" if source.preprocess and source.preprocess.output == "probabilities" else "logits"
            notes.append(f"classifier: {CLASS_LABEL} and {PROBS} ({kind} per label)")
        if any(s.dtype == "int64" for s in source.inputs):
            notes.append("int64 inputs become int32 (Core ML has no int64 tensors)")
        files = sorted(str(p.relative_to(out_dir)) for p in path.rglob("*") if p.is_file())
        inputs, outputs = self._io(spec, source, image)
        pre = source.preprocess
        if pre is not None and image is not None:
            pre = pre.model_copy(update={"dtype": "uint8", "layout": "NHWC"})  # pixels in; normalisation inside
        details: dict[str, Any] = {}
        if uncompressed is not None:
            from ..quant import weight_attribution

            details["quantization"] = weight_attribution(weight_report(uncompressed, program_weights(fn)),
                                                         "none (weights only)", 0, {"enabled": False},
                                                         method="weight-only")
        return Built(files=tuple(files), model_file=PACKAGE, inputs=inputs, outputs=outputs, preprocess=pre,
                     stage=f"coreml.mlprogram.{precision}", config=config, tools=("torch", "coremltools"),
                     notes=tuple(notes), details=details)

    def runtime_requirement(self, artifact: Artifact) -> dict[str, Any]:
        target = artifact.provenance.config.get("minimum_deployment_target") or DEPLOYMENT_TARGET
        return {"name": "Core ML", "tested_version": None,
                "requires": f"{target} or newer (ML Program); prediction not run here (needs macOS/iOS)"}

    @staticmethod
    def _export(source: Source, image: dict[str, Any] | None) -> Any:
        import torch

        module = _wrap(source, image)
        args = []
        for k, a in enumerate(source.example_inputs):
            t = torch.from_numpy(np.ascontiguousarray(a))
            if image is not None and k == image["index"] and image["layout"] == "NHWC":
                t = t.permute(0, 3, 1, 2).contiguous()
            args.append(t)
        try:
            with _quiet():
                return torch.export.export(module, tuple(args)).run_decompositions({})
        except Exception as e:
            raise UnsupportedError(f"torch.export could not export {source.name} for Core ML: {first_line(e)}",
                                   hint="make the model torch.export-able (no data-dependent control flow)") from None

    @staticmethod
    def _convert(ct: Any, source: Source, ep: Any, image: dict[str, Any] | None, classifier: bool,
                 precision: str) -> Any:
        from coremltools.converters.mil.converter import _reset_conversion_state

        # coremltools names ops from process-wide counters that it resets only after a conversion;
        # what ran before (ct.optimize's compression) would shift the names, and the bytes, of this one
        _reset_conversion_state()
        inputs = []
        for k, (spec, a) in enumerate(zip(source.inputs, source.example_inputs)):
            a = np.asarray(a)
            if image is not None and k == image["index"]:
                inputs.append(ct.ImageType(
                    name=spec.name, shape=(1, 3, image["height"], image["width"]), scale=image["scale"],
                    bias=image["bias"], color_layout=ct.colorlayout.BGR if image["color"] == "BGR" else ct.colorlayout.RGB))
            else:
                dt = np.int32 if np.issubdtype(a.dtype, np.integer) else np.float32
                inputs.append(ct.TensorType(name=spec.name, shape=a.shape, dtype=dt))
        kwargs: dict[str, Any] = {}
        if classifier:
            kwargs["classifier_config"] = ct.ClassifierConfig(list(source.labels or ()))
        else:
            kwargs["outputs"] = [ct.TensorType(name=o.name) for o in source.outputs]
        try:
            with _quiet():
                return ct.convert(
                    ep, inputs=inputs, convert_to="mlprogram",
                    compute_precision=getattr(ct.precision, _COMPUTE[precision]),
                    minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET_FOR.get(precision, DEPLOYMENT_TARGET)),
                    **kwargs)
        except Exception as e:
            raise UnsupportedError(f"coremltools could not convert {source.name}: {first_line(e)}",
                                   hint="the op or pattern named above has no Core ML translation") from None

    def _compress(self, ct: Any, model: Any, precision: str, config: dict[str, Any]) -> Any:
        import coremltools.optimize.coreml as cto

        if precision == "int8":
            op_cfg = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                                 weight_threshold=self.weight_threshold)
            fn = cto.linear_quantize_weights
            config.update({"weights": "int8 per-channel symmetric"})
        else:
            nbits = int(precision[len("palettize"):])
            if nbits <= 4:  # 16 values for a whole tensor are too few: one palette per group of channels
                op_cfg = cto.OpPalettizerConfig(nbits=nbits, mode="kmeans", granularity="per_grouped_channel",
                                                group_size=PALETTE_GROUP, weight_threshold=self.weight_threshold)
                config.update({"weights": f"{nbits}-bit k-means palettes per group of {PALETTE_GROUP} output channels "
                                          f"(a weight whose output channels are not a multiple of {PALETTE_GROUP} stays fp16)"})
            else:
                op_cfg = cto.OpPalettizerConfig(nbits=nbits, mode="kmeans", granularity="per_tensor",
                                                weight_threshold=self.weight_threshold)
                config.update({"weights": f"{nbits}-bit k-means palette per tensor"})
            fn = cto.palettize_weights
        config["weight_threshold"] = self.weight_threshold
        try:
            with _quiet():
                return fn(model, cto.OptimizationConfig(global_config=op_cfg))
        except Exception as e:
            raise UnsupportedError(f"coremltools could not compress the weights to {precision}: {first_line(e)}") from None

    @staticmethod
    def _io(spec: Any, source: Source, image: dict[str, Any] | None) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        def one(feature: Any) -> TensorSpec:
            t = feature.type
            which = t.WhichOneof("Type")
            if which == "imageType":
                return TensorSpec(name=feature.name, shape=(1, int(t.imageType.height), int(t.imageType.width), 3),
                                  dtype="uint8", layout="NHWC")
            if which == "multiArrayType":
                dt = {65568: "float32", 65552: "float16", 131104: "int32", 65600: "float64"}.get(
                    int(t.multiArrayType.dataType), "float32")
                return TensorSpec(name=feature.name, shape=tuple(int(d) for d in t.multiArrayType.shape), dtype=dt)
            if which == "dictionaryType":
                return TensorSpec(name=feature.name, shape=(len(source.labels or ()),), dtype="float64")
            return TensorSpec(name=feature.name, shape=(1,), dtype="str" if which == "stringType" else which)

        return (tuple(one(f) for f in spec.description.input), tuple(one(f) for f in spec.description.output))

    # ---- verify (structural) --------------------------------------------------------------
    def verify(self, source: Source, artifact: Artifact, cfg: DeployConfig) -> Verification:
        """Structural verification: Core ML cannot predict off macOS, so no outputs are compared."""
        artifact.verify_files()
        spec, fn = _load_program(artifact.model_path)
        problems = self._check_structure(spec, fn, source, artifact)
        if problems:
            raise ValidationError(f"{artifact.name} does not have the structure of its source: " + "; ".join(problems),
                                  hint="the package was not written; report this with the model if it persists")
        weights = program_weights(fn)
        precision = artifact.precision
        if precision == "fp32":  # by name: the source parameter each weight was copied from
            ref = self._source_weights(source)
            ref_name = "the source's weights (by name)"
            n_src = len({id(v) for v in ref.values()})
            pairs = [(name, ref[name], w) for name, w in sorted(weights.values(), key=lambda t: t[0])
                     if name in ref and ref[name].shape == w.shape]
            pairs = list({p[0]: p for p in pairs}.values())
        else:  # by use: the weight at the same place of the fp32 conversion
            fp32 = self._reference_weights(source)
            ref_name = "the fp32 conversion of the source"
            n_src = len(fp32)
            pairs = [(f"{fp32[k][0]} ({k})", fp32[k][1], weights[k][1]) for k in sorted(fp32)
                     if k in weights and fp32[k][1].shape == weights[k][1].shape]
        if not pairs:
            raise ValidationError(f"{artifact.name}: no weight of the package could be matched with {ref_name}",
                                  hint="the converter renamed every weight; report this with the model")
        checks, rule = self._weight_checks(pairs, precision, cfg)
        criterion = (
            f"structural (Core ML prediction needs macOS; no outputs computed): spec reloads as an ML Program; "
            f"input/output names, types{', image size/colour' if _image_plan(source) else ''}"
            f"{', labels' if _is_classifier(source) else ''} as the source; op histogram as converted "
            f"({sum(op_histogram(fn).values())} ops); weights decompressed vs {ref_name}: {rule} "
            f"({len(pairs)} of {n_src} tensors compared"
            + (("; the others were folded by the converter, e.g. BatchNorm into conv)" if precision == "fp32"
                else "; the others differ in place or shape)") if len(pairs) < n_src else ")")
        )
        return Verification(
            reference=f"structural: {source.kind} source {source.name} (weights, names, types; not outputs)",
            samples=0, batch_sizes=(), atol=0.0, rtol=0.0, outputs=tuple(checks), criterion=criterion,
            passed=all(c.passed for c in checks),
        )

    @staticmethod
    def _check_structure(spec: Any, fn: Any, source: Source, artifact: Artifact) -> list[str]:
        problems: list[str] = []
        desc = spec.description
        image = _image_plan(source)
        names = [i.name for i in desc.input]
        if names != [s.name for s in source.inputs]:
            problems.append(f"inputs {names}, the source has {[s.name for s in source.inputs]}")
        for k, feat in enumerate(desc.input):
            which = feat.type.WhichOneof("Type")
            if image is not None and k == image["index"]:
                it = feat.type.imageType
                if which != "imageType":
                    problems.append(f"input {feat.name!r} is {which}, not an image")
                elif (int(it.height), int(it.width)) != (image["height"], image["width"]):
                    problems.append(f"image {feat.name!r} is {it.width}x{it.height}, the source takes "
                                    f"{image['width']}x{image['height']}")
                elif (it.colorSpace == 30) != (image["color"] == "BGR"):  # ImageFeatureType.BGR == 30
                    problems.append(f"image {feat.name!r} has the wrong colour order")
            elif k < len(source.example_inputs):
                want = tuple(np.asarray(source.example_inputs[k]).shape)
                got = tuple(int(d) for d in feat.type.multiArrayType.shape)
                if which != "multiArrayType" or got != want:
                    problems.append(f"input {feat.name!r} is {which} {got}, the source takes {want}")
        outs = [o.name for o in desc.output]
        if _is_classifier(source) and image is not None:
            if desc.predictedFeatureName != CLASS_LABEL or desc.predictedProbabilitiesName != PROBS:
                problems.append("the classifier outputs are missing")
            classify = [op for op in fn.operations if op.op_type == "classify"]
            labels = list(classify[0].classes.val) if classify and classify[0].classes.val is not None else []
            if [str(x) for x in labels] != list(source.labels or ()):
                problems.append(f"{len(labels)} labels in the package, {len(source.labels or ())} in the source"
                                + (" (different order or text)" if len(labels) == len(source.labels or ()) else ""))
        elif outs != [o.name for o in source.outputs]:
            problems.append(f"outputs {outs}, the source has {[o.name for o in source.outputs]}")
        hist = op_histogram(fn)
        recorded = artifact.provenance.config.get("ops")
        if recorded is not None and recorded != hist:
            problems.append("the op histogram differs from the one recorded at conversion")
        compressed = {"int8": "constexpr_affine_dequantize", "palettize6": "constexpr_lut_to_dense",
                      "palettize4": "constexpr_lut_to_dense"}.get(artifact.precision)
        if compressed and not hist.get(compressed):
            big = [k for k, (_, w) in program_weights(fn).items()
                   if w.size >= artifact.provenance.config.get("weight_threshold", 0)]
            if big:
                problems.append(f"{artifact.precision} package holds no {compressed} op")
        if artifact.precision == "fp32" and any(t.name.endswith("_to_fp16") for op in fn.operations for t in op.outputs):
            problems.append("the fp32 package holds fp16 casts")
        return problems

    @staticmethod
    def _source_weights(source: Source) -> dict[str, np.ndarray]:
        out = {}
        for k, v in source.module.state_dict().items():
            if not v.is_floating_point() or v.numel() < 2:
                continue
            out["p_" + k.replace(".", "_")] = v.detach().cpu().float().numpy()
            out["p_inner_" + k.replace(".", "_")] = out["p_" + k.replace(".", "_")]  # behind the image front
        return out

    def _reference_weights(self, source: Source) -> dict[str, tuple[str, np.ndarray]]:
        if source.digest in _REF_CACHE:
            return _REF_CACHE.get(source.digest)
        ct = _ct()
        image = _image_plan(source)
        ep = self._export(source, image)
        model = self._convert(ct, source, ep, image, _is_classifier(source) and image is not None, "fp32")
        import tempfile

        with tempfile.TemporaryDirectory(prefix="edgeship-coreml-ref-") as tmp:
            path = Path(tmp) / PACKAGE
            with _quiet():
                model.save(str(path))
            _, fn = _load_program(path)
            weights = program_weights(fn)
        return _REF_CACHE.put(source.digest, weights)

    @staticmethod
    def _weight_checks(pairs: list[tuple[str, np.ndarray, np.ndarray]], precision: str,
                       cfg: DeployConfig) -> tuple[list[OutputCheck], str]:
        from ..fidelity import cosine_sqnr

        if precision == "fp32":
            rule, tol = "max |w - w_src| <= 1e-6 * max |w_src| per tensor (exact copy)", 1e-6
        elif precision == "fp16":
            rule, tol = "max |w - w_fp32| <= 1e-3 * max |w_fp32| per tensor (fp16 rounding)", 1e-3
        else:
            rule, tol = f"cosine >= {cfg.min_cosine:g} per tensor", None
        checks, agg = [], {"max_abs": 0.0, "max_rel": 0.0, "mean": [], "cos": 1.0, "sqnr": None}
        for name, ref, got in pairs:
            diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
            scale = float(np.abs(ref).max()) or 1.0
            max_abs, max_rel = float(diff.max()), float(diff.max()) / scale
            cos, sqnr = cosine_sqnr(ref, got)
            ok = bool(np.isfinite(got).all()) and (max_rel <= tol if tol is not None else cos >= cfg.min_cosine)
            agg["max_abs"] = max(agg["max_abs"], max_abs)
            agg["max_rel"] = max(agg["max_rel"], max_rel)
            agg["mean"].append(float(diff.mean()))
            agg["cos"] = min(agg["cos"], cos)
            if sqnr is not None:
                agg["sqnr"] = sqnr if agg["sqnr"] is None else min(agg["sqnr"], sqnr)
            if not ok:
                checks.append(OutputCheck(name=f"weight {name}", max_abs=max_abs, max_rel=max_rel,
                                          mean_abs=float(diff.mean()), cosine=cos, sqnr_db=sqnr, passed=False))
        summary = OutputCheck(name=f"weights ({len(pairs)} tensors)", max_abs=agg["max_abs"], max_rel=agg["max_rel"],
                              mean_abs=float(np.mean(agg["mean"])), cosine=agg["cos"], sqnr_db=agg["sqnr"],
                              passed=not checks)
        return [summary, *checks], rule

    def runner(self, artifact: Artifact, threads: int = 1) -> Runner:
        return CoreMLRunner(artifact.model_path, threads=threads)
