"""Options generated from the typed configs in :mod:`edgeship.config`, so CLI and API cannot drift:
one option per config field (type, default and help from the field), grouped into help panels."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic_core import PydanticUndefined

from ..targets import available_targets  # importing the registry adds the targets' Options to DeployConfig

__all__ = ["JSON_OPT", "MAIN_PANEL", "METAVARS", "OTHER_PANEL", "PANELS", "TARGET_PANEL", "options_from"]

JSON_OPT = typer.Option(False, "--json", metavar="", help="print exactly one JSON document on stdout")

MAIN_PANEL = "Options"  # typer's default panel: a command's own options (--json, --config) join it
OTHER_PANEL = "Other options"

# field name -> help panel, most used first (panels are shown in this order); a field not named here
# goes to a per-target panel when its name starts with a target's name, else to OTHER_PANEL
PANELS: dict[str, tuple[str, ...]] = {
    MAIN_PANEL: ("targets", "quantize", "precision", "out", "overwrite", "dry_run", "cache", "benchmark", "benchmark_all",
                 "baseline", "threads", "runs", "top", "top_k", "threshold"),
    "Model input": ("input_shape", "input_dtype", "input_range", "preprocess", "labels", "weights", "allow_pickle"),
    "Pruning": ("importance", "round_to"),
    "Fine-tuning": ("train_data", "eval_data", "epochs", "distill", "temperature", "alpha", "lr", "batch_size",
                    "train_samples", "seed"),
    "Quantization (int8, fp16)": ("method", "calibration", "calib", "calib_samples", "eval", "eval_samples",
                                  "max_drop", "max_float_layers", "bias_correction", "equalization", "rounding",
                                  "rounding_iters", "task"),
    "Verification": ("samples", "atol", "rtol", "min_cosine"),
    "Export": ("opset", "slim", "dynamic_batch", "isolate"),
    "Benchmark": ("bench_threads", "bench_runs", "bench_seconds", "bench_rounds", "max_seconds", "auto_baseline", "cpus", "warmup", "rounds", "fresh_input",
                  "batch_sizes", "timeout", "register_target"),
    "Roofline": ("profile", "roofline"),
    "Release": ("package", "release_version", "sign_key"),
}
TARGET_PANEL = "Target options"
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}
_PANEL_ORDER = [*PANELS, TARGET_PANEL, OTHER_PANEL]
_RANK = {name: i for names in PANELS.values() for i, name in enumerate(names)}

# placeholders shown in --help; otherwise one from the field's type (TEXT, INTEGER, FLOAT, PATH)
METAVARS = {
    "targets": "TARGET,...", "quantize": "PRECISION,...", "input_shape": "SHAPE", "input_dtype": "DTYPE",
    "input_range": "LO,HI", "bench_threads": "N,...", "threads": "N,...", "cpus": "CPU,...", "batch_sizes": "N,...",
    "register_target": "NAME=MOD:CLASS", "out": "DIR", "calib": "DATA", "eval": "DATA", "labels": "FILE",
    "weights": "FILE", "profile": "PROFILE", "baseline": "MODEL", "preprocess": "SPEC", "top_k": "N",
    "threshold": "P", "train_data": "DATA", "eval_data": "DATA", "latency": "RUNTIME,...",
}


def _panel(name: str) -> str:
    if name in _PANEL_OF:
        return _PANEL_OF[name]
    return TARGET_PANEL if name.split("_")[0] in available_targets() else OTHER_PANEL


def _metavar(name: str, ann: Any, default: Any) -> str:
    if name in METAVARS:
        mv = METAVARS[name]
        is_list = isinstance(default, list) or typing.get_origin(ann) is list
        return mv if is_list or not mv.endswith(",...") else mv[:-4]
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) is typing.Literal:
        choices = "|".join(map(str, args))
        return choices if len(choices) <= 20 else name.upper()
    if isinstance(default, list) or typing.get_origin(ann) is list:
        return "TEXT,..."
    text = str(ann)
    if "Path" in text:
        return "PATH"
    for t, label in ((int, "INTEGER"), (float, "FLOAT")):
        if ann is t or args == [t]:
            return label
    return "TEXT"


def _help(field: Any) -> str:
    """The field's description, plus its choices when the description does not name them all."""
    text = field.description or ""
    if typing.get_origin(field.annotation) is typing.Literal:
        choices = [str(c) for c in typing.get_args(field.annotation)]
        if not all(c in text for c in choices):
            text += f" (one of: {', '.join(choices)})"
    return text


def options_from(model: type, skip: tuple[str, ...] = (), panels: dict[str, str] | None = None) -> Callable:
    """Add one CLI option per config field (type, default, help from the field) to a command.

    Options are grouped into help panels (:data:`PANELS`, or ``panels`` for this command's own
    meaning of a shared name), the most used first. The wrapped command receives the collected
    values as ``options: dict``.
    """

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.name != "options"]
        taken = {p.name for p in own}
        added: list[tuple[str, inspect.Parameter]] = []
        names: list[str] = []
        for name, field in model.model_fields.items():
            if name in skip or name in taken:
                continue
            flag = "--" + name.replace("_", "-")
            ann = field.annotation
            default = field.default if field.default is not PydanticUndefined else field.default_factory()
            shown: Any = default not in (None, [])
            if isinstance(default, list) and default:
                shown = ",".join(map(str, default))
            panel = (panels or {}).get(name) or _panel(name)
            if ann is bool:
                decl: tuple[str, ...] = (f"{flag}/--no-{name.replace('_', '-')}",)
                metavar = ""  # a flag pair takes no value
            else:
                decl = (flag,)
                metavar = _metavar(name, ann, default)
            if isinstance(default, list):
                ann, default = Optional[list[str]], None  # noqa: UP045 - typer reads this annotation; repeated flag; None means "not given"
            elif isinstance(default, Path) or default is None:
                ann = Optional[Path] if "Path" in str(field.annotation) else Optional[str]  # noqa: UP045 - for typer
            opt = typer.Option(default, *decl, help=_help(field), show_default=shown, metavar=metavar,
                               rich_help_panel=None if panel == MAIN_PANEL else panel)
            added.append((panel, inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)))
            names.append(name)
        # --help lists parameters in signature order: the arguments, the main options, the command's own
        # options (--config, --json), then the other panels
        added.sort(key=lambda pp: (_PANEL_ORDER.index(pp[0]), _RANK.get(pp[1].name, len(_RANK))))
        kw = inspect.Parameter.KEYWORD_ONLY
        arguments = [p.replace(kind=kw) for p in own if isinstance(p.default, typer.models.ArgumentInfo)]
        own_options = [p.replace(kind=kw) for p in own if not isinstance(p.default, typer.models.ArgumentInfo)]
        main = [p for panel, p in added if panel == MAIN_PANEL]
        rest = [p for panel, p in added if panel != MAIN_PANEL]
        ctx_param = inspect.Parameter("_edgeship_ctx", kw, annotation=typer.Context)
        params = arguments + main + own_options + rest + [ctx_param]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = kwargs.pop("_edgeship_ctx", None)
            options = {n: kwargs.pop(n) for n in names if n in kwargs}
            # only what the user gave: defaults stay with the config (and a --config file's values win)
            options = {k: v for k, v in options.items() if v is not None and not (
                ctx is not None and getattr(ctx.get_parameter_source(k), "name", "") == "DEFAULT")}
            return fn(*args, options=options, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return deco
