"""OpenVINO target: IR (``model.xml`` + ``model.bin``) for the OpenVINO runtime (CPU, GPU, NPU).

* fp32: ``torch.export`` (dynamic batch where the model allows it) → ``ov.convert_model``, or an
  ONNX source read directly; saved with ``compress_to_fp16=False`` (``ov.save_model`` would
  otherwise store fp16 weights silently).
* fp16: the verified fp32 IR saved with fp16 weights (compute stays as the device chooses).
* int8: NNCF post-training quantisation (default preset, full bias correction) of the verified fp32
  IR, calibrated on ``--calib`` data or ``source.calibration_inputs()``; for image models the first
  conv (it sees the image itself) stays fp32 (Lite0: top-1 agreement with fp32 92% -> 98%);
  transformer-like models (integer token inputs) use ``ModelType.TRANSFORMER``.

The runner compiles for CPU with an explicit ``INFERENCE_NUM_THREADS`` and, by default,
``INFERENCE_PRECISION_HINT="f32"``: on CPUs with bf16 (AVX-512 BF16, AMX) OpenVINO would
otherwise run an "fp32" model in bf16 (faster, 95% top-1 agreement on Lite0), so fidelity figures
would not describe the artifact. Pass ``inference_precision=None`` to get the device default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..artifact import Artifact, Format, TensorSpec
from ..data import calibration_samples
from ..errors import FormatError, UnsupportedError, first_line
from . import Built, Runner, Target
from .onnx import quiet_exporter as _quiet

if TYPE_CHECKING:
    from ..config import DeployConfig
    from ..sources import Source

MODEL_FILE = "model.xml"
WEIGHTS_FILE = "model.bin"

_OV_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "float32", "f64": "float64", "i64": "int64",
              "i32": "int32", "i8": "int8", "u8": "uint8", "boolean": "bool", "i16": "int16"}


def _ov_dtype(t: Any) -> str:
    return _OV_DTYPES.get(t.get_type_name(), t.get_type_name())


class OpenVinoRunner(Runner):
    """A compiled OpenVINO model on CPU; thread count and inference precision explicit."""

    def __init__(self, path: Path, threads: int = 1, inference_precision: str | None = "f32",
                 device: str = "CPU") -> None:
        super().__init__(path, threads)
        import openvino as ov

        self.inference_precision = inference_precision
        props: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if threads and threads > 0:
            props["INFERENCE_NUM_THREADS"] = int(threads)
        if inference_precision:
            props["INFERENCE_PRECISION_HINT"] = inference_precision
        core = ov.Core()
        try:
            with _quiet():
                self.compiled = core.compile_model(core.read_model(str(path)), device, props)
        except Exception as e:
            raise FormatError(f"OpenVINO cannot load {path}: {first_line(e)}",
                              hint="check that model.bin sits beside model.xml, or convert again") from None
        self.request = self.compiled.create_infer_request()
        specs = []
        for i, port in enumerate(self.compiled.inputs):
            names = sorted(port.get_names())
            shape = tuple(d.get_length() if d.is_static else ("batch" if k == 0 else f"d{k}")
                          for k, d in enumerate(port.get_partial_shape()))
            specs.append(TensorSpec(name=names[0] if names else f"input_{i}", shape=shape,
                                    dtype=_ov_dtype(port.get_element_type())))
        self._inputs = tuple(specs)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            res = self.request.infer({i: feeds[s.name] for i, s in enumerate(self._inputs)})
        except Exception as e:
            raise FormatError(f"OpenVINO failed to run {self.path.name}: {first_line(e)}",
                              hint="check the input shapes and dtypes against the model's inputs") from None
        return [np.array(res[o]) for o in self.compiled.outputs]


class OpenVinoTarget(Target):
    name: ClassVar[str] = "openvino"
    format: ClassVar[Format] = Format.openvino
    description: ClassVar[str] = "OpenVINO IR (fp32, fp16 weights, NNCF int8) for Intel CPUs/GPUs/NPUs and ARM"
    extra: ClassVar[str | None] = "openvino"
    requires: ClassVar[tuple[str, ...]] = ("openvino", "nncf")
    runtime_modules: ClassVar[tuple[str, ...]] = ("openvino",)
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    accepts: ClassVar[tuple[str, ...]] = ("torch", "pt2", "onnx")
    int8_knobs: ClassVar[tuple[str, ...]] = ("max_float_layers", "rounding", "rounding_iters", "equalization")  # the shared int8 flow (int8_under_budget)
    int8_from_torch: ClassVar[bool] = True

    def export(self, source: Source, out_dir: Path, cfg: DeployConfig, precision: str = "fp32",
               base: Artifact | None = None) -> Built:
        model, stage, how = self._convert_fp32(source, cfg)
        return self._save(source, out_dir, model, "fp32", stage, {"precision": "fp32", "from": how}, [])

    def derive(self, source: Source, parent: Artifact, out_dir: Path, cfg: DeployConfig, precision: str) -> Built:
        parent.verify_files()
        if precision == "int8":
            calib = calibration_samples(source, cfg)
            def from_source(src: Source, work: Path) -> Callable[[list[str]], Any]:
                # the rounded model's own fp32 IR, converted as the fp32 artifact was
                par = self._artifact(src, work, self.export(src, work, cfg), "fp32", parent.digest)
                return lambda excluded: self._int8(src, par, out_dir, calib, cfg, excluded)

            return self.int8_under_budget(source, out_dir, cfg, parent.digest,
                                          lambda excluded: self._int8(source, parent, out_dir, calib, cfg, excluded),
                                          from_source if source.module is not None else None)
        import openvino as ov

        model = ov.Core().read_model(str(parent.model_path))
        return self._save(source, out_dir, model, precision, "openvino.fp16_weights", {"precision": precision, "parent": parent.digest},
                          ["weights stored in fp16; the CPU decompresses them and computes in f32 under the runner's "
                           "f32 precision hint"])

    def _int8(self, source: Source, parent: Artifact, out_dir: Path, calib: list, cfg: DeployConfig,
              excluded: Sequence[str] = ()) -> tuple[Built, list[dict[str, Any]]]:
        """NNCF int8 of the fp32 IR with the ops named in ``excluded`` kept in float; what was built
        and the per-layer attribution, worst first."""
        import openvino as ov

        from ..quant import weight_attribution

        model = ov.Core().read_model(str(parent.model_path))
        config: dict[str, Any] = {"precision": "int8", "parent": parent.digest}
        self.say(f"NNCF: calibrating on {len(calib)} samples")
        model = self._quantize(source, model, config, calib, bool(getattr(cfg, "bias_correction", True)), excluded)
        kept = config["kept_float"]
        stem = [k for k in kept if k not in excluded]
        notes = [f"NNCF post-training int8 ({config['preset']} preset, {config['model_type']}, "
                 + ("full bias correction" if config["bias_correction"] else "no bias correction")
                 + f") calibrated on {config['calibration_samples']} calibration inputs"
                 + (f"; the first conv ({stem[0]}) stays fp32: it sees the image itself" if stem else "")
                 + (f"; kept in float for the accuracy budget: {', '.join(excluded)}" if excluded else "")]
        built = self._save(source, out_dir, model, "int8", "openvino.nncf_int8", config, notes)
        layers = weight_report(parent.model_path, out_dir / MODEL_FILE)
        return dataclasses.replace(built, details={"quantization": weight_attribution(
            layers, "NNCF", config["calibration_samples"], {"enabled": config["bias_correction"]})}), layers

    def _save(self, source: Source, out_dir: Path, model: Any, precision: str, stage: str, config: dict[str, Any],
              notes: list[str]) -> Built:
        import openvino as ov

        path = out_dir / MODEL_FILE
        try:
            with _quiet():
                ov.save_model(model, str(path), compress_to_fp16=(precision == "fp16"))
        except Exception as e:
            raise UnsupportedError(f"OpenVINO could not save the IR: {first_line(e)}") from None
        inputs, outputs = self._io(model, source)
        notes.append("the runner sets INFERENCE_PRECISION_HINT=f32 (OpenVINO would run fp32 in bf16 on CPUs with "
                     "bf16 support); deploy with the device default for speed only if that fidelity is acceptable")
        return Built(files=(MODEL_FILE, WEIGHTS_FILE), inputs=inputs, outputs=outputs, stage=stage, config=config,
                     tools=("torch", "openvino", "nncf"), notes=tuple(notes))

    # ---- fp32 ---------------------------------------------------------------------------
    def _convert_fp32(self, source: Source, cfg: DeployConfig) -> tuple[Any, str, str]:
        import openvino as ov

        if source.kind == "onnx":
            try:
                with _quiet():
                    model = ov.convert_model(str(source.path))
            except Exception as e:
                raise UnsupportedError(f"OpenVINO could not convert {source.name}: {first_line(e)}",
                                       hint=_unsupported_hint(str(e))) from None
            how = "onnx"
        else:
            ep, dynamic = self._export(source, cfg)
            try:
                with _quiet():
                    model = ov.convert_model(ep)
            except Exception as e:
                raise UnsupportedError(f"OpenVINO could not convert {source.name}: {first_line(e)}",
                                       hint=_unsupported_hint(str(e))) from None
            how = "torch.export" + (" (dynamic batch)" if dynamic else " (static)")
        self._name_and_shape(model, source)
        return model, "openvino.convert", how

    @staticmethod
    def _export(source: Source, cfg: DeployConfig) -> tuple[Any, bool]:
        import torch

        if source.exported is not None:
            return source.exported, False
        examples = [torch.from_numpy(np.ascontiguousarray(a)) for a in source.example_inputs]
        errors = []
        if cfg.dynamic_batch and all(t.dim() > 0 for t in examples):
            doubled = tuple(torch.cat([t, t]) if t.shape[0] == 1 else t for t in examples)
            batch = torch.export.Dim("batch", min=1, max=4096)
            try:
                with _quiet():
                    return torch.export.export(source.module, doubled,
                                               dynamic_shapes=tuple({0: batch} for _ in doubled)), True
            except Exception as e:  # a model that fixes its batch: export it static
                errors.append(first_line(e))
        try:
            with _quiet():
                return torch.export.export(source.module, tuple(examples)), False
        except Exception as e:
            raise UnsupportedError(f"torch.export could not export {source.name} for OpenVINO: {first_line(e)}",
                                   hint="make the model torch.export-able (no data-dependent control flow)") from None

    @staticmethod
    def _name_and_shape(model: Any, source: Source) -> None:
        """Source names on the IR's ports; concrete shapes except a dynamic batch."""
        import openvino as ov

        if len(model.inputs) == len(source.inputs):
            shapes = {}
            for port, spec, ex in zip(model.inputs, source.inputs, source.example_inputs):
                port.get_tensor().set_names({spec.name})
                dims = [-1 if (k == 0 and port.get_partial_shape()[0].is_dynamic) else int(d)
                        for k, d in enumerate(ex.shape)]
                shapes[port] = ov.PartialShape(dims)
            try:
                model.reshape(shapes)
            except Exception:  # keep the converter's shapes if the model refuses
                pass
        if len(model.outputs) == len(source.outputs):
            for port, spec in zip(model.outputs, source.outputs):
                port.get_tensor().set_names({spec.name})

    # ---- int8 ---------------------------------------------------------------------------
    @staticmethod
    def _quantize(source: Source, model: Any, config: dict[str, Any], calib: list, bias_correction: bool = True,
                  excluded: Sequence[str] = ()) -> Any:
        import logging

        import nncf

        names = [p.get_any_name() for p in model.inputs]
        transformer = any(np.issubdtype(np.asarray(a).dtype, np.integer) for a in source.example_inputs)
        ignored: list[str] = []
        if source.preprocess is not None and len(source.inputs) == 1:
            # the first conv sees the image itself; int8 there costs Lite0 top-1 agreement 92% -> 98% kept float
            stem = next((op.get_friendly_name() for op in model.get_ordered_ops()
                         if op.get_type_name() in ("Convolution", "GroupConvolution")), None)
            ignored = [stem] if stem else []
        ignored += [name for name in excluded if name not in ignored]
        model_type = nncf.ModelType.TRANSFORMER if transformer else None
        config.update({"tool": "nncf.quantize", "preset": "performance", "calibration_samples": len(calib),
                       "model_type": "transformer" if transformer else "default", "kept_float": ignored,
                       "fast_bias_correction": False, "bias_correction": bias_correction})
        nncf_log = logging.getLogger("nncf")
        level = nncf_log.level
        nncf_log.setLevel(logging.ERROR)
        try:
            with _quiet():
                dataset = nncf.Dataset(calib, lambda s: dict(zip(names, s)))
                kwargs: dict[str, Any] = {"subset_size": len(calib), "fast_bias_correction": False}
                if ignored:
                    kwargs["ignored_scope"] = nncf.IgnoredScope(names=ignored)
                if model_type is not None:
                    kwargs["model_type"] = model_type
                if not bias_correction:  # --no-bias-correction reaches NNCF too
                    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

                    kwargs["advanced_parameters"] = AdvancedQuantizationParameters(disable_bias_correction=True)
                return nncf.quantize(model, dataset, **kwargs)
        except Exception as e:
            raise UnsupportedError(f"NNCF int8 quantisation failed for {source.name}: {first_line(e)}",
                                   hint="build the fp32 (or fp16) artifact only") from None
        finally:
            nncf_log.setLevel(level)

    @staticmethod
    def _io(model: Any, source: Source) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        pre = source.preprocess

        def spec(port: Any, i: int, prefix: str) -> TensorSpec:
            names = sorted(port.get_names())
            name = names[0] if names else f"{prefix}_{i}"
            shape = tuple(d.get_length() if d.is_static else ("batch" if k == 0 else f"d{k}")
                          for k, d in enumerate(port.get_partial_shape()))
            layout = pre.layout if pre and pre.input == name else None
            return TensorSpec(name=name, shape=shape, dtype=_ov_dtype(port.get_element_type()), layout=layout)

        return (tuple(spec(p, i, "input") for i, p in enumerate(model.inputs)),
                tuple(spec(p, i, "output") for i, p in enumerate(model.outputs)))

    def intermediates(self, artifact: Artifact, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Every named tensor of the IR (OpenVINO keeps the ONNX tensor names), at f32."""
        import openvino as ov

        try:
            with _quiet():
                core = ov.Core()
                model = core.read_model(str(artifact.model_path))
                ports = [o for op in model.get_ordered_ops() if op.get_type_name() not in ("Parameter", "Constant", "Result")
                         for o in op.outputs() if o.get_names()]
                model.add_outputs(ports)
                compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                res = compiled(feeds)
        except Exception:  # noqa: BLE001 - no intermediates, no location; the failed check stands
            return None
        return {n: np.asarray(v) for port, v in res.items() for n in port.get_names()}

    def runner(self, artifact: Artifact, threads: int = 1, inference_precision: str | None = "f32") -> Runner:
        return OpenVinoRunner(artifact.model_path, threads=threads, inference_precision=inference_precision)


_WEIGHTED = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")


def _constant_value(node: Any, depth: int = 0) -> np.ndarray | None:
    """The value of a weight's constant subgraph (Constant, Convert, Subtract, Multiply, Reshape of
    constants), as NNCF stores int8 weights; None for anything else."""
    kind = node.get_type_name()
    if kind == "Constant":
        return np.asarray(node.get_data(), np.float64)
    if depth > 6:
        return None
    ins = [_constant_value(node.input_value(i).get_node(), depth + 1) for i in range(node.get_input_size())]
    if any(v is None for v in ins[:2]):
        return None
    if kind == "Convert":
        return ins[0]
    if kind == "Multiply":
        return ins[0] * ins[1]
    if kind == "Subtract":
        return ins[0] - ins[1]
    if kind == "Reshape" and ins[1] is not None:
        return ins[0].reshape([int(d) for d in ins[1]])
    return None


def weight_report(fp32_xml: Path, int8_xml: Path) -> list[dict[str, Any]]:
    """Per-layer attribution of an NNCF int8 IR: for every weighted op whose weights it stores as
    int8, the SQNR of those weights against the fp32 IR's (matched by op name), worst first."""
    import openvino as ov

    from ..fidelity import db_from_sums

    core = ov.Core()
    floats = {}
    for op in core.read_model(str(fp32_xml)).get_ordered_ops():
        if op.get_type_name() in _WEIGHTED and op.get_input_size() > 1:
            floats[op.get_friendly_name()] = _constant_value(op.input_value(1).get_node())
    rows = []
    for op in core.read_model(str(int8_xml)).get_ordered_ops():
        if op.get_type_name() not in _WEIGHTED or op.get_input_size() < 2:
            continue
        wnode = op.input_value(1).get_node()
        if wnode.get_type_name() == "Constant":
            continue  # kept float
        w, wq = floats.get(op.get_friendly_name()), _constant_value(wnode)
        if w is None or wq is None or w.size != wq.size:
            continue
        w, wq = w.reshape(-1), wq.reshape(-1)
        rows.append({"node": op.get_friendly_name(), "module": None, "op": op.get_type_name(),
                     "weight_sqnr_db": round(db_from_sums(float(np.sum(w ** 2)), float(np.sum((wq - w) ** 2))), 2)})
    return sorted(rows, key=lambda r: r["weight_sqnr_db"])


def _unsupported_hint(message: str) -> str:
    if "No conversion rule" in message or "not supported" in message.lower():
        return "the op named above has no OpenVINO conversion rule; replace it or register a ConversionExtension"
    return "check that the model exports with torch.export, or convert it to ONNX first"
