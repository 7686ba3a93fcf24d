"""Quantisation under an accuracy budget (ONNX Runtime recipes).

``quantize_onnx(source, fp32_artifact, out_dir, cfg, precision)`` writes an int8 or fp16 ONNX model:

1. the recipe is chosen from the model's structure (``--method auto``): static QDQ, per-channel
   int8 weights and uint8 activations for convolutional models, calibrated on data kept apart from
   evaluation (``--calibration minmax|percentile|entropy``); dynamic per-channel int8 for
   MatMul-heavy models; fp16; or ``weight-only`` (int8 weights, float compute);
2. fidelity against fp32 on the evaluation set: top-1 / top-5 agreement, KL, cosine, output SQNR,
   and label accuracy when the evaluation data carries labels;
3. when the budget is missed (``--max-drop``: top-1 agreement, or label accuracy, may fall by at most
   this much; other models: cosine >= ``--min-cosine``), the tensor-level report ranks the weighted
   layers by the error they inject, and the most harmful are kept in float one by one, each step
   measured (fidelity and a quick 1-thread latency), until the budget holds;
4. a model that still misses the budget is never written: ValidationError naming the worst layers.

The report (``quantization.json`` in the artifact folder) has, per weight tensor and per
activation, scale / zero point, MSE and SQNR; per layer, the injected error with node and source
module names; the budget steps; and the compression ratio. Every int8 artifact, of any target,
carries its per-layer errors compactly in ``details.quantization.layers`` (:func:`layer_errors`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._util import join_samples
from ..errors import EdgeshipError, FormatError, UnsupportedError, first_line
from ..fidelity import cosine_sqnr, source_is_classifier, task_measure
from ..formats.onnx import (  # noqa: F401 - QUANTISED_OPS, already_quantised re-exported
    QUANTISED_OPS,
    WEIGHT_ONLY_SESSION_CONFIG,
    OnnxRunner,
    all_nodes,
    already_quantised,
    module_path,
    requantising_refused,
    subgraphs,
)  # noqa: F401 - QUANTISED_OPS, already_quantised re-exported
from .flow import STEP_KEYS, Budget, closer

if TYPE_CHECKING:
    from ..artifact import Artifact
    from ..config import DeployConfig
    from ..sources import Source

REPORT_FILE = "quantization.json"


def _session(path: Path, threads: int, config: dict[str, str] | None = None) -> Any:
    """An ONNX Runtime session from the one session factory; a quantised graph ONNX Runtime refuses
    is an UnsupportedError (the artifact is not written), not a crash."""

    try:
        return OnnxRunner(path, threads=threads, session_config=config).session
    except FormatError as e:
        raise UnsupportedError(f"the quantised model does not load in ONNX Runtime: {e.message}",
                               hint="try another --method, or keep the fp32 artifact") from None


def run_model(path: Path, names: list[str], samples: list[tuple[np.ndarray, ...]], batch: int,
              config: dict[str, str] | None = None, source: Source | None = None) -> list[np.ndarray]:
    """Outputs over all samples (concatenated along axis 0), batched when the batch axis is dynamic;
    a stream's (:class:`edgeship.data.StreamSamples`) call after call with the model's own state
    carried (``source``: whose task and inputs say how)."""
    from ..data import StreamSamples, run_streams

    s = _session(path, 0, config)
    if isinstance(samples, StreamSamples) and source is not None:
        out_names = [o.name for o in s.get_outputs()]
        got = run_streams(lambda xs: s.run(None, dict(zip(names, xs))), samples, source.task, source.inputs, out_names)
        return [np.concatenate([np.atleast_1d(g[k]) for g in got]) for k in range(len(got[0]))]
    outs: list[list[np.ndarray]] = []
    for i in range(0, len(samples), batch):
        chunk = samples[i:i + batch]
        res = s.run(None, {n: join_samples(x[k] for x in chunk) for k, n in enumerate(names)})
        outs.append(res)
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


def weight_attribution(layers: list[dict[str, Any]], calibration: str, samples: int,
                       bias_correction: dict[str, Any], method: str = "static") -> dict[str, Any]:
    """``details.quantization`` of an int8 whose per-layer attribution is its weights' SQNR
    (tflite, executorch, openvino, coreml): ``layers`` worst first, as each backend's
    ``weight_report`` returns them."""
    return {"method": method, "calibration": {"method": calibration, "samples": samples},
            "bias_correction": bias_correction, "attribution": "weight SQNR per layer",
            "layers_measured": len(layers), "most_sensitive_layers": layers[:5], "layers": layer_errors(layers)}


LAYER_ERROR_KEYS = ("node", "module", "op", "weight_sqnr_db", "output_sqnr_db", "injected_db")


def layer_errors(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every layer's quantisation error, worst first, compact (``details.quantization.layers``, which
    the report draws along the network): node, module, op and whichever of weight_sqnr_db,
    output_sqnr_db (dB, higher is better) and injected_db (dB the layer's own quantisation costs)
    the backend measured; ``by_technique`` (onnx static int8): the output SQNR after each
    technique (plain, bias correction, equalisation, learned rounding), so a user sees what
    fixed what."""
    out = []
    for r in layers:
        row = {k: r[k] for k in LAYER_ERROR_KEYS[:3] if k in r}
        row.update({k: round(float(r[k]), 3) for k in LAYER_ERROR_KEYS[3:]
                    if isinstance(r.get(k), (int, float)) and np.isfinite(r[k])})
        if isinstance(r.get("by_technique"), dict):
            row["by_technique"] = {t: round(float(v), 2) for t, v in r["by_technique"].items()
                                   if isinstance(v, (int, float)) and np.isfinite(v)}
        out.append(row)
    return out


QDQ_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (the axis attribute) needs opset 13


def _at_qdq_opset(path: Path, model: Any, work: Path, report: dict[str, Any]) -> Path:
    """The fp32 model (``model``, loaded from ``path``) at an opset the quantised graph can be
    written in: an older model (the public model zoo's opset 9 to 12) is converted with onnx's
    version converter first, and the report says so; its outputs are compared with the original's
    like every step's."""
    import onnx
    from onnx import version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), QDQ_OPSET)
    if opset >= QDQ_OPSET:
        return path
    try:
        upgraded = version_converter.convert_version(model, QDQ_OPSET)
    except Exception as e:  # noqa: BLE001 - the converter's own message is the finding
        raise UnsupportedError(f"the model is at ONNX opset {opset}; quantising needs opset {QDQ_OPSET} and onnx's "
                               f"version converter failed: {str(e).strip().splitlines()[0][:300]}",
                               hint=f"export the model again at opset {QDQ_OPSET} or newer") from None
    out = work / f"opset{QDQ_OPSET}.onnx"
    onnx.save(upgraded, str(out))
    report["opset_upgrade"] = {"from": opset, "to": QDQ_OPSET}
    return out


def quick_latency_ms(path: Path, names: list[str], sample: tuple[np.ndarray, ...], runs: int = 100,
                     config: dict[str, str] | None = None) -> float:
    """1-thread warm p50 in this process: cheap, for comparing the budget steps with each other."""
    s = _session(path, 1, config)
    feeds = dict(zip(names, sample))
    for _ in range(5):
        s.run(None, feeds)
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        s.run(None, feeds)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e3)


def quantize_onnx(source: Source, fp32: Artifact, out_dir: Path, cfg: DeployConfig, precision: str,
                  progress: Any = None) -> tuple[Path, dict[str, Any]]:
    """Write ``out_dir/model.onnx`` at ``precision`` (int8 or fp16) within the budget; return it and the report.

    ONNX Runtime's (or onnx's) own code failing on the model is a fact about this cell, never an
    internal error: the quantiser's failures take the fallback ladder
    (:class:`edgeship.quant.onnxruntime_recipes.Fallback`); whatever still fails is an
    UnsupportedError naming the cell, what was being done, and the node and op when known."""
    from . import onnxruntime_recipes as recipes

    cell = f"onnx {precision} of {source.name}"
    phase = ["running the fp32 model"]

    def say(msg: str) -> None:
        phase[0] = msg
        if progress is not None:
            progress(msg)

    try:
        return _quantize_onnx(source, fp32, out_dir, cfg, precision, say, cell)
    except EdgeshipError:
        raise
    except Exception as e:
        if not recipes.from_library(e):
            raise  # edgeship's own bug: shown as one
        c = recipes.culprit(e)
        at = f" at node {c['node']}" + (f" ({c['op']})" if c.get("op") else "") if c.get("node") else ""
        raise UnsupportedError(f"{cell}: ONNX Runtime failed while {phase[0]}{at}: {first_line(e, 300)}",
                               hint="this cell is not built; keep the fp32 artifact, or try another --method "
                                    "(static, dynamic, weight-only)", node=c.get("node"), op=c.get("op")) from None


def _quantize_onnx(source: Source, fp32: Artifact, out_dir: Path, cfg: DeployConfig, precision: str, say: Any,
                   cell: str) -> tuple[Path, dict[str, Any]]:
    import onnx

    from ..data import calibration_samples, distinct_sources
    from . import onnxruntime_recipes as recipes

    names = [i.name for i in fp32.inputs]
    dynamic = all(i.shape and not isinstance(i.shape[0], int) for i in fp32.inputs)
    batch = 16 if dynamic else 1
    out = out_dir / "model.onnx"
    model = onnx.load(str(fp32.model_path))
    method = cfg.method
    if precision == "fp16":
        method = "fp16"
    elif method == "auto":
        method = recipes.choose_method(model)
    elif method == "fp16":
        raise UnsupportedError("--method fp16 builds an fp16 artifact: use --quantize fp16")
    found = already_quantised(model)
    if found:
        raise requantising_refused(source.name, found, precision)
    fb = recipes.Fallback(cell, say)

    # the source's outputs on the evaluation set: computed once, shared with verify (every figure once)
    eval_samples, labels, refs = source.evaluation(cfg.eval, cfg.eval_samples)
    ref = [np.concatenate([np.atleast_1d(r[k]) for r in refs]) for k in range(len(refs[0]))]
    budget = Budget(ref, cfg, source_is_classifier(ref[0], source, cfg, truth=labels), labels, say,
                    task_measure(source, eval_samples))
    report: dict[str, Any] = {"precision": precision, "method": method, "max_drop": cfg.max_drop,
                              "min_cosine": cfg.min_cosine, "eval_samples": len(eval_samples),
                              "eval_data": cfg.eval or f"default: {source.inputs_origin('evaluation')}",
                              "eval_sources": distinct_sources(cfg.eval, source, "evaluation", len(eval_samples)),
                              "eval_labels": labels is not None, "steps": budget.steps}
    work = Path(tempfile.mkdtemp(prefix="edgeship-quant-"))
    try:
        lat_sample = eval_samples[0]
        fp32_ms = quick_latency_ms(fp32.model_path, names, lat_sample)
        report["fp32"] = {"size_bytes": fp32.model_path.stat().st_size, "p50_ms_1thread": fp32_ms}
        src_path = _at_qdq_opset(fp32.model_path, model, work, report)


        sess_cfg = WEIGHT_ONLY_SESSION_CONFIG if method == "weight-only" else None

        def calibration_data(method_name: str) -> list[tuple[np.ndarray, ...]]:
            samples = calibration_samples(source, cfg)
            report["calibration"] = {"method": method_name, "samples": len(samples),
                                     "sources": distinct_sources(cfg.calib, source, "calibration", len(samples)),
                                     "data": cfg.calib or f"default: {source.inputs_origin('calibration')}"}
            return samples

        said = [0]  # fallbacks already in a step's note

        def step(excluded: list[str], note: str) -> dict[str, Any]:
            if len(fb.taken) > said[0]:  # what the fallback ladder did to build this candidate
                note += "; ONNX Runtime's quantiser failed, so: " + "; ".join(t["done"] for t in fb.taken[said[0]:])
                said[0] = len(fb.taken)
            return budget.measure(run_model(out, names, eval_samples, batch, sess_cfg, source), excluded, note,
                                  quick_latency_ms(out, names, lat_sample, config=sess_cfg), out.stat().st_size)

        if method == "fp16":
            say("converting to fp16")
            recipes.fp16(src_path, out)
            step([], "fp16 weights and compute, float32 I/O")
        elif method == "weight-only":
            say("weight-only (per-channel int8 weights, float compute)")
            dws: dict[str, Any] = {}
            _, wstats = recipes.weight_only_int8(src_path, out, dweights=dws)
            report["tensors"] = {"weights": wstats, "activations": []}
            step([], f"int8 weights ({len(wstats)} tensors, per-channel), float compute")
            shifts: dict[str, Any] = {}
            if cfg.bias_correction:
                cal_samples = calibration_data("input means for bias correction")
                say(f"bias correction on {len(cal_samples)} calibration samples")
                means = recipes.input_means(src_path, work, names, cal_samples, batch)
                shifts = recipes.bias_shifts(src_path, None, means, dweights=dws)
                recipes.weight_only_int8(recipes.apply_bias_shifts(src_path, work / "bc.onnx", shifts), out)
                step([], f"+ bias correction ({len(shifts)} layers)")
                report["bias_correction"] = {"layers": len(shifts)}
            users = {n.input[1]: n.name for n in recipes.weighted_nodes(model)}

            def weight_only(excluded: list[str], note: str) -> dict[str, Any]:
                base = recipes.apply_bias_shifts(src_path, work / "bc.onnx", shifts, exclude=excluded) if shifts else src_path
                recipes.weight_only_int8(base, out, exclude=excluded)
                return step(excluded, note)

            budget.keep_worst_in_float([(users[w["tensor"]], f"{users[w['tensor']]}, {w['sqnr_db']:.1f} dB weights")
                                        for w in sorted(wstats, key=lambda w: w["sqnr_db"]) if w["tensor"] in users],
                                       weight_only)
        elif method == "static":
            cal_samples = calibration_data(cfg.calibration)
            pre = recipes.preprocess(src_path, work / "pre.onnx")
            say(f"calibrating on {len(cal_samples)} samples ({cfg.calibration})")
            cache = recipes.calibrate(pre, work, names, cal_samples, cfg.calibration, batch)
            say("quantising (static QDQ, per-channel)")
            recipes.static_qdq(pre, out, cache, cfg.calibration, fallback=fb)
            _check_something_quantised(out, pre, cell)
            step([], "all weighted layers int8 (plain QDQ)")
            profile_samples = eval_samples[:PROFILE_SAMPLES]
            by_technique: dict[str, dict[str, float]] = {}

            def profile(technique: str, float_model: Path) -> None:
                """Every layer's output SQNR in the int8 just built (``out``) against ``float_model``."""
                (work / "profile").mkdir(exist_ok=True)
                tr = _report_or_none(lambda: recipes.tensor_report(float_model, out, work / "profile", names, profile_samples,
                                                                   batch), f"per-layer profile after {technique}", report, say)
                if tr is None:
                    return
                by_technique[technique] = {r["node"]: r["output_sqnr_db"]
                                           for r in recipes.attribute(onnx.load(str(float_model)), tr)}

            profile("plain", pre)
            shifts: dict[str, Any] = {}
            means: dict[str, Any] = {}
            if cfg.bias_correction:
                say("bias correction")
                means = recipes.input_means(pre, work, names, cal_samples, batch)
                shifts = recipes.bias_shifts(pre, out, means)
                recipes.static_qdq(recipes.apply_bias_shifts(pre, work / "pre-bc.onnx", shifts), out, cache,
                                   cfg.calibration, fallback=fb)
                step([], f"+ bias correction ({len(shifts)} layers)")
                report["bias_correction"] = {"layers": len(shifts)}
                profile("bias correction", pre)
            pre, cache, means, shifts = _equalization(pre, work, names, cal_samples, batch, cache, cfg, means, shifts,
                                                      out, budget, step, report, say, profile, fallback=fb)
            base = pre  # the float model the int8 is made from: pre, or its weights rounded the learned way
            if cfg.rounding != "nearest" and not budget.climbs(cfg.rounding):
                report["rounding"] = budget.not_needed(cfg.rounding)
            elif cfg.rounding != "nearest":
                base, shifts = _learned_rounding(pre, work, names, cal_samples, batch, cache, cfg, means, shifts, out,
                                                 budget, step, report, say, profile, fallback=fb)
            shutil.copy(out, work / "all-int8.onnx")
            say("tensor-level report")
            t_samples = eval_samples[: min(32, len(eval_samples))]
            tr = _report_or_none(lambda: recipes.tensor_report(pre, work / "all-int8.onnx", work, names, t_samples, batch),
                                 "tensor-level report", report, say) or {"weights": [], "activations": [], "_acts": {}}
            ranking = recipes.attribute(onnx.load(str(pre)), tr)
            for r in ranking:  # what each technique did to this layer's output
                r["by_technique"] = {t: db[r["node"]] for t, db in by_technique.items() if r["node"] in db}
            report["tensors"] = {"weights": tr["weights"], "activations": tr["activations"]}
            report["layers"] = ranking
            report["techniques"] = {"measured": list(by_technique), "samples": len(profile_samples),
                                    "figure": "each layer's output SQNR (dB) against the float model, after each "
                                              "technique was applied in turn (kept or not)"}

            def static(excluded: list[str], note: str) -> dict[str, Any]:
                floats = recipes.float_weights(base, pre, excluded, work / "pre-float.onnx") if base != pre else pre
                model_ = recipes.apply_bias_shifts(floats, work / "pre-bc.onnx", shifts, exclude=excluded) if shifts else floats
                recipes.static_qdq(model_, out, cache, cfg.calibration, exclude=excluded, fallback=fb)
                return step(excluded, note)

            _elementwise_in_float(onnx.load(str(pre)), fb, budget, static, say, report)
            budget.keep_worst_in_float([(r["node"], f"{r['node']} ({r['module'] or r['op']})") for r in ranking], static)
        elif method == "dynamic":
            pre = recipes.preprocess(src_path, work / "pre.onnx")
            say("quantising (dynamic, per-channel)")
            recipes.dynamic_int8(pre, out, fallback=fb)
            _check_something_quantised(out, pre, cell)
            step([], "dynamic int8 MatMul/Gemm weights, per-channel")

            def dynamic_(excluded: list[str], note: str) -> dict[str, Any]:
                recipes.dynamic_int8(pre, out, exclude=excluded, fallback=fb)
                return step(excluded, note)

            if not budget.last["within_budget"] and cfg.max_float_layers > 0:
                ranking = _dynamic_ranking(pre, work, names, calibration_data("each layer quantised alone"), batch, say,
                                           original=model, fallback=fb)
                report["layers"] = ranking
                report["attribution"] = ATTRIBUTION_ALONE
                budget.keep_worst_in_float([(r["node"], _layer_label(r)) for r in ranking], dynamic_)
        else:
            raise UnsupportedError(f"unknown quantisation method {method!r}",
                                   hint="choose auto, static, dynamic or weight-only")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if fb.taken:
        report["fallbacks"] = fb.taken
    final = budget.last
    report["chosen"] = len(budget.steps) - 1
    report["rung"] = budget.rung_reached()
    report["compression_ratio"] = report["fp32"]["size_bytes"] / max(final["size_bytes"], 1)
    if not final["within_budget"]:
        worst = ", ".join(_layer_label(r) for r in report.get("layers", [])[:3])
        raise budget.missed(f"{precision} {method} quantisation", worst,
                            (", give better --calib data, or try --calibration "
                             + "/".join(c for c in recipes.CALIBRATIONS if c != cfg.calibration)) if method == "static" else "")
    (out_dir / REPORT_FILE).write_text(json.dumps(_without_timings(report), indent=1, default=_json_default) + "\n")
    return out, report


#: measured on this machine at build time: in artifact.json (details.quantization), not in the
#: artifact's files, whose bytes (and digest) must be the same on every build of the same inputs
TIMING_KEYS = ("p50_ms_1thread", "latency_vs_first_step", "seconds")


def _without_timings(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _without_timings(v) for k, v in doc.items() if k not in TIMING_KEYS}
    if isinstance(doc, list):
        return [_without_timings(v) for v in doc]
    return doc


def _equalization(pre: Path, work: Path, names: list[str], cal_samples: list[Any], batch: int, cache: Path,
                  cfg: DeployConfig, means: dict[str, Any], shifts: dict[str, Any], out: Path, budget: Budget,
                  step: Any, report: dict[str, Any], say: Any,
                  profile: Any, fallback: Any = None) -> tuple[Path, Path, dict[str, Any], dict[str, Any]]:
    """Static int8 of the equalised float model (cross-layer equalisation, then its own calibration
    and bias correction), measured as a budget step when :func:`edgeship.quant.equalize.plan` says
    it is worth it, and kept when closer to fp32 (or asked for). Returns the float model to go on
    from, its calibration cache, input means and bias shifts."""
    import onnx

    from . import onnxruntime_recipes as recipes
    from .equalize import OFF, choice, note, plan

    if cfg.equalization == "off":
        report["equalization"] = dict(OFF)
        return pre, cache, means, shifts
    if not budget.climbs(cfg.equalization):
        report["equalization"] = budget.not_needed(cfg.equalization)
        return pre, cache, means, shifts
    t0 = time.perf_counter()
    eq, rec = recipes.equalize(pre, work / "pre-eq.onnx")
    go, report["equalization"] = plan(cfg, rec, len(recipes.weighted_nodes(onnx.load(str(pre)))))
    if not go:
        return pre, cache, means, shifts
    without = budget.last
    name = note(rec)
    say(name)
    budget.rung = "equalisation"
    (work / "eq").mkdir(exist_ok=True)
    eq_cache = recipes.calibrate(eq, work / "eq", names, cal_samples, cfg.calibration, batch)
    recipes.static_qdq(eq, out, eq_cache, cfg.calibration, fallback=fallback)
    eq_means: dict[str, Any] = {}
    eq_shifts: dict[str, Any] = {}
    if cfg.bias_correction:
        eq_means = recipes.input_means(eq, work / "eq", names, cal_samples, batch)
        eq_shifts = recipes.bias_shifts(eq, out, eq_means)
        recipes.static_qdq(recipes.apply_bias_shifts(eq, work / "eq" / "bc.onnx", eq_shifts), out, eq_cache, cfg.calibration,
                           fallback=fallback)
        name += f" + bias correction ({len(eq_shifts)} layers)"
    keep, report["equalization"] = choice(cfg, report["equalization"], step([], name), without, rec, t0)
    profile("equalisation", eq)
    if keep:
        return eq, eq_cache, eq_means, eq_shifts
    say("cross-layer equalisation did not help here: left out")
    recipes.static_qdq(recipes.apply_bias_shifts(pre, work / "pre-bc.onnx", shifts) if shifts else pre, out, cache,
                       cfg.calibration, fallback=fallback)
    step([], "without equalisation" + (" + bias correction" if shifts else "") + " (equalisation was no closer)")
    return pre, cache, means, shifts


def _learned_rounding(pre: Path, work: Path, names: list[str], cal_samples: list[Any], batch: int, cache: Path,
                      cfg: DeployConfig, means: dict[str, Any], shifts: dict[str, Any], out: Path, budget: Budget,
                      step: Any, report: dict[str, Any], say: Any, profile: Any,
                      fallback: Any = None) -> tuple[Path, dict[str, Any]]:
    """Static int8 with learned rounding (AdaRound), then bias correction on top, each measured as a
    budget step. With ``--rounding auto`` it is kept only when it comes out closer to fp32 than
    nearest rounding did; the choice and every layer's figures go into the report. Returns the
    float model to quantise and its bias shifts."""
    from . import onnxruntime_recipes as recipes
    from .rounding import choice

    best_nearest = budget.last
    budget.rung = "learned rounding"
    t0 = time.perf_counter()
    say(f"learned rounding (AdaRound, {cfg.rounding_iters} steps per layer) on {len(cal_samples)} calibration samples")
    ada, layers = recipes.learned_rounding(pre, work / "pre-ada.onnx", work, names, cal_samples, batch, cfg.rounding_iters,
                                           say=say)
    learned = sum(1 for r in layers if r["kept"] == "learned")
    recipes.static_qdq(ada, out, cache, cfg.calibration, fallback=fallback)
    rec = step([], f"learned rounding ({learned} of {len(layers)} layers)")
    ada_shifts: dict[str, Any] = {}
    if cfg.bias_correction:
        ada_shifts = recipes.bias_shifts(pre, out, means)  # the error against the *original* weights (ada's are on the grid)
        recipes.static_qdq(recipes.apply_bias_shifts(ada, work / "ada-bc.onnx", ada_shifts), out, cache, cfg.calibration,
                           fallback=fallback)
        rec = step([], f"learned rounding + bias correction ({len(ada_shifts)} layers)")
    keep, report["rounding"] = choice(cfg, rec, best_nearest, layers, t0)
    profile("learned rounding", pre)
    if keep:
        return ada, ada_shifts
    say("learned rounding did not help here: nearest rounding kept")
    base = recipes.apply_bias_shifts(pre, work / "pre-bc.onnx", shifts) if shifts else pre
    recipes.static_qdq(base, out, cache, cfg.calibration, fallback=fallback)
    step([], "nearest rounding kept" + (" + bias correction" if shifts else "") + " (learned rounding was no closer)")
    return pre, shifts


#: elementwise arithmetic ONNX Runtime quantises by default: in a normalisation written out as
#: elementwise ops (LayerNorm from jax2tf, as magika has it) its int8 outputs cost the most
ELEMENTWISE = ("Add", "Mul")


def _elementwise_in_float(model: Any, fb: Any, budget: Budget, static: Any, say: Any, report: dict[str, Any]) -> None:
    """When the all-int8 model misses the budget and has elementwise Add/Mul, a budget step with
    them kept in float (weighted layers still int8), kept when closer to fp32 (measured on magika:
    with them int8, 9% of real files keep their label; in float, 100%), else built again without it.
    Keeping weighted layers in float (the next steps) cannot reach these ops."""

    present = sorted({n.op_type for n in model.graph.node} & set(ELEMENTWISE) - set(fb.float_ops))
    if budget.last["within_budget"] or not present or budget.cfg.max_float_layers <= 0:
        return
    before, prev = budget.last, list(fb.float_ops)
    what = "/".join(present)
    say(f"keeping elementwise {what} in float (weighted layers stay int8)")
    fb.float_ops = prev + present
    if closer(static([], f"elementwise {what} kept in float"), before):
        report["elementwise_float"] = present
        return
    fb.float_ops = prev
    static([], f"elementwise {what} int8 again (keeping them in float was no closer)")


def _check_something_quantised(out: Path, fp32: Path, cell: str) -> None:
    """An "int8" in which ONNX Runtime quantised nothing is the float model under another name:
    refused, saying why (Silero VAD keeps its whole network inside an If, whose branches ONNX
    Runtime's quantiser does not enter)."""
    import onnx

    if already_quantised(onnx.load(str(out))):
        return
    model = onnx.load(str(fp32))
    top = sum(1 for n in model.graph.node if n.op_type in WEIGHTED_OR_RECURRENT)
    inside = sum(n.op_type in WEIGHTED_OR_RECURRENT for g in subgraphs(model.graph) for n in all_nodes(g))
    why = (f"its {inside} weighted layer(s) are inside If/Loop/Scan subgraphs, which ONNX Runtime's quantiser does not enter"
           if inside and not top else "it has no op ONNX Runtime's quantiser takes")
    raise UnsupportedError(f"{cell}: ONNX Runtime quantised nothing: {why}; the result would be the fp32 model under an "
                           "int8 name, so it is not built", hint="keep the fp32 artifact (or fp16 where the target offers it)")


WEIGHTED_OR_RECURRENT = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN", "Attention"})


def _report_or_none(build: Any, what: str, report: dict[str, Any], say: Any) -> dict[str, Any] | None:
    """A tensor-level report, or None when ONNX Runtime's qdq_loss_debug fails on the model: the
    report helps rank layers, the int8 stands without it; the failure is said and recorded."""
    from . import onnxruntime_recipes as recipes

    try:
        return build()
    except Exception as e:
        if not recipes.from_library(e):
            raise
        msg = f"{what} skipped: ONNX Runtime's qdq_loss_debug failed: {first_line(e, 300)}"
        say(msg)
        report.setdefault("report_errors", []).append(msg)
        return None




def _layer_label(r: dict[str, Any]) -> str:
    """A ranked layer in words: node, module, and the error its ranking is by (the dB it injects
    for static int8, the model output's SQNR with it alone in int8 for dynamic)."""
    err = f"{r['injected_db']:.1f} dB" if "injected_db" in r else f"{r['output_sqnr_db']:.1f} dB alone"
    return f"{r['node']} ({r['module'] or r['op']}, {err})"


ATTRIBUTION_ALONE = "each layer quantised alone: the SQNR and cosine of the model's output"
RANKING_SAMPLES = 32  # calibration samples each layer's sensitivity is measured on
PROFILE_SAMPLES = 16  # evaluation samples each technique's per-layer error is measured on


def _dynamic_ranking(pre: Path, work: Path, names: list[str], cal_samples: list[Any], batch: int,
                     say: Any, original: Any = None, fallback: Any = None) -> list[dict[str, Any]]:
    """Every weighted layer of a dynamic-int8 model, most sensitive first: the model quantised with
    that layer alone in int8, its output measured against fp32 on the calibration data (never the
    evaluation data). Measured rather than estimated from each layer's local error: in a
    transformer what reaches the output depends on where the layer sits (in all-MiniLM-L6-v2 the
    feed-forward down-projections cost the most). Module names come from ``original`` (the
    exported model) when pre-processing dropped them."""
    import onnx

    from . import onnxruntime_recipes as recipes

    nodes = recipes.weighted_nodes(onnx.load(str(pre)))
    scopes = {n.name: module_path(n) for n in original.graph.node} if original is not None else {}
    samples = cal_samples[:RANKING_SAMPLES]
    ref = run_model(pre, names, samples, batch)
    alone, everyone = work / "alone.onnx", [n.name for n in nodes]
    rows = []
    say(f"measuring each of {len(nodes)} layers quantised alone on {len(samples)} calibration samples")
    t0 = said = time.perf_counter()
    for i, n in enumerate(nodes):
        if time.perf_counter() - said > 15:
            say(f"measured {i} of {len(nodes)} layers")
            said = time.perf_counter()
        recipes.dynamic_int8(pre, alone, exclude=[x for x in everyone if x != n.name], fallback=fallback)
        # judged as the budget judges the model's first output (fidelity.judge): flattened cosine and SQNR
        cos, sqnr = cosine_sqnr(ref[0], run_model(alone, names, samples, batch)[0])
        rows.append({"node": n.name, "op": n.op_type, "module": module_path(n) or scopes.get(n.name),
                     "output_sqnr_db": sqnr if sqnr is not None else float("inf"), "cosine": cos})
    say(f"measured {len(nodes)} layers in {time.perf_counter() - t0:.0f} s")
    rows.sort(key=lambda r: r["output_sqnr_db"])
    return rows


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return str(o)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The part of the report that goes into artifact.json and the manifest."""
    keys = ("precision", "method", "calibration", "bias_correction", "max_drop", "eval_samples", "eval_data", "eval_sources",
            "eval_labels", "chosen", "rung",
            "compression_ratio", "fp32", "opset_upgrade", "attribution", "techniques", "fallbacks", "report_errors",
            "elementwise_float")
    out = {k: report[k] for k in keys if k in report}
    if isinstance(report.get("equalization"), dict):
        out["equalization"] = {k: v for k, v in report["equalization"].items() if k != "per_pair"}
    out["steps"] = [{k: s.get(k) for k in STEP_KEYS} for s in report["steps"]]
    out["most_sensitive_layers"] = [{k: r[k] for k in ("node", "module", "op", "injected_db", "output_sqnr_db") if k in r}
                                    for r in report.get("layers", [])[:5]]
    out["layers"] = layer_errors(report.get("layers", []))
    if isinstance(report.get("rounding"), dict):
        out["rounding"] = {k: v for k, v in report["rounding"].items() if k != "per_layer"}
    return out
