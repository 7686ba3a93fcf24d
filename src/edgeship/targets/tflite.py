"""TFLite / LiteRT target (Android): litert-torch conversion, ai-edge-quantizer fp16 and int8.

* fp32: ``litert_torch.convert`` (no TensorFlow). Inputs keep the source's layout unless
  ``tflite_nhwc`` is set: then an NCHW image input becomes NHWC (``litert_torch.to_channel_last_io``),
  which also drops the TRANSPOSE the converter otherwise puts in front of the first convolution.
* fp16: the verified fp32 file with its weights cast to float16 (ai-edge-quantizer FLOAT_CASTING,
  weight-only): half the size; XNNPACK computes in fp32.
* ONNX files: converted to torch first by the onnx2torch bridge (:mod:`edgeship.sources.bridge`,
  static at the example shapes) and verified against the ONNX model in ONNX Runtime; fp16 and
  int8 derive from that fp32 file as for any source.
* int8: full-integer static quantisation of the verified fp32 file (ai-edge-quantizer
  ``static_wi8_ai8``: int8 per-channel weights, int8 activations), calibrated on
  ``source.calibration_inputs()``; output dequantised to float32. For an image model whose
  normalisation is the same on every channel (``(x - mean) / std``) the input is **uint8 raw RGB
  bytes**: the input range is pinned to ``[(0 - mean) / std, (255 - mean) / std]`` so the input
  quantisation is exactly scale ``1/std``, zero point ``mean`` — the normalisation is folded into
  it (EfficientNet-Lite0: 1/128, 127). Per-channel normalisation cannot fold into one scale: such
  a model keeps a float32 input (quantised inside the graph).

ReLU6: the PT2E quantizers collapse on ReLU6 networks (conv output quantised before the clamp).
Here quantisation runs on the TFLite graph, where litert-torch has already fused the clamp into
the convolution (fused RELU6), so calibration sees the clamped range. The fidelity check after
every quantisation (verify.py) is what guarantees it: an int8 artifact below the budget is a
ValidationError and is never written.

Runner: the LiteRT interpreter (XNNPACK by default) with ``num_threads`` set at construction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..artifact import (
    Artifact,
    Format,
    Preprocess,
    Provenance,
    TensorSpec,
    file_entries,
)
from ..errors import FormatError, MissingExtraError, UnsupportedError, first_line
from ..runner import Runner
from .base import Built, Target
from .onnx import quiet_exporter as _quiet

if TYPE_CHECKING:
    from ..config import DeployConfig
    from ..sources import Source

__all__ = ["TfliteTarget", "TfliteRunner"]

MODEL_FILE = "model.tflite"
_TOOLS = ("torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer")


# ---- keeping converter chatter off the user's screen ------------------------------------

@contextlib.contextmanager
def _quiet_native() -> Iterator[list[str]]:
    """Send fd 1 and 2 (native logs, progress bars) to a temp file; yield a list that receives
    the captured text on exit (for error messages). Python-level chatter is handled by _quiet."""
    captured: list[str] = []
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    saved = [os.dup(1), os.dup(2)]
    old_env = {k: os.environ.get(k) for k in ("LITERT_TORCH_SHOW_PROGRESS", "TF_CPP_MIN_LOG_LEVEL")}
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with _quiet():
                yield captured
        finally:
            for s in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    s.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


# ---- runner -----------------------------------------------------------------------------

class TfliteRunner(Runner):
    """Any .tflite file on the LiteRT interpreter (XNNPACK), ``num_threads`` fixed at load.

    ``names`` renames the inputs (an artifact's own input names); without it the names come from
    the file's signature (``args_0`` ...) or its tensor names, so a bare .tflite runs too.
    ``threads`` <= 0 means the runtime's default.
    """

    def __init__(self, path: Path, threads: int = 1, names: Sequence[str] | None = None) -> None:
        super().__init__(path, threads)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover - checked by ensure_environment
            raise MissingExtraError("running a .tflite file needs ai-edge-litert",
                                    hint="pip install 'edgeship[tflite]'") from None
        self.num_threads = int(threads) if threads and threads > 0 else None
        try:
            with _quiet_native():
                self.interpreter = Interpreter(model_path=str(path), num_threads=self.num_threads)
                self.interpreter.allocate_tensors()
        except Exception as e:
            raise FormatError(f"LiteRT cannot load {path}: {first_line(e)}",
                              hint="check that it is a .tflite flatbuffer; convert it again") from None
        it = self.interpreter
        in_details, out_details = it.get_input_details(), it.get_output_details()
        sig_names: dict[int, str] = {}
        with contextlib.suppress(Exception):
            for sig in it._get_full_signature_list().values():
                for key, idx in list(sig.get("inputs", {}).items()) + list(sig.get("outputs", {}).items()):
                    sig_names[int(idx)] = key
                break
        if names is not None and len(names) != len(in_details):
            raise FormatError(f"{path} has {len(in_details)} inputs, its record names {len(names)}",
                              hint="the artifact.json does not describe this file; re-run edgeship deploy")

        def spec(d: dict[str, Any], name: str) -> TensorSpec:
            sig = d.get("shape_signature")
            dims = [int(x) for x in (sig if sig is not None and len(sig) else d["shape"])]
            shape = tuple(x if x >= 0 else f"d{i}" for i, x in enumerate(dims))
            return TensorSpec(name=name, shape=shape, dtype=np.dtype(d["dtype"]).name)

        self._in_index = [int(d["index"]) for d in in_details]
        self._out_index = [int(d["index"]) for d in out_details]
        self._inputs = tuple(
            spec(d, names[i] if names is not None else sig_names.get(int(d["index"]), d["name"]))
            for i, d in enumerate(in_details))
        self.outputs = tuple(spec(d, sig_names.get(int(d["index"]), d["name"])) for d in out_details)
        self.quantization = {s.name: tuple(d["quantization"]) for s, d in zip(self._inputs, in_details)}

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        it = self.interpreter
        try:
            for s, idx in zip(self._inputs, self._in_index):
                it.set_tensor(idx, feeds[s.name])
            it.invoke()
            return [np.array(it.get_tensor(idx)) for idx in self._out_index]
        except Exception as e:
            raise FormatError(f"LiteRT failed to run {self.path.name}: {first_line(e)}",
                              hint="check the input shapes and dtypes against the model's inputs") from None


def artifact_from_tflite(path: Path) -> Artifact:
    """An in-memory artifact for a bare .tflite file (no artifact.json): its inputs and outputs, read
    by the LiteRT interpreter in an isolated child. Enough to run and benchmark it; no preprocessing
    or labels are known, so it does not classify."""
    from ..formats.tflite import read_tflite

    data = read_tflite(path)
    tensors = {t["index"]: t for t in data["tensors"]}

    def spec(i: int) -> TensorSpec:
        t = tensors[i]
        return TensorSpec(name=t["name"], shape=tuple(int(d) for d in t["shape"]), dtype=t["dtype"])

    return Artifact(
        name=path.stem, target="tflite", format=Format.tflite, root=path.parent,
        files=file_entries(path.parent, [path.name]), model_file=path.name,
        inputs=tuple(spec(i) for i in data["inputs"]), outputs=tuple(spec(i) for i in data["outputs"]),
        provenance=Provenance(stage="tflite.file", parent_digest=None, source=str(path)),
        notes=("a bare .tflite file: no preprocessing or labels known",),
    )


# ---- target -----------------------------------------------------------------------------

class TfliteOptions(BaseModel):
    """The tflite target's own knobs (``--tflite-nhwc``, ``--tflite-int8-input``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tflite_nhwc: bool = Field(False, description="tflite: take the image input as NHWC (Android bitmap order) instead of "
                                                 "the source's NCHW")
    tflite_int8_input: Literal["auto", "uint8", "float32"] = Field(
        "auto", description="tflite int8: input type; auto = uint8 raw RGB bytes for image models whose normalisation "
                            "folds into one input scale, else float32")


class TfliteTarget(Target):
    name: ClassVar[str] = "tflite"
    format: ClassVar[Format] = Format.tflite
    description: ClassVar[str] = ("TFLite/LiteRT for Android (litert-torch; fp16 weights; full int8 via "
                                  "ai-edge-quantizer with a uint8 raw-pixel input for image models)")
    extra: ClassVar[str | None] = "tflite"
    requires: ClassVar[tuple[str, ...]] = ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")
    runtime_modules: ClassVar[tuple[str, ...]] = ("ai_edge_litert",)
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    accepts: ClassVar[tuple[str, ...]] = ("torch", "pt2", "onnx")  # onnx: through the onnx2torch bridge
    int8_knobs: ClassVar[tuple[str, ...]] = ("max_float_layers", "rounding", "rounding_iters", "equalization")  # the shared int8 flow (int8_under_budget)
    int8_from_torch: ClassVar[bool] = True
    Options: ClassVar[type[BaseModel] | None] = TfliteOptions
    needs_module: ClassVar[bool] = False  # an ONNX source is bridged to torch in export()
    bridges_onnx: ClassVar[bool] = True  # Target.refuses names the bridge install when it is missing

    @classmethod
    def artifact_from_file(cls, path: Path) -> Artifact | None:
        return artifact_from_tflite(path)

    # -- convert ----------------------------------------------------------------------------
    def check(self, source: Source, cfg: DeployConfig, precision: str) -> None:
        if source.module is None:
            from ..sources.bridge import require

            require()  # an ONNX file needs the bridge: MissingExtraError naming the install command
        self._nhwc_inputs(source, cfg)
        if precision == "int8":
            self._int8_input(source, cfg)  # an impossible input type fails before any work

    def export(self, source: Source, out_dir: Path, cfg: DeployConfig, precision: str = "fp32",
               base: Artifact | None = None) -> Built:
        from ..sources.bridge import bridge_notes, torch_source

        src = torch_source(source)  # an ONNX file as a torch module (the bridge); the rest as they are
        built = self._fp32(src, out_dir, cfg, self._nhwc_inputs(src, cfg))
        if src is source:
            return built
        return dataclasses.replace(built, notes=(*bridge_notes(src), *built.notes),
                                   config={**built.config, "bridge": "onnx2torch"}, tools=(*built.tools, "onnx2torch", "onnxslim"))

    def derive(self, source: Source, parent: Artifact, out_dir: Path, cfg: DeployConfig, precision: str) -> Built:
        if precision == "fp16":
            return self._fp16(source, out_dir, cfg, parent)
        def from_source(src: Source, work: Path) -> Callable[[list[str]], Any]:
            # the rounded model's own fp32 .tflite, converted as the fp32 artifact was
            par = self._artifact(src, work, self.export(src, work, cfg), "fp32", parent.digest)
            return lambda excluded: self._int8(src, out_dir, cfg, par, excluded)

        return self.int8_under_budget(source, out_dir, cfg, parent.digest,
                                      lambda excluded: self._int8(source, out_dir, cfg, parent, excluded),
                                      from_source if source.module is not None else None)

    def _nhwc_inputs(self, source: Source, cfg: DeployConfig) -> list[int]:
        """Indexes of the inputs to turn NCHW → NHWC: the image input named by the preprocessing
        (a model without one, or already NHWC, is converted as it is)."""
        pre = source.preprocess
        if not self.options(cfg).tflite_nhwc or pre is None or pre.layout != "NCHW":
            return []
        return [i for i, (s, a) in enumerate(zip(source.inputs, source.example_inputs))
                if s.name == pre.input and np.asarray(a).ndim == 4]

    def _int8_input(self, source: Source, cfg: DeployConfig) -> bool:
        """True when the int8 model takes uint8 raw pixels; UnsupportedError if asked for and impossible."""
        pre = source.preprocess
        mode = self.options(cfg).tflite_int8_input
        uniform = pre is not None and len(set(pre.mean)) == 1 and len(set(pre.std)) == 1
        image_in = pre is not None and len(source.inputs) == 1 and pre.dtype == "float32"
        if mode == "uint8" and not (image_in and uniform):
            why = ("the model has no float image preprocessing" if not image_in else
                   f"its normalisation differs per channel (mean {pre.mean}, std {pre.std}) and cannot fold into "
                   "one input scale")
            raise UnsupportedError(f"a uint8 raw-pixel input needs an image model with one mean/std for all channels: {why}",
                                   hint="use --tflite-int8-input float32 (or auto)")
        return image_in and uniform and mode in ("auto", "uint8")

    def _fp32(self, source: Source, out_dir: Path, cfg: DeployConfig, nhwc: list[int]) -> Built:
        import torch

        module = source.module
        examples = [np.ascontiguousarray(a) for a in source.example_inputs]
        path = out_dir / MODEL_FILE
        with _quiet_native() as log:
            try:
                import litert_torch

                if nhwc:
                    module = litert_torch.to_channel_last_io(module, args=nhwc)
                    examples = [np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if i in nhwc else a
                                for i, a in enumerate(examples)]
                args = tuple(torch.from_numpy(a) for a in examples)
                litert_torch.convert(module, args).export(str(path))
                failure = None
            except Exception as e:  # the converter's own errors: typed below, outside the quiet block
                failure = e
        if failure is not None:
            raise self._unsupported(source, failure, (log or [""])[0], nhwc) from None

        runner = TfliteRunner(path, threads=1)
        inputs, notes = [], []
        pre = source.preprocess
        for i, (s, got) in enumerate(zip(source.inputs, runner.inputs)):
            layout = "NHWC" if i in nhwc else s.layout
            if pre is not None and pre.input == s.name and layout is None:
                layout = pre.layout
            inputs.append(TensorSpec(name=s.name, shape=got.shape, dtype=got.dtype, layout=layout))
            if got.dtype != s.dtype:
                notes.append(f"input {s.name!r} is {got.dtype} (the source takes {s.dtype}): litert-torch keeps "
                             "model I/O 32-bit; values must fit")
        outputs = tuple(TensorSpec(name=s.name, shape=got.shape, dtype=got.dtype)
                        for s, got in zip(source.outputs, runner.outputs))
        if len(runner.outputs) != len(source.outputs):
            outputs = runner.outputs
        del runner
        new_pre = pre.model_copy(update={"layout": "NHWC"}) if pre is not None and nhwc else pre
        if nhwc:
            notes.append(f"NHWC input ({', '.join(source.inputs[i].name for i in nhwc)}), as Android bitmaps are laid out")
        if all(isinstance(d, int) for s in inputs for d in s.shape[:1]):
            notes.append("static batch size: the model takes the batch of the example input")
        return Built(files=(MODEL_FILE,), inputs=tuple(inputs), outputs=tuple(outputs), preprocess=new_pre,
                     stage="tflite.convert", config={"tflite_nhwc": bool(nhwc)}, tools=_TOOLS, notes=tuple(notes))

    def _unsupported(self, source: Source, e: BaseException, log: str, nhwc: list[int]) -> UnsupportedError:
        """A converter failure as UnsupportedError naming the ops, nodes and modules it can find."""
        text = f"{e}\n{log}"
        missing = _missing_lowerings(source, nhwc)
        if missing:
            ops = sorted({m["op"] for m in missing})
            where = "; ".join(f"{m['op']} at node {m['node']}" + (f" in module {m['module']!r}" if m["module"] else "")
                              for m in missing[:6])
            return UnsupportedError(
                f"litert-torch cannot convert {source.name}: no LiteRT lowering for {', '.join(ops)} ({where})",
                hint="replace these ops with supported ones (edgeship analyze lists alternatives), "
                     "or use another target such as onnx", ops=ops, nodes=[m["node"] for m in missing],
                modules=[m["module"] for m in missing])
        m = re.search(r"Lowering not found: (\S+)", text)
        node = re.search(r"While executing %(\S+) : .*?target=([\w.]+)", text)
        detail = first_line(e)
        if m:
            detail = f"no LiteRT lowering for {m.group(1)}" + (f" (node {node.group(1)})" if node else "")
        elif node:
            detail += f" (while converting node {node.group(1)}, op {node.group(2)})"
        return UnsupportedError(f"litert-torch could not convert {source.name}: {type(e).__name__}: {detail}",
                                hint="make the model torch.export-able with ops LiteRT supports, "
                                     "or use another target such as onnx")

    def _fp16(self, source: Source, out_dir: Path, cfg: DeployConfig, parent: Artifact) -> Built:
        from ai_edge_quantizer import qtyping, quantizer
        from ai_edge_quantizer.algorithm_manager import AlgorithmName

        with _quiet_native():
            try:
                q = quantizer.Quantizer(str(parent.model_path))
                q.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                         num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING)
                model = q.quantize(enable_progress_report=False).quantized_model
                failure = None
            except Exception as e:
                failure = e
        if failure is not None:
            raise UnsupportedError(f"ai-edge-quantizer could not cast {source.name} to fp16: {first_line(failure)}",
                                   hint="use the fp32 artifact") from None
        (out_dir / MODEL_FILE).write_bytes(bytes(model))
        return self._derived(source, out_dir, parent, "fp16", parent.inputs, parent.preprocess,
                             {"recipe": "weight-only float16 (FLOAT_CASTING)"},
                             ("weights stored as float16 (half the size); XNNPACK computes in float32",))

    def _int8(self, source: Source, out_dir: Path, cfg: DeployConfig, parent: Artifact,
              excluded: Sequence[str] = ()) -> tuple[Built, list[dict[str, Any]]]:
        """Full int8 with the layers named in ``excluded`` (weight tensor names, as the attribution
        gives them) kept in float; what was built and the per-layer attribution, worst first."""
        from ai_edge_quantizer import calibrator, qtyping, quantizer, recipe
        from ai_edge_quantizer.algorithm_manager import AlgorithmName
        from ai_edge_quantizer.utils import qsv_utils

        from ..quant.tflite import op_scopes, weight_report

        pre = parent.preprocess
        uint8_in = self._int8_input(source, cfg)
        image_in = pre is not None and len(parent.inputs) == 1
        notes: list[str] = []

        # calibration data in the fp32 model's own layout and dtypes, keyed by signature name
        runner = TfliteRunner(parent.model_path, threads=0)
        sig_keys = [s.name for s in runner.inputs]  # args_0, args_1, ... from the file's signature
        in_tensor = [d["name"] for d in runner.interpreter.get_input_details()]
        sig = next(iter(runner.interpreter.get_signature_list()), "serving_default")
        del runner
        from ..data import calibration_samples

        samples = calibration_samples(source, cfg)
        from ..verify import artifact_inputs

        parent_f = parent.model_copy(update={"preprocess": pre.model_copy(update={"dtype": "float32"}) if pre else None})
        calib = []
        for s in samples:
            xs = artifact_inputs(source, parent_f, s)
            calib.append({k: np.asarray(x).astype(t.dtype) for k, x, t in zip(sig_keys, xs, parent.inputs)})

        op_name = qtyping.TFLOperationName
        fp32_bytes = parent.model_path.read_bytes()

        def make_quantizer(model_bytes: bytes) -> Any:
            q = quantizer.Quantizer(bytearray(model_bytes), recipe.static_wi8_ai8())
            q.update_quantization_recipe(regex=".*", operation_name=op_name.OUTPUT, op_config=qtyping.OpQuantizationConfig(),
                                         algorithm_key=AlgorithmName.NO_QUANTIZE)
            if uint8_in:
                q.update_quantization_recipe(
                    regex=".*", operation_name=op_name.INPUT,
                    op_config=qtyping.OpQuantizationConfig(
                        activation_tensor_config=qtyping.TensorQuantizationConfig(
                            num_bits=8, symmetric=False, dtype=qtyping.TensorDataType.UINT),
                        compute_precision=qtyping.ComputePrecision.INTEGER))
            else:
                q.update_quantization_recipe(regex=".*", operation_name=op_name.INPUT, op_config=qtyping.OpQuantizationConfig(),
                                             algorithm_key=AlgorithmName.NO_QUANTIZE)
            for scope in op_scopes(fp32_bytes, excluded):  # kept in float: the op's output tensor is its scope
                q.update_quantization_recipe(regex="^" + re.escape(scope) + ";", operation_name=op_name.ALL_SUPPORTED,
                                             op_config=qtyping.OpQuantizationConfig(), algorithm_key=AlgorithmName.NO_QUANTIZE)
            return q

        corrected = 0
        self.say(f"calibrating on {len(calib)} samples, quantising"
                 + (", correcting biases" if getattr(cfg, "bias_correction", True) else ""))
        with _quiet_native():
            try:
                q = make_quantizer(fp32_bytes)
                # absolute min/max over the calibration set (the quantizer's default is a moving
                # average that forgets early samples: Lite0 top-1 agreement on 64 crops 89% with it,
                # 94% with this)
                manager = q._recipe_manager  # what Quantizer.calibrate passes (ai-edge-quantizer 0.10)
                cal = calibrator.Calibrator(fp32_bytes, num_threads=max(1, os.cpu_count() or 1),
                                            qsv_update_func=qsv_utils.min_max_update)
                cal.calibrate({sig: calib}, manager)
                qsv = cal.get_model_qsvs()
                if uint8_in:
                    assert pre is not None
                    lo, hi = (0.0 - pre.mean[0]) / pre.std[0], (255.0 - pre.mean[0]) / pre.std[0]
                    t = in_tensor[0]
                    qsv[t] = {**qsv.get(t, {}),
                              "min": np.full_like(np.asarray(qsv[t]["min"], np.float32), lo),
                              "max": np.full_like(np.asarray(qsv[t]["max"], np.float32), hi)}
                model = q.quantize(qsv, enable_progress_report=False).quantized_model
                if getattr(cfg, "bias_correction", True):
                    # the same ranges, the same int8 weights, biases corrected for their mean error
                    from ..quant.tflite import bias_corrected

                    fixed_fp32, corrected = bias_corrected(fp32_bytes, bytes(model), calib, sig)
                    if corrected:
                        model = make_quantizer(fixed_fp32).quantize(qsv, enable_progress_report=False).quantized_model
                failure = None
            except Exception as e:
                failure = e
        if failure is not None:
            raise UnsupportedError(f"ai-edge-quantizer could not quantise {source.name} to int8: {first_line(failure)}",
                                   hint="use the fp32 or fp16 artifact") from None
        (out_dir / MODEL_FILE).write_bytes(bytes(model))
        from ..quant import weight_attribution

        layers = weight_report(fp32_bytes, bytes(model))

        check = TfliteRunner(out_dir / MODEL_FILE, threads=1, names=[s.name for s in parent.inputs])
        inputs = tuple(s.model_copy(update={"dtype": got.dtype}) for s, got in zip(parent.inputs, check.inputs))
        qparams = check.quantization
        del check
        new_pre = pre
        if uint8_in:
            assert pre is not None
            scale, zp = qparams.get(inputs[0].name, (0.0, 0))
            new_pre = pre.model_copy(update={"dtype": "uint8"})
            notes.append(f"input {inputs[0].name!r} takes raw RGB bytes (uint8, {new_pre.layout}): the normalisation "
                         f"(x - {pre.mean[0]:g}) / {pre.std[0]:g} is folded into its quantisation "
                         f"(scale {scale:.6g}, zero point {zp})")
        elif image_in:
            notes.append("float32 input: a per-channel normalisation cannot fold into one uint8 input scale")
        notes.append(f"full int8 (int8 per-channel weights, int8 activations), min/max-calibrated on {len(calib)} "
                     "inputs kept apart from the evaluation inputs; output dequantised to float32"
                     + (f"; biases corrected in {corrected} layer(s)" if corrected else "")
                     + (f"; kept in float for the accuracy budget: {', '.join(excluded)}" if excluded else ""))
        return self._derived(source, out_dir, parent, "int8", inputs, new_pre,
                             {"recipe": "static_wi8_ai8", "calibration_samples": len(calib),
                              "calibration": "min/max", "input": "uint8" if uint8_in else "float32",
                              "bias_corrected_layers": corrected, "kept_float": list(excluded)}, tuple(notes),
                             details={"quantization": weight_attribution(layers, "minmax", len(calib),
                                                                         {"layers": corrected})}), layers

    def _derived(self, source: Source, out_dir: Path, parent: Artifact, precision: str, inputs: tuple[TensorSpec, ...],
                 pre: Preprocess | None, config: dict[str, Any], notes: tuple[str, ...],
                 details: dict[str, Any] | None = None) -> Built:
        return Built(files=(MODEL_FILE,), inputs=inputs, outputs=parent.outputs, preprocess=pre, stage=f"tflite.{precision}",
                     config={**config, "fp32_digest": parent.digest, **parent.provenance.config}, tools=_TOOLS,
                     notes=parent.notes + notes, details=details or {})

    def runner(self, artifact: Artifact, threads: int = 1) -> Runner:
        return TfliteRunner(artifact.model_path, threads=threads, names=[s.name for s in artifact.inputs])


def _missing_lowerings(source: Source, nhwc: list[int]) -> list[dict[str, str]]:
    """Run litert-torch's own export, FX passes and pre-lowering decompositions (no MLIR, no
    flatbuffer) and list the graph nodes that have no LiteRT lowering, with their module paths.
    Best effort: an internal API change makes it return [] (the caller then reports the error)."""
    try:
        with _quiet_native():
            import operator

            import torch
            from litert_torch import fx_infra
            from litert_torch._convert import core, signature
            from litert_torch.backend import lowerings

            module = source.module
            examples = [np.ascontiguousarray(a) for a in source.example_inputs]
            if nhwc:
                import litert_torch

                module = litert_torch.to_channel_last_io(module, args=nhwc)
                examples = [a.transpose(0, 2, 3, 1).copy() if i in nhwc else a for i, a in enumerate(examples)]
            sig = signature.Signature("serving_default", module, tuple(torch.from_numpy(a) for a in examples), {})
            ep = core.export_torch_signature(sig)
            ep = core._run_convert_passes(ep)
            ep = fx_infra.safe_run_decompositions(ep, fx_infra.decomp.pre_lower_decomp(), can_skip=False)
            out = []
            for node in ep.graph.nodes:
                if node.op != "call_function" or node.target is operator.getitem:
                    continue
                if lowerings.lookup(node.target) is None:
                    stack = node.meta.get("nn_module_stack") or {}
                    path, cls = next(reversed(stack.values()), ("", "")) if stack else ("", "")
                    cls_name = getattr(cls, "__name__", str(cls)).rsplit(".", 1)[-1]
                    mod = f"{path} ({cls_name})" if path else ""
                    out.append({"op": str(node.target), "node": node.name, "module": mod})
            return out
    except Exception:
        return []

