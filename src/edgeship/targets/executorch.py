"""ExecuTorch target: torch.export → edge dialect → XNNPACK delegate → ``model.pte``.

* fp32: ``to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])``.
* ONNX files: converted to torch first by the onnx2torch bridge (:mod:`edgeship.sources.bridge`,
  static at the example shapes); the .pte is verified against the ONNX model in ONNX Runtime.
* int8: PT2E static quantisation with the XNNPACK quantizer (symmetric, per-channel weights,
  calibrated on ``source.calibration_inputs()``), then the same lowering. The stock quantizer fuses
  conv/linear + ReLU but not conv/linear + hardtanh (ReLU6), so the conv output would be quantised
  before the clamp over its whole raw range (Lite0: cosine 0.55). :class:`FusedClampXNNPACKQuantizer`
  annotates a clamp (hardtanh, ReLU6) after a conv or linear like a ReLU: one quantised output after
  the clamp, which XNNPACK fuses into the operator's output range.

The share of multiply-accumulates (and of operator nodes) that XNNPACK runs is counted on the lowered
program and recorded in the artifact (``provenance.config["delegation"]`` and a note).

The runner uses ``executorch.runtime``; the thread-pool size is process-wide and must be set before
``load_method`` (resizing after the XNNPACK delegate is initialised has no effect), so the runner
sets it first.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._util import native_stderr_silenced
from ..artifact import Artifact, Format, TensorSpec
from ..data import calibration_samples
from ..errors import FormatError, UnsupportedError, first_line
from ..runner import Runner
from .base import Built, Target
from .onnx import quiet_exporter as _quiet

if TYPE_CHECKING:
    from ..config import DeployConfig
    from ..sources import Source

MODEL_FILE = "model.pte"

# c10::ScalarType codes as MethodMeta reports them
_ET_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
              7: "float64", 11: "bool"}


@contextlib.contextmanager
def _quiet_native() -> Iterator[Any]:
    """Silence C++ chatter written straight to fd 2 (cpuinfo, threadpool) during a call."""
    with _quiet() as buf, native_stderr_silenced():
        yield buf


# ---- the ReLU6 fix -----------------------------------------------------------------------

def _clamp_quantizer(fuse_clamps: bool = True, excluded: Sequence[str] = ()) -> Any:
    """An XNNPACKQuantizer that also fuses conv/linear + hardtanh (ReLU6, clamp) like + relu, and
    leaves the conv/linear nodes named in ``excluded`` (with their weights and clamp) in float.

    ``fuse_clamps=False`` gives the stock behaviour (kept for tests that show the collapse)."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        CONV_TARGETS,
        LINEAR_TARGETS,
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (
        _is_annotated,
        _mark_nodes_as_annotated,
        get_bias_qspec,
        get_input_act_qspec,
        get_output_act_qspec,
        get_weight_qspec,
    )
    from torchao.quantization.pt2e.quantizer.quantizer import (
        Q_ANNOTATION_KEY,
        QuantizationAnnotation,
    )

    clamps = {torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default,
              torch.ops.aten.clamp.default, torch.ops.aten.relu6.default}

    class FusedClampXNNPACKQuantizer(XNNPACKQuantizer):
        """XNNPACKQuantizer + conv/linear→hardtanh fusion (see the module docstring)."""

        fused: int = 0
        kept_float: tuple[str, ...] = ()

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            config = self.global_config
            keep = [n for n in model.graph.nodes if n.name in set(excluded) and n.op == "call_function"
                    and (n.target in CONV_TARGETS or n.target in LINEAR_TARGETS)]
            if keep:  # kept in float for the accuracy budget: the op, its weight and bias, its clamp
                skip = {name for n in keep for name in (n.name, *(a.name for a in n.args[1:3] if isinstance(a, torch.fx.Node)),
                                                        *(u.name for u in n.users if u.target in clamps))}
                self.kept_float = tuple(n.name for n in keep)
                self.filter_fn = lambda n, skip=skip: n.name not in skip
            if fuse_clamps and config is not None and not config.input_activation.is_dynamic and not config.is_qat:
                self.fused = self._annotate_op_clamp(model, config)
            return super().annotate(model)

        def _annotate_op_clamp(self, gm: torch.fx.GraphModule, config: Any) -> int:
            count = 0
            for clamp in gm.graph.nodes:
                if clamp.op != "call_function" or clamp.target not in clamps:
                    continue
                op = clamp.args[0]
                if not isinstance(op, torch.fx.Node) or op.op != "call_function":
                    continue
                if op.target not in CONV_TARGETS and op.target not in LINEAR_TARGETS:
                    continue
                if len(op.users) > 1:
                    continue  # the unclamped output is used elsewhere: no fusion
                weight = op.args[1]
                bias = op.args[2] if len(op.args) > 2 else None
                partition = [clamp, op, weight] + ([bias] if isinstance(bias, torch.fx.Node) else [])
                if _is_annotated(partition):
                    continue
                if self.filter_fn is not None and not all(self.filter_fn(n) for n in partition):
                    continue
                qmap = {op.args[0]: get_input_act_qspec(config), weight: get_weight_qspec(config)}
                if isinstance(bias, torch.fx.Node):
                    qmap[bias] = get_bias_qspec(config)
                op.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=qmap, _annotated=True)
                clamp.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
                    output_qspec=get_output_act_qspec(config), _annotated=True)
                _mark_nodes_as_annotated(partition)
                count += 1
            return count

    q = FusedClampXNNPACKQuantizer()
    q.set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    return q


# ---- delegation accounting ---------------------------------------------------------------

def _node_macs(node: Any) -> int:
    """Multiply-accumulates of one conv / linear / matmul node, from its tensors' metadata."""
    name = str(node.target)
    if node.op != "call_function" or not any(k in name for k in ("conv", "linear", "mm", "matmul")):
        return 0
    try:
        out = node.meta["val"]
        if isinstance(out, (tuple, list)):
            out = out[0]
        out_numel = int(np.prod([int(d) for d in out.shape]))
        args = [a.meta.get("val") if hasattr(a, "meta") else None for a in node.args]
        if "conv" in name:
            w = args[1]
            return out_numel * int(np.prod([int(d) for d in w.shape[1:]]))
        if "linear" in name:
            return out_numel * int(args[1].shape[-1])
        if "addmm" in name or "baddbmm" in name:
            return out_numel * int(args[1].shape[-1])
        return out_numel * int(args[0].shape[-1])  # mm, bmm, matmul
    except Exception:  # symbolic or missing metadata: not counted
        return 0


def _op_name(target: Any) -> str:
    """'aten.hardtanh.default' style, without an edge op's schema."""
    return str(target).split("(")[0].split("::")[-1].strip()


def _is_compute(node: Any) -> bool:
    import operator

    return node.op == "call_function" and node.target is not operator.getitem


def delegation_summary(edge_program: Any) -> dict[str, Any]:
    """MACs and operator nodes inside XNNPACK delegates vs left to the portable runtime."""
    gm = edge_program.graph_module
    deleg_macs = deleg_nodes = other_macs = other_nodes = 0
    not_delegated: Counter[str] = Counter()
    for n in gm.graph.nodes:
        if not _is_compute(n):
            continue
        if "executorch_call_delegate" in str(n.target):
            lowered = getattr(gm, n.args[0].target)
            sub = lowered.original_module.graph_module.graph
            for m in sub.nodes:
                if _is_compute(m):
                    deleg_nodes += 1
                    deleg_macs += _node_macs(m)
        else:
            other_nodes += 1
            other_macs += _node_macs(n)
            not_delegated[_op_name(n.target)] += 1
    total_macs = deleg_macs + other_macs
    total_nodes = deleg_nodes + other_nodes
    return {
        "backend": "XnnpackBackend",
        "macs_total": total_macs,
        "macs_delegated": deleg_macs,
        "mac_share": round(deleg_macs / total_macs, 6) if total_macs else None,
        "nodes_total": total_nodes,
        "nodes_delegated": deleg_nodes,
        "node_share": round(deleg_nodes / total_nodes, 6) if total_nodes else None,
        "not_delegated_ops": dict(not_delegated.most_common()),
    }


def _delegation_note(d: dict[str, Any]) -> str:
    mac = (f"{d['mac_share']:.1%} of MACs ({d['macs_delegated'] / 1e6:.2f} M of {d['macs_total'] / 1e6:.2f} M)"
           if d["mac_share"] is not None else "no MAC-bearing ops")
    rest = ", ".join(f"{k}×{v}" for k, v in d["not_delegated_ops"].items()) or "none"
    return (f"XNNPACK runs {mac} and {d['nodes_delegated']} of {d['nodes_total']} operator nodes; "
            f"left to the portable kernels: {rest}")


# ---- runner ------------------------------------------------------------------------------

class ExecuTorchRunner(Runner):
    """``executorch.runtime``; the thread pool (process-wide) is sized before ``load_method``."""

    def __init__(self, path: Path, threads: int = 1, outputs: tuple[TensorSpec, ...] = ()) -> None:
        super().__init__(path, threads)
        try:
            from executorch.extension.pybindings.portable_lib import (
                _unsafe_reset_threadpool,
            )
            from executorch.runtime import Runtime
        except ImportError as e:  # pragma: no cover - guarded by ensure_environment
            raise UnsupportedError(f"executorch.runtime is not importable: {e}",
                                   hint="pip install 'edgeship[executorch]'") from None
        with _quiet_native():
            if threads and threads > 0:
                _unsafe_reset_threadpool(int(threads))  # before load_method, or XNNPACK ignores it
            try:
                self.program = Runtime.get().load_program(Path(path))
                self.method = self.program.load_method("forward")
            except Exception as e:
                raise FormatError(f"ExecuTorch cannot load {path}: {first_line(e)}",
                                  hint="the .pte may be truncated or built for another ExecuTorch version") from None
        meta = self.method.metadata
        specs = []
        for i in range(meta.num_inputs()):
            ti = meta.input_tensor_meta(i)
            dtype = _ET_DTYPES.get(int(ti.dtype()), "float32")
            specs.append(TensorSpec(name=f"input_{i}", shape=tuple(int(d) for d in ti.sizes()), dtype=dtype))
        self._inputs = tuple(specs)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        args = [torch.from_numpy(feeds[s.name]) for s in self._inputs]
        try:
            out = self.method.execute(args)
        except Exception as e:
            raise FormatError(f"ExecuTorch failed to run {self.path.name}: {first_line(e)}",
                              hint="check the input shapes and dtypes against the model's inputs") from None
        return [o.detach().numpy().copy() if hasattr(o, "detach") else np.asarray(o) for o in out]


class _NamedRunner(ExecuTorchRunner):
    """The runner with the artifact's input names (the .pte knows positions only)."""

    def __init__(self, artifact: Artifact, threads: int = 1) -> None:
        super().__init__(artifact.model_path, threads)
        if len(artifact.inputs) == len(self._inputs):
            self._inputs = tuple(s.model_copy(update={"name": a.name, "layout": a.layout})
                                 for s, a in zip(self._inputs, artifact.inputs))


# ---- target ------------------------------------------------------------------------------

class ExecuTorchTarget(Target):
    name: ClassVar[str] = "executorch"
    format: ClassVar[Format] = Format.pte
    description: ClassVar[str] = "ExecuTorch .pte with the XNNPACK delegate (fp32, PT2E int8), Android/iOS/embedded"
    extra: ClassVar[str | None] = "executorch"
    requires: ClassVar[tuple[str, ...]] = ("executorch", "torchao")
    runtime_modules: ClassVar[tuple[str, ...]] = ("executorch",)
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "int8")
    accepts: ClassVar[tuple[str, ...]] = ("torch", "pt2", "onnx")  # onnx: through the onnx2torch bridge
    int8_knobs: ClassVar[tuple[str, ...]] = ("max_float_layers", "rounding", "rounding_iters", "equalization")  # the shared int8 flow (int8_under_budget)
    int8_from_torch: ClassVar[bool] = True
    needs_module: ClassVar[bool] = False  # an ONNX source is bridged to torch in export()
    bridges_onnx: ClassVar[bool] = True  # Target.refuses names the bridge install when it is missing
    derives_reduced: ClassVar[bool] = False  # PT2E quantises the torch program, not the .pte
    fuse_clamps: ClassVar[bool] = True  # int8: quantise conv/linear+ReLU6 after the clamp (False: stock quantizer)

    def check(self, source: Source, cfg: DeployConfig, precision: str) -> None:
        if source.module is None:
            from ..sources.bridge import require

            require()  # an ONNX file needs the bridge: MissingExtraError naming the install command

    def export(self, source: Source, out_dir: Path, cfg: DeployConfig, precision: str = "fp32",
               base: Artifact | None = None) -> Built:
        import torch

        from ..sources.bridge import bridge_notes, torch_source

        # an ONNX file as a torch module (the bridge); int8's budget is still judged against ``source``
        torch_src = torch_source(source)
        args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in torch_src.example_inputs)
        ep = self._export(torch_src, args)
        if precision != "int8":
            built = self._build(torch_src, out_dir, cfg, ep, args, precision)[0]
        else:
            calib = calibration_samples(source, cfg)
            def from_source(src: Source, work: Path) -> Callable[[list[str]], Any]:
                ep_r = self._export(src, args)  # the rounded model's own graph (PT2E folds its batch norms)
                return lambda excluded: self._build(src, out_dir, cfg, ep_r, args, "int8", calib, excluded)

            built = self.int8_under_budget(source, out_dir, cfg, source.digest,
                                           lambda excluded: self._build(torch_src, out_dir, cfg, ep, args, "int8", calib,
                                                                        excluded), from_source)
        if torch_src is source:
            return built
        return dataclasses.replace(built, notes=(*bridge_notes(torch_src), *built.notes),
                                   config={**built.config, "bridge": "onnx2torch"},
                                   tools=(*built.tools, "onnx2torch", "onnxslim"))

    def _build(self, source: Source, out_dir: Path, cfg: DeployConfig, ep: Any, args: tuple, precision: str,
               calib: list | None = None, excluded: Sequence[str] = ()) -> tuple[Built, list[dict[str, Any]]]:
        """The .pte at ``precision``; int8 keeps the conv/linear nodes named in ``excluded`` in
        float. What was built and (int8) the per-layer attribution, worst first."""
        notes: list[str] = ["static shapes: the .pte takes exactly the example input shapes (batch 1)"]
        config: dict[str, Any] = {"backend": "xnnpack", "precision": precision}
        layers: list[dict[str, Any]] = []
        if precision == "int8":
            assert calib is not None
            bias_correction = bool(getattr(cfg, "bias_correction", True))
            self.say(f"PT2E: calibrating on {len(calib)} samples" + (", correcting biases" if bias_correction else ""))
            ep, fused, kept, corrected, layers = self._quantize(source, ep, args, calib, bias_correction, excluded)
            config.update({"quantizer": "XNNPACKQuantizer" + (" + conv/linear-clamp fusion" if self.fuse_clamps else ""),
                           "per_channel": True, "calibration_samples": len(calib), "fused_clamps": fused,
                           "kept_float": list(kept), "bias_corrected_layers": corrected})
            notes.append(f"PT2E int8 (symmetric, per-channel weights); {fused} conv/linear+clamp (ReLU6) "
                         f"patterns quantised after the clamp; biases corrected in {corrected} layer(s)"
                         + (f"; kept in float for the accuracy budget: {', '.join(kept)}" if kept else ""))
        edge = self._lower(source, ep)
        delegation = delegation_summary(edge.exported_program())
        config["delegation"] = delegation
        notes.append(_delegation_note(delegation))
        try:
            with _quiet():
                program = edge.to_executorch()
        except Exception as e:
            raise UnsupportedError(f"ExecuTorch could not serialise {source.name}: {first_line(e)}",
                                   hint="an op without an ExecuTorch kernel; see the not-delegated ops") from None
        (out_dir / MODEL_FILE).write_bytes(program.buffer)
        inputs = tuple(s.model_copy(update={"shape": tuple(int(d) for d in a.shape)})
                       for s, a in zip(source.inputs, source.example_inputs))
        outputs = tuple(s.model_copy(update={"shape": tuple(1 if not isinstance(d, int) else d for d in s.shape)})
                        for s in source.outputs)
        details: dict[str, Any] = {}
        if precision == "int8":
            from ..quant import weight_attribution

            details["quantization"] = weight_attribution(layers, "PT2E observers", config["calibration_samples"],
                                                         {"layers": config["bias_corrected_layers"]})
        return Built(files=(MODEL_FILE,), inputs=inputs, outputs=outputs, stage=f"executorch.xnnpack.{precision}",
                     config=config, tools=("torch", "executorch", "torchao"), notes=tuple(notes), details=details), layers

    @staticmethod
    def _export(source: Source, args: tuple) -> Any:
        import torch

        try:
            with _quiet():
                return torch.export.export(source.module, args)
        except Exception as e:
            raise UnsupportedError(f"torch.export could not export {source.name} for ExecuTorch: {first_line(e)}",
                                   hint="make the model torch.export-able (no data-dependent control flow)") from None

    def _quantize(self, source: Source, ep: Any, args: tuple, calib: list, bias_correction: bool = True,
                  excluded: Sequence[str] = ()) -> tuple[Any, int, tuple[str, ...], int, list[dict[str, Any]]]:
        import torch
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = _clamp_quantizer(self.fuse_clamps, excluded)
        try:
            with _quiet(), torch.no_grad():
                m = prepare_pt2e(ep.module(), quantizer)
                from ..quant.pt2e import calibrate_and_correct, weight_report

                if bias_correction:
                    corrected = calibrate_and_correct(m, calib)
                else:
                    for sample in calib:
                        m(*[torch.from_numpy(np.ascontiguousarray(a)) for a in sample])
                    corrected = 0
                layers = weight_report(m)
                m = convert_pt2e(m)
                qep = torch.export.export(m, args)
        except Exception as e:
            raise UnsupportedError(f"PT2E int8 quantisation failed for {source.name}: {first_line(e)}",
                                   hint="build the fp32 artifact only (drop --quantize int8)") from None
        return qep, quantizer.fused, quantizer.kept_float, corrected, layers

    @staticmethod
    def _lower(source: Source, ep: Any) -> Any:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
            XnnpackPartitioner,
        )
        from executorch.exir import to_edge_transform_and_lower

        try:
            with _quiet():
                return to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
        except Exception as e:
            ops = _ops_named_in(str(e), ep)
            raise UnsupportedError(
                f"ExecuTorch could not lower {source.name}: {first_line(e)}" + (f" (ops: {ops})" if ops else ""),
                hint="replace the named op or module with a core ATen equivalent",
                ops=ops) from None

    def runner(self, artifact: Artifact, threads: int = 1) -> Runner:
        return _NamedRunner(artifact, threads=threads)


def _ops_named_in(message: str, ep: Any) -> str:
    """Which of the program's op types (and the modules that call them) an error message names."""
    found = []
    for n in ep.graph.nodes:
        if n.op != "call_function":
            continue
        op = str(n.target)
        if op.split(".")[-2:-1] and op.split(".")[-2] in message or op in message:
            where = (n.meta.get("nn_module_stack") or {})
            mod = list(where.values())[-1][0] if where else n.name
            found.append(f"{op} at {mod}")
    return ", ".join(dict.fromkeys(found))[:400]
