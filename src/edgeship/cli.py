"""The edgeship command line: a thin layer over :mod:`edgeship.api`.

Options come from the typed configs in :mod:`edgeship.config`, so CLI and API cannot drift.
Results go to stdout (a table, or exactly one JSON document with ``--json``); progress, converter
chatter and errors go to stderr. Errors from the error tree exit with their code; anything else is
a bug and shows a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import typer
from pydantic_core import PydanticUndefined
from rich.console import Console
from rich.segment import Segment
from rich.text import Text

from ._util import article, share_text
from ._version import __version__
from .analysis.report import count_text, print_table, size_text
from .bench.config import BenchConfig
from .config import ClassifyConfig, DeployConfig, QuantizeCommandConfig, load_config
from .data import small_evaluation
from .errors import EdgeshipError, InputError, UsageError, printable
from .targets import available_targets  # importing the registry adds the targets' Options to DeployConfig


class SafeConsole(Console):
    """The console every command draws on. Model names, labels, op types and messages come from
    files a user did not write: each segment drawn passes through :func:`~edgeship.errors.printable`
    (no terminal escapes, no control characters), and markup is off unless a call asks for it
    (``markup=True``, its data through ``escape``), so a label like ``[/]`` is text, never markup.
    Styling is given as ``Text`` or ``style=``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        super().__init__(*args, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Any:  # measured as it will be drawn
        return super().render_str(printable(text), **kwargs)

    def render(self, renderable: Any, options: Any = None) -> Any:
        for seg in super().render(renderable, options):
            if seg.control or seg.text.isprintable():
                yield seg
            else:
                yield Segment(printable(seg.text), seg.style)


err_console = SafeConsole(stderr=True)

JSON_OPT = typer.Option(False, "--json", metavar="", help="print exactly one JSON document on stdout")


# ---- options generated from the typed configs ------------------------------------------

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
    import typing

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
    import typing

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


# ---- --help that fits the terminal ------------------------------------------------------

def _help_option_without_placeholder(cmd: Any, ctx: Any, opt: Any) -> Any:
    if opt is not None:
        opt.metavar = ""  # a flag: no <bool> placeholder
    return opt


class _Group(typer.core.TyperGroup):
    def get_help_option(self, ctx: Any) -> Any:
        return _help_option_without_placeholder(self, ctx, super().get_help_option(ctx))


class _Command(typer.core.TyperCommand):
    """A command whose ``--help`` fits the terminal: one panel per help panel (``rich_help_panel``),
    flag names whole (never cut), help text wrapped beside them or, when narrow, below them."""

    def get_help_option(self, ctx: Any) -> Any:
        return _help_option_without_placeholder(self, ctx, super().get_help_option(ctx))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _print_help(self, ctx, SafeConsole(highlight=False))


def _flag_text(p: Any) -> Any:
    from rich.text import Text

    t = Text(no_wrap=True)
    if p.param_type_name == "argument":
        t.append((p.metavar or p.name.upper()) + ("..." if p.nargs != 1 else ""), style="bold cyan")
        return t
    for i, o in enumerate(p.opts):
        t.append((" / " if i else "") + o, style="bold cyan")
    for o in p.secondary_opts:
        t.append(" / " + o, style="bold magenta")
    metavar = p.metavar if p.metavar is not None else ("" if p.is_flag else getattr(p.type, "name", "text").upper())
    if metavar:
        t.append(" " + metavar, style="yellow")
    return t


def _default_text(p: Any) -> str:
    shown = getattr(p, "show_default", None)
    d = p.default
    if shown is False or callable(d):
        return ""
    if isinstance(shown, str):
        return shown
    if p.param_type_name == "option" and p.is_flag:
        return ("on" if d else "off") if p.secondary_opts else ""
    if d is None or d == [] or d == ():
        return ""
    if isinstance(d, (list, tuple)):
        return ",".join(map(str, d))
    return str(getattr(d, "value", d))


def _param_help(p: Any) -> Any:
    from rich.text import Text

    t = Text(getattr(p, "help", None) or "")
    default = _default_text(p)
    if default:
        t.append(f"  [default: {default}]", style="dim")
    if p.required:
        t.append("  [required]", style="dim red")
    return t


def _print_help(cmd: Any, ctx: Any, c: Console) -> None:
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    c.print(Padding(Text(cmd.get_usage(ctx), style="bold"), 1))
    if cmd.help:
        c.print(Padding(Text(inspect.cleandoc(cmd.help)), (0, 1, 1, 1)))
    panels: dict[str, list[Any]] = {}
    for p in cmd.get_params(ctx):
        if getattr(p, "hidden", False):
            continue
        default_panel = "Arguments" if p.param_type_name == "argument" else MAIN_PANEL
        panels.setdefault(getattr(p, "rich_help_panel", None) or default_panel, []).append(p)
    inner = c.width - 4  # panel border and padding
    for name in sorted(panels, key=lambda n: (n != "Arguments", n != MAIN_PANEL)):  # stable: others as they come
        rows = [(_flag_text(p), _param_help(p)) for p in panels[name]]
        flag_width = max(f.cell_len for f, _ in rows)
        grid = Table.grid(padding=(0, 2))
        if flag_width <= min(44, inner * 2 // 5):  # flags beside their help
            grid.add_column(no_wrap=True)
            grid.add_column()
            for f, h in rows:
                grid.add_row(f, h)
        else:  # narrow: each flag on its own line, its help indented below
            grid.add_column()
            for f, h in rows:
                grid.add_row(f)
                grid.add_row(Padding(h, (0, 0, 0, 4)))
        c.print(Panel(grid, title=name, title_align="left", border_style="dim", padding=(0, 1)))


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="edgeship: take a trained model to the edge — converted, verified, measured, packaged.")


# ---- output discipline ----------------------------------------------------------------

@contextlib.contextmanager
def _stdout_reserved() -> Iterator[Any]:
    """Send everything written to stdout (by us or by converters, even natively) to stderr;
    yield a writer for the one real result."""
    sys.stdout.flush()
    real_fd = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(real_fd, "w", buffering=1)
    try:
        yield real
    finally:
        sys.stdout.flush()
        os.dup2(real.fileno(), 1)
        real.close()


def _out_width(real: Any) -> int:
    """The width results are drawn at: COLUMNS, else the terminal's, else 80 (a pipe or a file)."""
    cols = os.environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) > 0:
        return int(cols)
    with contextlib.suppress(OSError, ValueError):
        if real.isatty():
            return os.get_terminal_size(real.fileno()).columns
    return 80


def run_command(as_json: bool, body: Callable[[], tuple[Any, Callable[[Console], None] | None]]) -> None:
    """Run ``body`` -> (json_result, human_printer); map errors to exit codes."""
    code = 0
    with _stdout_reserved() as real:
        out_console = SafeConsole(file=real, width=_out_width(real))
        try:
            result, human = body()
            if as_json:
                real.write(json.dumps(result, indent=2, default=str) + "\n")
            elif human is not None:
                human(out_console)
        except EdgeshipError as e:
            code = e.exit_code
            if not as_json and getattr(e, "human", None) is not None:
                e.human(out_console)  # what was done before the error (deploy: the artifacts written)
            if as_json:
                real.write(json.dumps({"ok": False, "error": e.to_dict()}, indent=2, default=str) + "\n")
            line = f"error: {e.message}" + (f" — {e.hint}" if e.hint else "")
            err_console.print(line, style="bold red", highlight=False, markup=False, soft_wrap=True)
        except KeyboardInterrupt as e:
            code = 130
            err_console.print(str(e) or "interrupted: nothing half-written was left in the output folder",
                              highlight=False, markup=False, soft_wrap=True)
        except Exception:  # a bug: show it
            code = 1
            err_console.print(traceback.format_exc(), highlight=False, end="", soft_wrap=True)
            err_console.print(Text.assemble(("internal error", "bold red"), f" in edgeship {__version__}: this is a "
                                            "bug, please report it with the traceback above"))
            if as_json:
                real.write(json.dumps({"ok": False, "error": {"type": "InternalError", "exit_code": 1,
                                                              "message": traceback.format_exc(limit=1).strip()}}) + "\n")
    if code:
        raise typer.Exit(code)


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[str], None]]:
    """A spinner on stderr (a line per step when stderr is not a terminal); yields the update function."""
    status = err_console.status("starting", spinner="dots")
    status.start()

    def update(msg: str) -> None:
        status.update(msg)
        if not err_console.is_terminal:
            err_console.print(f"· {msg}", highlight=False)

    try:
        yield update
    finally:
        status.stop()


# ---- commands ---------------------------------------------------------------------------

def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Python warnings the CLI process shows, made printable like everything else it prints (a
    library's warning may quote a name from the file it read)."""
    text = printable(warnings.formatwarning(message, category, filename, lineno, line))
    with contextlib.suppress(OSError, ValueError):
        (file or sys.stderr).write(text)


@app.callback(invoke_without_command=True)
def main(version: bool = typer.Option(False, "--version", metavar="", help="print the version and exit"),
         debug: bool = typer.Option(False, "--debug", metavar="",
                                    help="show full tracebacks, also from the isolated child processes")) -> None:
    if debug:
        os.environ["EDGESHIP_DEBUG"] = "1"  # read here and by the child processes, which inherit it
    if version:
        typer.echo(f"edgeship {__version__}")
        raise typer.Exit(0)


@app.command(cls=_Command)
@options_from(DeployConfig.with_target_options(), skip=("model",))
def deploy(
    model: str = typer.Argument("efficientnet-lite0", metavar="MODEL", help="built-in name, factory pkg.mod:fn, or a model file"),
    config: Path | None = typer.Option(None, "--config", metavar="FILE", help="JSON/YAML file of option values"),
    as_json: bool = JSON_OPT,
    options: dict = None,  # type: ignore[assignment]
) -> None:
    """Convert, verify and write every artifact for MODEL, with manifest.json."""
    from . import api

    def body():
        opts = dict(load_config(config)) if config else {}
        opts.update(options or {})
        opts["model"] = model
        cfg = DeployConfig.build(**opts)
        if cfg.dry_run:
            p = api.deploy(config=cfg)
            return {"ok": True, "plan": p.to_dict()}, lambda c: _print_plan(c, p, p.jobs)
        try:
            with _progress() as update:
                res = api.deploy(config=cfg, progress=update)
        except EdgeshipError as e:
            # some artifacts failed, the others were verified and written: show those before the error
            written = e.details.get("manifest_path")
            if written and Path(written).is_file():
                from .manifest import read_manifest

                partial = SimpleNamespace(out=cfg.out, manifest_path=written, manifest=read_manifest(Path(written).parent))
                e.human = lambda c: _print_deploy(c, partial)  # type: ignore[attr-defined]
            raise
        doc = {"ok": True, "out": str(res.out), "manifest_path": str(res.manifest_path), "manifest": res.manifest}
        if (Path(res.out) / "report.html").is_file():
            doc["report"] = str(Path(res.out) / "report.html")
        return doc, lambda c: _print_deploy(c, res)

    run_command(as_json, body)


def _prediction_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        if "error" in r:
            rows.append([Path(r["image"]).name, "(not read: see below)", ""])
            continue
        preds = r["predictions"] or [{"label": "(nothing above threshold)", "confidence": None}]
        for i, p in enumerate(preds):
            # labels and file names are data: the console shows them as text (SafeConsole)
            rows.append([Path(r["image"]).name if i == 0 else "", p["label"],
                         "" if p["confidence"] is None else f"{p['confidence']:.3f}"])
    return rows


def _image_results(images: list[Path], rows: list[Any]) -> list[dict[str, Any]]:
    """One result per image: its predictions, or the error that kept it from being read."""
    return [{"image": str(img), "error": row["error"]} if isinstance(row, dict) else
            {"image": str(img), "predictions": [{"label": p[0], "confidence": p[1]} for p in row]}
            for img, row in zip(images, rows)]


def _unread(doc: dict[str, Any], human: Callable[[Console], None]) -> tuple[dict, Callable[[Console], None]]:
    """``(doc, human)``, or, when some images could not be read, an InputError (exit 3) that first
    shows every answer (``human``; in --json the whole document under ``details``) and then names
    each image that was not read."""
    bad = [r for r in doc["results"] if "error" in r]
    if not bad:
        return doc, human
    e = InputError(f"{len(bad)} of {len(doc['results'])} images could not be read: "
                   + "; ".join(r["error"]["message"] for r in bad[:3]) + ("; ..." if len(bad) > 3 else ""),
                   hint="the others were answered above; give JPEG, PNG, BMP or WebP files", **{**doc, "ok": False})
    e.human = human  # type: ignore[attr-defined]
    raise e


def _classify_bundle(api: Any, bundle: Path, images: list[Path], cfg: Any) -> tuple[dict, Callable[[Console], None]]:
    res = api.classify_bundle(bundle, images, isolate=True, errors="report", **cfg.model_dump())
    results = _image_results(images, res["results"])
    doc = {"ok": True, "bundle": str(bundle), "served_by": res["served_by"], "skipped": res["skipped"],
           "signature": "checked" if cfg.key else "not checked (give --key)", "results": results}

    def human(c: Console) -> None:
        print_table(c, f"served by {res['served_by']}  (top {cfg.top_k}, threshold {cfg.threshold})",
                    ["image", "label", "confidence"], _prediction_rows(results), right=("confidence",),
                    wrap=("image", "label"))
        for s in res["skipped"]:
            c.print(f"skipped {s['artifact']}: {s['reason']}", markup=False, highlight=False)
        if not cfg.key:
            c.print("signature not checked: give --key PUB to refuse a tampered bundle", markup=False, highlight=False)

    return _unread(doc, human)


@app.command(cls=_Command)
@options_from(ClassifyConfig)
def classify(
    artifact: Path = typer.Argument(..., metavar="ARTIFACT", help="artifact folder (or its model file) written by edgeship "
                                                                  "deploy, or a release bundle folder"),
    images: list[Path] = typer.Argument(..., metavar="IMAGE", help="one or more image files"),
    as_json: bool = JSON_OPT,
    options: dict = None,  # type: ignore[assignment]
) -> None:
    """Classify images with an artifact, using the artifact's own preprocessing and labels."""
    from . import api
    from .artifact import ARTIFACT_JSON, read_artifact

    def body():
        if (Path(artifact) / "bundle.json").is_file():
            return _classify_bundle(api, artifact, images, ClassifyConfig.build(**(options or {})))
        p = Path(artifact)
        bare = p.is_file() and p.name != ARTIFACT_JSON and not (p.parent / ARTIFACT_JSON).is_file()
        name = p.stem if bare else read_artifact(p).name  # JSON only: the model file is read in the child
        cfg = ClassifyConfig.build(**(options or {}))
        top_k, threshold = cfg.top_k, cfg.threshold
        rows = api.classify(p, images, isolate=True, errors="report", **cfg.model_dump())
        results = _image_results(images, rows)
        doc = {"ok": True, "artifact": name, "results": results}

        def human(c: Console) -> None:
            print_table(c, f"{name}  (top {top_k}, threshold {threshold})", ["image", "label", "confidence"],
                        _prediction_rows(results), right=("confidence",), wrap=("image", "label"))

        return _unread(doc, human)

    run_command(as_json, body)


@app.command(cls=_Command)
def targets(as_json: bool = JSON_OPT) -> None:
    """List the registered targets, what they produce and whether their extras are installed."""
    from .api import targets_info

    def body():
        info = targets_info()

        def human(c: Console) -> None:
            rows = [[i["name"], i.get("format", "?"), ", ".join(i.get("precisions", [])), ", ".join(i.get("accepts", [])),
                     f"needs: {i.get('install')}" if i.get("missing") else i["problem"] if i.get("problem")
                     else "ready"] for i in info]
            print_table(c, "targets", ["name", "format", "precisions", "converts from", "status"], rows,
                        wrap=("precisions", "converts from", "status"))

        return {"ok": True, "targets": info}, human

    run_command(as_json, body)


@app.command(cls=_Command)
def package(
    outdir: Path = typer.Argument(Path("edgeship-out"), metavar="OUTDIR", help="an output folder written by edgeship deploy"),
    version: str | None = typer.Option(None, "--version", metavar="X.Y.Z",
                                       help="the release's semantic version (default: the next patch after the "
                                            "newest in the destination, else 0.1.0)"),
    sign_key: Path | None = typer.Option(None, "--sign-key", metavar="KEY",
                                         help="EC private key (PEM) to sign with (default: OUTDIR/keys, made if missing)"),
    dest: Path | None = typer.Option(None, "--dest", metavar="DIR", help="where the bundle goes (default: OUTDIR/release)"),
    allow_unverified: bool | None = typer.Option(
        None, "--allow-unverified/--no-allow-unverified",
        help="ship fp16/int8 artifacts judged only on random inputs (default: as the deploy was told)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Package OUTDIR's verified artifacts as a signed release bundle (folder and .tar.gz)."""
    from . import api

    def body():
        with _progress() as update:
            b = api.package(outdir, version=version, sign_key=sign_key, dest=dest, progress=update,
                            allow_unverified=allow_unverified)

        def human(c: Console) -> None:
            rows = [[aid, next((a["runtime"]["name"] for a in b.doc["artifacts"] if a["id"] == aid), "?"),
                     size_text(next((a["size_bytes"] for a in b.doc["artifacts"] if a["id"] == aid), 0))]
                    for aid in b.doc["fallback_order"]]
            print_table(c, f"release {b.doc['name']} {b.doc['version']} (release {b.doc['release']}), in fallback order",
                        ["artifact", "runtime", "size"], rows)
            for x in b.doc.get("left_out") or []:
                c.print(f"{x['id']} not released: {x['why']}" + (" (--allow-unverified)" if x["status"] == "unverified"
                                                                 else ""), markup=False, highlight=False)
            c.print(f"bundle: {b.folder}", markup=False, highlight=False)
            c.print(f"tarball: {b.tarball} ({size_text(b.tarball.stat().st_size)})", markup=False, highlight=False)
            c.print(f"signed with {b.key}; check it with: edgeship verify {b.tarball} --key {b.public_key}",
                    markup=False, highlight=False)
            if b.key_created:
                c.print(f"a new signing key was made in {b.key.parent}: keep {b.key.name} private and back it up; "
                        "devices trust releases signed with it", markup=False, highlight=False)

        return b.to_dict(), human

    run_command(as_json, body)


@app.command(cls=_Command)
def verify(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="a bundle folder or its .tar.gz"),
    key: Path = typer.Option(..., "--key", metavar="PUB", help="the public key (PEM) the release was signed with"),
    as_json: bool = JSON_OPT,
) -> None:
    """Check a release bundle's signature and files; fails (exit 6) naming every extra, missing or changed file."""
    from . import api

    def body():
        res = api.verify_bundle(bundle, key)

        def human(c: Console) -> None:
            c.print(f"{bundle}: {res['name']} {res['version']} (release {res['release']}): signature valid, "
                    f"{res['files']} files as listed", markup=False, highlight=False)

        return res, human

    run_command(as_json, body)


@app.command(cls=_Command)
def keygen(
    out: Path = typer.Option(..., "--out", metavar="DIR", help="folder for signing-key.pem and signing-key.pub.pem"),
    as_json: bool = JSON_OPT,
) -> None:
    """Make an EC signing key pair for release bundles (the private key is written mode 0600)."""
    from . import api

    def body():
        priv, pub = api.keygen(out)

        def human(c: Console) -> None:
            c.print(f"private key: {priv} (keep it private and backed up)", markup=False, highlight=False)
            c.print(f"public key: {pub} (give it to whoever verifies your releases)", markup=False, highlight=False)

        return {"ok": True, "private_key": str(priv), "public_key": str(pub)}, human

    run_command(as_json, body)


@app.command(cls=_Command)
def sweep(
    config: Path = typer.Argument(..., metavar="CONFIG", help="sweep file (YAML/JSON): models, targets, precisions, "
                                                              "recipes, threads, options"),
    address: str = typer.Option(None, "--address", metavar="ADDR",
                                help="Ray cluster: auto (the one this machine is part of) or ray://HOST:10001; "
                                     "default: a local Ray"),
    out: Path = typer.Option(None, "--out", metavar="DIR", help="output folder (default: the file's out, else sweep-out)"),
    overwrite: bool = typer.Option(None, "--overwrite", metavar="", help="replace an existing output folder"),
    csv_path: Path = typer.Option(None, "--csv", metavar="FILE", help="also write the results table as CSV here"),
    dry_run: bool = typer.Option(False, "--dry-run", metavar="", help="print the tasks (each checked), start nothing"),
    as_json: bool = JSON_OPT,
) -> None:
    """Run models x recipes x targets x precisions x threads as Ray tasks; one table, one report."""
    from . import sweep as sweeps

    def body():
        cfg = sweeps.load(config, out=out, overwrite=overwrite)
        if dry_run:
            todo = sweeps.tasks(cfg)
            doc = {"ok": True, "tasks": [{k: t[k] for k in ("id", "model", "recipe", "target", "source")}
                                         | {"steps": [s["id"] for s in t["steps"]],
                                            "skipped": [f"{s['precision']}: {s['reason']}" for s in t["skipped"]]}
                                         for t in todo]}

            def human(c: Console) -> None:
                print_table(c, f"sweep: {len(todo)} task(s), each a Ray task (nothing started)",
                            ["model", "recipe", "target", "builds", "skipped"],
                            [[t["model"], t["recipe"], t["target"], ", ".join(t["steps"]), "; ".join(t["skipped"])]
                             for t in doc["tasks"]], wrap=("builds", "skipped"))
                c.print(f"then one benchmark per model (threads {', '.join(map(str, cfg.threads))}), one at a time "
                        "per machine" if cfg.benchmark else "no benchmark (benchmark: false)", markup=False,
                        highlight=False)

            return doc, human
        with _progress() as update:
            doc = sweeps.sweep(cfg, address=address, progress=update)
        if csv_path is not None:
            from ._util import atomic_write_text

            atomic_write_text(csv_path, sweeps.to_csv(doc))
        result = {"ok": not doc["summary"]["failed_tasks"], "out": str(cfg.out), **doc}
        failed = doc["summary"]["failed_tasks"]
        if failed:
            e = EdgeshipError(f"{len(failed)} of {len(doc['tasks'])} sweep task(s) failed: {', '.join(failed)}",
                              hint=f"their errors are in the table; every result is in {cfg.out}/sweep.json",
                              out=str(cfg.out))
            e.human = lambda c: _print_sweep(c, doc, cfg.out)  # type: ignore[attr-defined]
            raise e
        return result, lambda c: _print_sweep(c, doc, cfg.out)

    run_command(as_json, body)


def _print_sweep(c: Console, doc: dict, out: Path) -> None:
    """The sweep's results table (80 columns), what failed or was skipped, where figures were measured."""
    def num(x: Any, fmt: str) -> str:
        return "–" if x is None else format(x, fmt)

    ok = [r for r in doc["rows"] if r["status"] == "ok"]
    threads = list(dict.fromkeys(r.get("threads") for r in ok))
    recipes = len({r["recipe"] for r in ok}) > 1
    c.print(f"sweep: {len(doc['tasks'])} task(s) in {doc.get('seconds') or 0:.0f} s on Ray ({doc.get('address')}, "
            f"{len(doc.get('cluster') or [])} node(s))", markup=False, highlight=False)
    for model in dict.fromkeys(r["model"] for r in ok):
        cells: dict[tuple, dict] = {}
        for r in ok:
            if r["model"] == model:
                cells.setdefault((r["recipe"], r["target"], r["precision"]), {})[r.get("threads")] = r
        rows = []
        for (recipe, target, precision), by_thread in cells.items():
            first = next(iter(by_thread.values()))
            fid = first.get("fidelity")
            fid_text = ("–" if fid is None else share_text(fid) if first.get("fidelity_metric") == "top-1 agreement"
                        else f"cos {fid:.3f}")
            row = ([recipe] if recipes else []) + [target, precision, size_text(first.get("size_bytes")), fid_text]
            for th in threads:
                r = by_thread.get(th) or {}
                row += [num(r.get("p50_ms"), ".3g"), num(r.get("vs_eager"), ".1f") + ("!" if r.get("vs_eager_flag") else "")]
            rows.append(row)
        where = next((r for r in ok if r["model"] == model and r.get("cpu")), None)
        title = model + (f" — measured on {where['host']} node {(where.get('bench_node') or '')[:6]}" if where else "")
        th_cols = [h for th in threads for h in (f"ms {th}t", f"× {th}t")] if threads != [None] else []
        headers = (["recipe"] if recipes else []) + ["target", "prec", "size", "fidelity"] + th_cols
        print_table(c, title, headers, rows,
                    right=("size", "fidelity", *th_cols), optional=tuple(h for h in th_cols if h.startswith("×")),
                    notes={h: "p50 latency in ms at N threads; × Nt: speed-up over the model in PyTorch eager "
                              "(same node and threads)" for h in th_cols[:1]})
    from .reporting.sweep import problems

    for p in problems(doc["rows"]):  # one line per task and reason, as the report lists them
        why = str(p["why"] or "")
        if len(why) > 160:  # a budget miss names its layers: whole in sweep.json and the report, not here
            cut = why.rfind(" ", 100, 150)
            why = why[:cut if cut > 0 else 150] + " … (the whole message: sweep.json)"
        c.print(f"{p['status']} {p['model']}/{p['recipe']}/{p['target']} ({p['precision']}): {why}",
                markup=False, highlight=False)
    for note in doc.get("notes") or []:  # a ratio marked ! in the table: why it is not to be believed
        c.print(f"! {note}", markup=False, highlight=False)
    for m in doc.get("machines") or []:
        busy = m.get("busy_before")
        c.print(f"figures of node {(m.get('node_id') or '')[:6]}: {m.get('host')}, {m.get('cpu')}, {m.get('cpus')} CPUs"
                + (f", {busy:.0%} busy before" if busy is not None else ""), markup=False, highlight=False)
    if len({m.get("cpu") for m in doc.get("machines") or []}) > 1:
        c.print("figures from different CPU models are not comparable: each model was measured on one node",
                markup=False, highlight=False)
    c.print(f"written: {out}/ (artifacts per model and recipe, sweep.json, sweep.csv, report.html)",
            markup=False, highlight=False)


cache_app = typer.Typer(cls=_Group, no_args_is_help=True,
                        help="The cache of built artifacts and measured figures (info, clear).")
app.add_typer(cache_app, name="cache")


@cache_app.command("info", cls=_Command)
def cache_info(as_json: bool = JSON_OPT) -> None:
    """What the cache holds: entries by kind and their size, and where it is ($EDGESHIP_CACHE_DIR)."""
    from . import api

    def body():
        doc = api.cache_info()

        def human(c: Console) -> None:
            c.print(f"cache: {doc['dir']}", markup=False, highlight=False)
            c.print(f"{doc['entries']} entries, {_mb(doc['bytes'])}", markup=False, highlight=False)
            for kind, k in sorted(doc["kinds"].items()):
                c.print(f"  {kind:<11} {k['entries']:>4} entries {_mb(k['bytes']):>9}, "
                        f"least recently used {k['oldest_use_days']:g} days ago", markup=False, highlight=False)
            if doc["other"]:
                c.print("not cleared (not task results): " + ", ".join(f"{n} ({_mb(b)})" for n, b in doc["other"].items()),
                        markup=False, highlight=False)

        return doc, human

    run_command(as_json, body)


@cache_app.command("clear", cls=_Command)
def cache_clear(
    older_than: float = typer.Option(None, "--older-than", metavar="DAYS", min=0,
                                     help="only entries not used for this many days"),
    as_json: bool = JSON_OPT,
) -> None:
    """Remove cached artifacts and figures (all, or those unused for --older-than DAYS)."""
    from . import api

    def body():
        doc = api.cache_clear(older_than_days=older_than)
        return doc, lambda c: c.print(f"removed {doc['removed']} entries ({_mb(doc['bytes'])}) from {doc['dir']}",
                                      markup=False, highlight=False)

    run_command(as_json, body)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


release_app = typer.Typer(cls=_Group, no_args_is_help=True, help="An output folder's releases (prune).")
app.add_typer(release_app, name="release")


@release_app.command("prune", cls=_Command)
def release_prune(
    outdir: Path = typer.Argument(Path("edgeship-out"), metavar="OUTDIR", help="an output folder written by deploy"),
    keep: int = typer.Option(3, "--keep", metavar="N", min=0, help="how many of the newest releases to keep"),
    dry_run: bool = typer.Option(False, "--dry-run", help="say what would go; remove nothing"),
    as_json: bool = JSON_OPT,
) -> None:
    """Remove all but the newest releases in OUTDIR/release (never the current one, nor one an
    update repository still serves)."""
    from . import api

    def body():
        doc = api.release_prune(outdir, keep, dry_run)

        def human(c: Console) -> None:
            verb = "would remove" if dry_run else "removed"
            c.print(f"{verb}: {', '.join(doc['removed']) or 'nothing'}; kept: {', '.join(doc['kept']) or 'none'}",
                    markup=False, highlight=False)
            for s in doc["served"]:
                c.print(f"kept {s['version']}: the update repository {s['repo']} serves it", markup=False,
                        highlight=False)

        return doc, human

    run_command(as_json, body)


repo_app = typer.Typer(cls=_Group, no_args_is_help=True, help="TUF update repositories (init, refresh).")
app.add_typer(repo_app, name="repo")


@repo_app.command("init", cls=_Command)
def repo_init(
    repo: Path = typer.Argument(..., metavar="REPO_DIR", help="a new folder for the repository"),
    as_json: bool = JSON_OPT,
) -> None:
    """Make a TUF update repository: a key per role (root, targets, snapshot, timestamp) and root.json."""
    from . import api

    def body():
        doc = api.repo_init(repo)

        def human(c: Console) -> None:
            c.print(f"repository: {doc['repo']}", markup=False, highlight=False)
            c.print(f"trusted root for devices: {doc['root']} (edgeship agent init --root ...)", markup=False, highlight=False)
            c.print(f"keys: {doc['keys']} (mode 0600; keep root.pem offline once devices are provisioned)",
                    markup=False, highlight=False)

        return {"ok": True, **doc}, human

    run_command(as_json, body)


@repo_app.command("refresh", cls=_Command)
def repo_refresh(
    repo: Path = typer.Argument(..., metavar="REPO_DIR", help="the update repository"),
    days: int = typer.Option(7, "--days", metavar="N", help="days until the new timestamp expires"),
    as_json: bool = JSON_OPT,
) -> None:
    """Re-sign the timestamp (run it daily): devices refuse a repository whose timestamp expired as frozen."""
    from . import api

    def body():
        doc = api.repo_refresh(repo, days=days)
        return doc, lambda c: c.print(f"timestamp version {doc['timestamp_version']}, expires {doc['expires']}",
                                      markup=False, highlight=False)

    run_command(as_json, body)


@app.command(cls=_Command)
def publish(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="a bundle's .tar.gz written by edgeship package"),
    repo: Path = typer.Option(..., "--repo", metavar="REPO_DIR", help="the update repository (edgeship repo init)"),
    channel: str = typer.Option("stable", "--channel", metavar="NAME", help="the channel devices follow"),
    rollout: float = typer.Option(100.0, "--rollout", metavar="PERCENT", help="share of the channel's devices that take it"),
    key: Path | None = typer.Option(None, "--key", metavar="PUB", help="check the bundle's signature with this public key first"),
    as_json: bool = JSON_OPT,
) -> None:
    """Publish a signed bundle to a channel of an update repository (atomically; never a downgrade)."""
    from . import api

    def body():
        doc = api.publish(bundle, repo, channel=channel, rollout=rollout, key=key)

        def human(c: Console) -> None:
            c.print(f"published {doc['version']} (release {doc['release']}) to {doc['channel']} at {doc['rollout']:g}%: "
                    f"{doc['releases_on_channel']} release(s) on the channel", markup=False, highlight=False)

        return doc, human

    run_command(as_json, body)


@app.command("serve-updates", cls=_Command)
def serve_updates(
    repo: Path = typer.Argument(..., metavar="REPO_DIR", help="the update repository"),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="address to listen on"),
    port: int = typer.Option(8080, "--port", metavar="N", help="port to listen on"),
) -> None:
    """Serve an update repository over HTTP: metadata, bundles (range requests), /healthz; a log line per request."""
    from . import api

    def body():
        try:  # it says where it listens, a line per request, and "stopped" on Ctrl-C (stderr)
            api.serve_updates(repo, host=host, port=port)
        except KeyboardInterrupt:  # before uvicorn took over the signal: nothing was served yet
            err_console.print("stopped", highlight=False, markup=False)
        return {"ok": True}, None

    run_command(False, body)


@app.command("serve", cls=_Command)
def serve_cmd(
    artifact: Path = typer.Argument(..., metavar="ARTIFACT", help="an artifact folder (or a model file) to serve"),
    host: str = typer.Option("127.0.0.1", "--host", metavar="HOST", help="address to listen on"),
    port: int = typer.Option(8000, "--port", metavar="N", min=0, max=65535, help="port to listen on"),
    max_batch: int = typer.Option(1, "--max-batch", metavar="B", min=1, max=1024,
                                  help="stack up to B concurrent requests into one model call (1: no batching)"),
    max_wait_ms: float = typer.Option(2.0, "--max-wait-ms", metavar="W", min=0, max=10_000,
                                      help="how long the first request of a batch waits for others"),
    max_body_mb: float = typer.Option(10.0, "--max-body-mb", metavar="MB", min=0.001,
                                      help="largest request body taken (413 above it)"),
    threads: int = typer.Option(1, "--threads", metavar="N", min=1, max=256, help="the runtime's threads per call"),
) -> None:
    """Serve ARTIFACT over HTTP: POST /v1/classify (image bytes or a form upload), /v1/infer (tensors); /healthz, /metrics."""
    from . import api

    def body():
        from .serving import ServeConfig

        cfg = ServeConfig(max_batch=max_batch, max_wait_ms=max_wait_ms, max_body_bytes=int(max_body_mb * 1e6),
                          threads=threads)

        def ready(app: Any) -> None:
            m = app.state.model.artifact
            err_console.print(f"serving {m.name} ({m.target} {m.precision}) at http://{host}:{port} — POST /v1/classify"
                              f" (image bytes or -F file=@photo.jpg), /v1/infer (tensors); GET /healthz, /metrics; batching "
                              + (f"up to {max_batch} within {max_wait_ms:g} ms" if max_batch > 1 else "off")
                              + "; Ctrl-C stops after the requests in flight", highlight=False, markup=False,
                              soft_wrap=True)

        try:
            api.serve(artifact, host=host, port=port, cfg=cfg, on_ready=ready)
        except KeyboardInterrupt:  # before the server took over Ctrl-C (loading the model): nothing was served
            raise KeyboardInterrupt("interrupted before the server started: no request was taken") from None
        err_console.print("stopped: the requests in flight were answered", highlight=False, markup=False)
        return {"ok": True}, None

    run_command(False, body)


@app.command("compare-cloud", cls=_Command)
def compare_cloud_cmd(
    target: Path = typer.Argument(Path("edgeship-out"), metavar="ARTIFACT_OR_OUTDIR",
                                  help="an artifact folder, or a deploy's output folder"),
    network: str = typer.Option("wifi,4g,3g,offline", "--network", metavar="LIST",
                                help="network profiles, comma separated: wifi, 4g, 3g, offline"),
    requests: int = typer.Option(100, "--requests", metavar="N", min=1, max=100_000, help="requests per side and profile"),
    concurrency: int = typer.Option(1, "--concurrency", metavar="C", min=1, max=1024, help="requests in flight at once"),
    price_per_hour: float = typer.Option(None, "--price-per-hour", metavar="P", min=0,
                                         help="the cloud instance's price per hour: gives the cost per million inferences"),
    image: Path = typer.Option(None, "--image", metavar="FILE", help="the JPEG/PNG sent (default: a sample photo as JPEG)"),
    saturation_seconds: float = typer.Option(5.0, "--saturation-seconds", metavar="S", min=0.1, max=3600,
                                             help="how long the server is driven at saturation (32 clients)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Edge against cloud for one artifact: latency per network profile, bytes, offline, throughput, cost."""
    from . import api

    def body():
        with _progress() as update:
            doc = api.compare_cloud(target, image=image, networks=[n.strip() for n in network.split(",") if n.strip()],
                                    requests=requests, concurrency=concurrency, price_per_hour=price_per_hour,
                                    saturation_seconds=saturation_seconds, progress=update)
        return doc, lambda c: _print_cloud(c, doc)

    run_command(as_json, body)


def _print_cloud(c: Console, doc: dict) -> None:
    def ms(x: Any) -> str:
        return "–" if x is None else f"{x:.1f}"

    fast = doc.get("edge_fastest") or {}
    sides = [("edge", doc["edge"])] + ([(f"edge {fast['artifact']}", fast)] if fast and "error" not in fast else []) \
        + [(f"cloud {n}", r) for n, r in doc["cloud"].items()]
    rows = [["p50 ms"] + [ms(r.get("p50_ms")) for _, r in sides],
            ["p99 ms"] + [ms(r.get("p99_ms")) for _, r in sides],
            ["sent B"] + [f"{r.get('bytes_sent', 0):,}" for _, r in sides],
            ["received B"] + [f"{r.get('bytes_received', 0):,}" for _, r in sides],
            ["errors"] + [f"{r.get('error_rate', 0):.0%}" for _, r in sides]]
    if fast.get("error"):
        c.print(f"edge {fast['artifact']} (the deploy's fastest): {fast['error']}", markup=False, highlight=False)
    print_table(c, f"edge vs cloud: {doc['artifact']} ({doc['target']} {doc['precision']}), per inference",
                [""] + [n for n, _ in sides], rows, right=tuple(n for n, _ in sides))
    sat = doc["saturation"]
    lines = [f"image: {doc['image']['what']}, {doc['image']['bytes']:,} bytes; networks emulated in the "
             f"{doc['emulation']} ({doc['emulation_note']})",
             f"server at saturation ({sat['clients']} clients, loopback, no network delay): "
             f"{sat['throughput_per_s']:.1f} inferences/s, p99 {ms(sat.get('p99_ms'))} ms",
             (f"cost: {doc['cost']['price_per_hour']:g} per instance-hour / {sat['throughput_per_s']:.1f}/s → "
              f"{doc['cost']['per_million']:.2f} per million inferences" if doc.get("cost") else
              "cost: give --price-per-hour for the cost per million inferences"),
             f"privacy: {doc['privacy']['cloud_bytes_leaving_device']:,} bytes of the user's image leave the device per "
             "cloud inference, 0 on the edge"]
    if "offline" in doc["cloud"]:
        off = doc["cloud"]["offline"]
        lines.insert(1, f"offline: the edge answered {doc['edge']['requests']} of {doc['edge']['requests']}; the cloud "
                        f"{off['served']} of {off['requests']} (no connection)")
    for n, net in doc["networks"].items():
        if net:
            lines.append(f"{n}: RTT {net['rtt_ms']:g} ± {net['jitter_ms']:g} ms, {net['down_mbit']:g}/{net['up_mbit']:g} "
                         f"Mbit/s down/up ({net['source']})")
    for line in lines:
        c.print(line, markup=False, highlight=False)


agent_app = typer.Typer(cls=_Group, invoke_without_command=True,
                        help="The device update agent: check, install A/B, health-check, commit or roll back.")
app.add_typer(agent_app, name="agent")


@agent_app.callback()
def agent(
    ctx: typer.Context,
    server: str | None = typer.Option(None, "--server", metavar="URL", help="the update server (edgeship serve-updates)"),
    state: Path | None = typer.Option(None, "--state", metavar="DIR", help="the agent's state folder (edgeship agent init)"),
    device_id: str | None = typer.Option(None, "--device-id", metavar="ID", help="this device's id (default: the one set at init)"),
    once: bool = typer.Option(False, "--once", metavar="", help="one check, then exit"),
    interval: float = typer.Option(60.0, "--interval", metavar="S", help="seconds between checks (doubled while checks fail)"),
    max_backoff: float = typer.Option(900.0, "--max-backoff", metavar="S", help="the longest wait between failed checks"),
    as_json: bool = JSON_OPT,
) -> None:
    """Check the update server and install what the device's channel and rollout say (A/B, health-checked)."""
    if ctx.invoked_subcommand is not None:
        return
    from . import api

    def body():
        if server is None or state is None:
            raise UsageError("edgeship agent needs --server URL and --state DIR", hint="provision first: edgeship agent init")
        try:
            # a long-running agent says each check on stderr (a device's log); one check answers once
            say = None if once else (lambda line: print(printable(line), file=sys.stderr, flush=True))
            res = api.agent_run(state, server, device_id=device_id, once=once, interval=interval, max_backoff=max_backoff,
                                say=say)
        except KeyboardInterrupt:
            raise KeyboardInterrupt("agent stopped: the active release keeps serving; a check cut short is finished "
                                    "(or rolled back) at the next start") from None
        if once and not res.get("ok"):  # a script or a device's init system must see a failed check
            from .updates.agent import check_failed

            raise check_failed(res, server)

        def human(c: Console) -> None:
            c.print(f"{res.get('action')}: " + (res.get("reason") or f"{res.get('version')} (release {res.get('release')})"),
                    markup=False, highlight=False)

        return res, human

    run_command(as_json, body)


@agent_app.command("init", cls=_Command)
def agent_init(
    state: Path = typer.Option(..., "--state", metavar="DIR", help="a new state folder"),
    root: Path = typer.Option(..., "--root", metavar="ROOT_JSON", help="the repository's trusted root (metadata/1.root.json)"),
    bundle_key: Path = typer.Option(..., "--bundle-key", metavar="PUB", help="the public key releases are signed with"),
    channel: str = typer.Option("stable", "--channel", metavar="NAME", help="the channel to follow"),
    device_id: str | None = typer.Option(None, "--device-id", metavar="ID", help="this device's id (default: a new random one)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Provision a device: trusted root, bundle key, channel."""
    from . import api

    def body():
        doc = api.agent_init(state, root, bundle_key, channel=channel, device_id=device_id)
        return doc, lambda c: c.print(f"provisioned {doc['state']}: channel {doc['channel']}, device {doc['device_id']}",
                                      markup=False, highlight=False)

    run_command(as_json, body)


@agent_app.command("status", cls=_Command)
def agent_status(
    state: Path = typer.Option(..., "--state", metavar="DIR", help="the agent's state folder"),
    as_json: bool = JSON_OPT,
) -> None:
    """The active and previous release, channel, last check, last failure and its reason."""
    from . import api

    def body():
        doc = api.agent_status(state)

        def human(c: Console) -> None:
            a = doc["active"]
            lines = [f"device {doc['device_id']} on {doc['channel']}",
                     f"active: {str(a['version']) + ' (release ' + str(a['release']) + '), slot ' + str(a['slot']) if a else 'none'}",
                     f"previous: {doc['previous']['version'] if doc['previous'] else 'none'}",
                     f"last check: {doc['last_check'] or 'never'} ({doc['last_result'] or '-'})",
                     f"last failure: {doc['last_failure']['reason'] if doc['last_failure'] else 'none'}"]
            if doc.get("bad_releases"):  # failed here, never tried again
                lines.append(f"not installed again: {', '.join(map(str, doc['bad_releases']))}")
            for ln in lines:
                c.print(ln, markup=False, highlight=False)

        return doc, human

    run_command(as_json, body)


@app.command(cls=_Command)
@options_from(BenchConfig)
def benchmark(
    artifacts: list[Path] = typer.Argument(..., metavar="ARTIFACT_OR_OUTDIR",
                                          help="artifact folders, out dirs written by edgeship deploy (all their "
                                               "artifacts), or .onnx/.tflite files"),
    csv: Path | None = typer.Option(None, "--csv", metavar="FILE", help="also write one CSV row per artifact and thread count to FILE"),
    as_json: bool = JSON_OPT,
    options: dict = None,  # type: ignore[assignment]
) -> None:
    """Benchmark artifacts against their source in PyTorch eager: cold start, warm latency, memory, roofline, energy."""
    from . import api

    def body():
        with _progress() as update:
            report = api.benchmark(artifacts, progress=update, **(options or {}))
        if csv is not None:
            report.write_csv(csv)
        return report.to_dict(), report.print

    run_command(as_json, body)


@app.command(cls=_Command)
def report(
    folders: list[Path] = typer.Argument(..., metavar="[OLD_OUTDIR] OUTDIR",
                                         help="an output folder written by edgeship deploy; with two, the first is the "
                                              "old release and the second the new one"),
    out: Path | None = typer.Option(None, "--out", metavar="FILE",
                                    help="write the page here (default OUTDIR/report.html, or OUTDIR/report-vs-OLD.html)"),
    open_: bool = typer.Option(False, "--open", metavar="", help="open the page in the default browser"),
    as_json: bool = JSON_OPT,
) -> None:
    """A self-contained HTML report of a deploy from its manifest, or what changed between two deploys."""
    from . import api

    def body():
        if len(folders) > 2:
            raise UsageError("give one output folder, or two (old, then new)")
        old, new = (folders[0], folders[1]) if len(folders) == 2 else (None, folders[0])
        res = api.report(new, old=old, dest=out)
        opened = None
        if open_:
            import webbrowser

            opened = webbrowser.open(Path(res["path"]).resolve().as_uri())

        def human(c: Console) -> None:
            c.print(f"report: {res['path']}", markup=False, highlight=False)
            c.print(res["headline"], markup=False, highlight=False)
            for r in res["recommendations"]:
                c.print(f"  {r['target']}: {r['artifact'] or 'none'} — {r['why']}", markup=False, highlight=False)
            cmp = res.get("comparison")
            if cmp:
                bad = [r for r in cmp["rows"] if r["regressions"]]
                c.print(f"compared with {cmp['old']['folder']}: {len(bad)} artifact(s) regressed", markup=False,
                        highlight=False, style="bold red" if bad else None)
                for r in bad:
                    c.print(f"  {r['id']}: {'; '.join(r['regressions'])}", markup=False, highlight=False)
                if cmp["removed"]:
                    c.print(f"  gone since then: {', '.join(cmp['removed'])}", markup=False, highlight=False,
                            style="bold red")
                if cmp["added"]:
                    c.print(f"  new: {', '.join(cmp['added'])}", markup=False, highlight=False)
                if cmp["drift_text"]:
                    c.print(f"  the machine itself: {cmp['drift_text']} (measured on {cmp['drift_from']} unchanged "
                            "artifact(s); taken out before judging the others)", markup=False, highlight=False)
                for g in cmp["layers_worse"][:3]:
                    c.print(f"  {g['artifact']} {g['module'] or g['node']}: {g['metric']} {g['old_db']:.1f} → "
                            f"{g['new_db']:.1f} dB", markup=False, highlight=False)
            if opened is False:
                c.print("no browser could be opened here: open the file above", markup=False, highlight=False)

        return {"ok": True, **res}, human

    run_command(as_json, body)


from .analysis.config import AnalyzeConfig  # noqa: E402


@app.command(cls=_Command)
@options_from(AnalyzeConfig, skip=("dynamic_batch",))
def analyze(
    model: str = typer.Argument("efficientnet-lite0", metavar="MODEL", help="built-in name, factory pkg.mod:fn, a .pt2/.onnx/.tflite "
                                                           "file, or an artifact folder written by edgeship deploy"),
    as_json: bool = JSON_OPT,
    options: dict = None,  # type: ignore[assignment]
) -> None:
    """Per-layer MACs, params and memory, lighter-layer advice, a roofline estimate and a per-target preview."""
    from . import api
    from .analysis.report import print_report

    def body():
        report = api.analyze(model, **(options or {}))
        return {"ok": True, "analysis": report}, lambda c: print_report(c, report, top=(options or {}).get("top", 10))

    run_command(as_json, body)


from .pruning.config import CompressConfig  # noqa: E402


@app.command(cls=_Command)
@options_from(CompressConfig, skip=("dynamic_batch",),
              panels={"method": "Pruning", "eval_samples": "Fine-tuning", "latency": "Benchmark"})
def compress(
    model: str = typer.Argument(..., metavar="MODEL", help="a torch model: built-in name, factory pkg.mod:fn, .pt2 or "
                                                           "checkpoint"),
    prune: str = typer.Option(..., "--prune", metavar="RATIO,...", help="share of the channels (or, with --method "
                                                                         "magnitude, weights) to remove, e.g. 0.5; "
                                                                         "several make a sweep: 0.25,0.5,0.75"),
    as_json: bool = JSON_OPT,
    options: dict = None,  # type: ignore[assignment]
) -> None:
    """Prune a torch model into a smaller one deploy takes (OUT/model.pt2), with what it gained and lost."""
    from . import api

    def body():
        with _progress() as update:
            rec = api.compress(model, progress=update, prune=prune, **(options or {}))
        return {"ok": True, "compress": rec}, lambda c: _print_compress(c, rec)

    run_command(as_json, body)


def _print_compress(c: Console, doc: dict) -> None:
    from .reporting.compress import compress_page

    p = compress_page(doc)
    pct = p["metric"] != "cosine"

    def val(x: Any) -> str:
        return "-" if x is None else share_text(x) if pct else f"{x:.4f}"

    lat = [t for t in p["runtimes"] if any((r["latency"][t] or {}).get("p50_ms") for r in p["rows"])]
    headers = ["ratio", "MACs", "params", p["metric"], *(["untuned"] if p["fine_tuned"] else []),
               *[f"{t} ms" for t in lat], *(["speed-up"] if lat else [])]
    rows = []
    for r in p["rows"]:
        sp = (r["latency"].get(lat[0]) or {}).get("speedup") if lat else None
        rows.append([r["label"], count_text(r["macs"], "") + (f" -{r['macs_removed']:.0%}" if r.get("macs_removed") else ""),
                     count_text(r["params"], ""), val(r["value"]), *([val(r["before_tuning"])] if p["fine_tuned"] else []),
                     *[f"{(r['latency'][t] or {}).get('p50_ms') or 0:.3g}" for t in lat],
                     *([f"{sp:.2f}x" if sp else "-"] if lat else [])])
    print_table(c, p["title"], headers, rows, right=tuple(h for h in headers if h != "ratio"))
    c.print(f"{p['metric']} on {p['samples']} inputs ({p['evaluation']}); {p['tuning']}", highlight=False, markup=False)
    if lat:
        c.print(f"latency: fp32 at 1 thread, all models side by side in one run; speed-up on {lat[0]} (median of the "
                "rounds' ratios)", highlight=False, markup=False)
    for t in p["runtimes"]:
        err = (p["rows"][0]["latency"][t] or {}).get("error")
        if err:
            c.print(f"{t}: not timed: {err}", highlight=False, markup=False)
    for r in p["rows"][1:]:
        if r.get("note"):
            c.print(r["note"], highlight=False, markup=False)
    c.print(f"written: {doc['out']} (report: {doc['report']})", highlight=False, markup=False)
    if pct:  # deploy's default budget: within 5 points of the original's answers
        for r in p["rows"][1:]:
            if r["value"] is not None and r["value"] < 0.95:
                c.print(Text.assemble(("warning:", "bold yellow"), f" {r['label']} agrees with the original on only "
                                      f"{share_text(r['value'])} of the inputs, outside deploy's default budget (95%): "
                                      "fine-tune it (--train-data) or prune less before deploying it"))
    c.print("deploy with:", highlight=False, markup=False)
    for r in p["rows"][1:]:  # one argument a line: copied whole, whatever the terminal's width
        c.print("  " + r["deploy"].replace(" --", " \\\n      --"), highlight=False, markup=False, soft_wrap=True)


@app.command(cls=_Command)
@options_from(QuantizeCommandConfig)
def quantize(
    model: str = typer.Argument("efficientnet-lite0", metavar="MODEL", help="an fp32 ONNX artifact folder, or any model deploy takes"),
    as_json: bool = JSON_OPT,
    options: dict = None,  # type: ignore[assignment]
) -> None:
    """Quantise to int8 (or fp16) within an accuracy budget; report per tensor and per layer."""
    from . import api

    def body():
        with _progress() as update:
            art = api.quantize(model, progress=update, **(options or {}))
        q = art.details.get("quantization", {})
        full = api.quantization_report(art)
        doc = {"ok": True, "artifact": {**art.record(), "path": str(art.root)}, "report": full}
        return doc, lambda c: _print_quantize(c, art, q, full)

    run_command(as_json, body)


def _print_quantize(c: Console, art: Any, q: dict, full: dict) -> None:
    method, precision = q.get("method") or "", art.precision
    recipe = precision if method in ("", precision) else f"{method} {precision}"  # "static int8", not "fp16 fp16"
    labelled = bool(q.get("eval_labels"))
    measure = "label accuracy" if labelled else "top-1 agreement"
    steps = q.get("steps") or []
    full_steps = full.get("steps") or []
    acc_fp32 = next((s.get("accuracy_fp32") for s in full_steps if s.get("accuracy_fp32") is not None), None)
    with_acc = any(s.get("accuracy") is not None for s in steps)
    headers = ["step", "float", "top-1", "top-5", *(["accuracy"] if with_acc else []), "cosine", "SQNR dB", "p50 ms",
               "vs 1st", "size", "budget"]
    fp = q.get("fp32", {})
    first = (steps or [{}])[0].get("p50_ms_1thread") or 0
    rows = [["fp32", "all", "100%", "100%", *([_pct(acc_fp32)] if with_acc else []), "1.0000", "-",
             f"{fp.get('p50_ms_1thread', 0):.2f}", f"{fp.get('p50_ms_1thread', 0) / first:.2f}x" if first else "-",
             size_text(fp.get("size_bytes")), ""]]
    for i, s in enumerate(steps):
        mark = " ←" if i == q.get("chosen") else ""
        rows.append([s.get("note", "") + mark, str(len(s.get("excluded") or [])),
                     _pct(s.get("top1_agreement")), _pct(s.get("top5_agreement")),
                     *([_pct(s.get("accuracy"))] if with_acc else []), f"{s.get('cosine', 0):.4f}",
                     "-" if s.get("sqnr_db") is None else f"{s['sqnr_db']:.1f}", f"{s.get('p50_ms_1thread', 0):.2f}",
                     f"{s.get('latency_vs_first_step', 0):.2f}x", size_text(s.get("size_bytes")),
                     Text("ok", style="green") if s.get("within_budget") else Text("miss", style="red")])
    print_table(c, f"{art.name}: {recipe}, budget: {measure} drop <= {q.get('max_drop', 0):.1%}", headers, rows,
                right=tuple(headers[1:]), wrap=("step",), optional=("top-5", "vs 1st"),
                notes={"float": "layers kept in float", "accuracy": "top-1 against the labels of the --eval data",
                       "vs 1st": "p50 (1 thread, this process) relative to the first step"})
    layers = full.get("layers") or []
    if layers and "injected_db" not in layers[0]:
        print_table(c, "layers that cost the output most, each quantised alone (the output's SQNR in dB and cosine)",
                    ["node", "module", "op", "output SQNR", "cosine"],
                    [[r["node"], r.get("module") or "-", r["op"], f"{r['output_sqnr_db']:.1f}", f"{r.get('cosine', 0):.5f}"]
                     for r in layers[:8]], right=("output SQNR", "cosine"), wrap=("node", "module"))
    elif layers:
        print_table(c, "layers that inject the most error (SQNR in dB vs the float model, lost across the layer)",
                    ["node", "module", "op", "injected", "output SQNR", "weight SQNR"],
                    [[r["node"], r.get("module") or "-", r["op"], f"{r['injected_db']:.1f}", f"{r['output_sqnr_db']:.1f}",
                      "-" if r.get("weight_sqnr_db") is None else f"{r['weight_sqnr_db']:.1f}"] for r in layers[:8]],
                    right=("injected", "output SQNR", "weight SQNR"), wrap=("node", "module", "output SQNR", "weight SQNR"))
    _print_techniques(c, layers, full.get("techniques") or {})
    cal = full.get("calibration") or q.get("calibration")
    c.print(f"evaluated on {q.get('eval_samples')} inputs: {full.get('eval_data') or q.get('eval_data') or '-'}"
            + (f"; calibrated on {cal['samples']}: {cal['data']}" if cal else ""), highlight=False, markup=False)
    if q.get("rung"):
        c.print(f"int8 ladder: stopped at {q['rung']} (the first rung that met the budget, or the last tried)",
                highlight=False, markup=False)
    small = small_evaluation(q)
    if small:
        c.print(Text.assemble(("note:", "bold yellow"), " " + small))
    if _random_data(q):
        c.print(Text.assemble(("warning:", "bold yellow"), " these figures come from random inputs and say little "
                              "about real data; give --eval (and --calib) real samples"))
    ratio = q.get("compression_ratio") or 0
    size = (f"{ratio:.2f}x smaller than fp32" if ratio >= 1 else
            f"{1 / ratio:.2f}x larger than fp32 (quantisation parameters outweigh the savings in a model this small)"
            if ratio else "size vs fp32 unknown")
    c.print(f"size: {size}; per-tensor scales, zero points, MSE and SQNR: {art.root / 'quantization.json'}",
            highlight=False, markup=False)


TECHNIQUE_HEADERS = {"plain": "plain", "bias correction": "+bias corr", "equalisation": "+equalise",
                     "learned rounding": "+rounding"}


def _print_techniques(c: Console, layers: list[dict], techniques: dict) -> None:
    """Per layer, its output SQNR after each technique: what fixed what (the layers the plain int8
    hurt most, and those a technique moved most)."""
    measured = [t for t in techniques.get("measured") or [] if any(t in (r.get("by_technique") or {}) for r in layers)]
    if len(measured) < 2:
        return
    rows = [r for r in layers if r.get("by_technique", {}).get("plain") is not None]
    worst = sorted(rows, key=lambda r: r["by_technique"]["plain"])[:6]
    moved = sorted(rows, key=lambda r: -max(abs(v - r["by_technique"]["plain"]) for v in r["by_technique"].values()))
    shown = worst + [r for r in moved if r not in worst][: max(0, 8 - len(worst))]
    print_table(c, f"what each technique did to the layers (output SQNR in dB against float, {techniques.get('samples')} "
                   "evaluation inputs; applied in turn, kept or not)",
                ["layer", *[TECHNIQUE_HEADERS.get(t, t) for t in measured]],
                [[r.get("module") or r["node"], *[f"{r['by_technique'][t]:.1f}" if t in r["by_technique"] else "-"
                                                  for t in measured]] for r in shown],
                right=tuple(TECHNIQUE_HEADERS.get(t, t) for t in measured), wrap=("layer",))


def _pct(x: Any) -> str:
    return "-" if x is None else share_text(x)


def _random_data(q: dict) -> list[str]:
    """Which of a quantisation's data were random inputs: 'evaluation', 'calibration'."""
    cal = q.get("calibration") or {}
    return [what for what, text in (("evaluation", q.get("eval_data")), ("calibration", cal.get("data")))
            if "random" in str(text or "")]


# ---- human output -----------------------------------------------------------------------

def _print_plan(c: Console, p: Any, jobs: int = 1) -> None:
    """The task graph: each step (convert, then verify), what it runs after, its worker group, and
    whether it is ready, cached, or what it misses; the shared tasks; what is skipped."""
    rows = []
    for s in p.steps:
        status = "ready"
        if not s["accepts_source"]:
            status = f"cannot convert {article(p.source_kind)} model"
        elif s["missing"]:
            status = f"missing {', '.join(s['missing'])}: {s['install']}"
        elif s.get("cached"):
            status = "cached"
        rows.append([s["id"], s["format"], ", ".join(s.get("after") or ()) or "load", s.get("group", ""), status])
    for t in p.shared:
        rows.insert(0, [t["id"], "shared", "load", t["id"], "cached" if t.get("cached") else "ready"])
    print_table(c, f"plan: {p.model} ({p.source_kind}) → {p.out}", ["step", "format", "after", "worker", "status"],
                rows, wrap=("after", "status"))
    groups = len({s.get("group") for s in p.steps}) + len(p.shared)
    cached = sum(1 for s in p.steps if s.get("cached"))
    lines = [f"each step converts, then verifies against the source; {groups} worker group(s), "
             + (f"up to {jobs} at once" if jobs > 1 else "one after another in this process")
             + "; then the benchmark alone, when asked"]
    for t in p.shared:
        lines.append(f"{t['id']}: {t['what']}")
    if cached:
        lines.append(f"{cached} of {len(p.steps)} step(s) cached: copied and re-checked, not built (--no-cache builds them)")
    for s in p.skipped:
        lines.append(f"skipped {s['target']} {s['precision']}: {s['reason']}")
    for line in lines:
        c.print(line, highlight=False, markup=False)


def _verification_lines(artifacts: list[dict]) -> tuple[list[str], list[str]]:
    """(one line per group of artifacts verified the same way, warnings about random inputs)."""
    groups: dict[tuple, list[str]] = {}
    for a in artifacts:
        v = a.get("verification") or {}
        if v:
            key = (v.get("reference"), v.get("samples"), v.get("inputs"), tuple(v.get("batch_sizes") or ()), v.get("criterion"))
            groups.setdefault(key, []).append(a["path"])
    from .artifact import verification_status

    status = {a["path"]: verification_status(a.get("verification") or {}, a.get("precision")) for a in artifacts}
    lines = []
    for (ref, samples, inputs, batches, criterion), names in groups.items():
        who = ", ".join(names)
        if not samples:  # e.g. Core ML off macOS: structure and weights only
            what = str(ref or "the source").removeprefix("structural: ")
            lines.append(f"{who}: structural only (not verified): checked against the {what}; no outputs computed")
            continue
        at = f" at batch size{'s' if len(batches) > 1 else ''} {', '.join(map(str, batches))}" if batches else ""
        what = f"{samples} {inputs}" if inputs and not str(inputs).startswith(("the ", "all ")) else \
            f"{samples} inputs" + (f" ({inputs})" if inputs else "")
        verb = "compared with" if any(status[n] == "unverified" for n in names) else "verified against"
        lines.append(f"{who}: {verb} the {ref} on {what}{at}; pass rule: {criterion}")
    warnings = []
    exact_random = [a["path"] for a in artifacts if status[a["path"]] == "verified"
                    and (a.get("verification") or {}).get("real_inputs") is False]
    if exact_random:
        warnings.append(f"{', '.join(exact_random)}: fp32 compared exactly on random inputs only; give real data "
                        "(--eval) to check it on what it will see")
    for a in artifacts:
        if status[a["path"]] == "unverified":
            note = (a.get("verification") or {}).get("note") or "judged only on random inputs"
            warnings.append(f"{a['path']}: UNVERIFIED: {note}")
    for a in artifacts:
        rand = _random_data((a.get("details") or {}).get("quantization") or {})
        if rand:
            warnings.append(f"{a['path']}: {' and '.join(rand)} used random inputs, so its accuracy budget was judged "
                            "on noise; give --eval (and --calib) real samples")
    return lines, warnings


def _print_deploy(c: Console, res: Any) -> None:
    from .artifact import verification_status

    m = res.manifest
    rows = []
    for a in m["artifacts"]:
        v = a.get("verification") or {}
        outs = v.get("outputs", [])
        max_abs = max((o["max_abs"] for o in outs), default=float("nan"))
        max_rel = max((o["max_rel"] for o in outs), default=float("nan"))
        cosine = min((o.get("cosine", 1.0) for o in outs), default=float("nan"))
        top1 = v.get("top1_agreement")
        status = verification_status(v, a.get("precision"))
        verdict = {"verified": Text("yes", style="green"), "unverified": Text("no: random", style="bold yellow"),
                   "structural": Text("structural", style="yellow")}.get(status, Text("no", style="red"))
        if status == "structural":  # no outputs were computed: no figures to show
            rows.append([a["path"], a["format"], a["precision"], size_text(a["size_bytes"]), "-", "-", "-", "-", verdict])
            continue
        rows.append([a["path"], a["format"], a["precision"], size_text(a["size_bytes"]), f"{max_abs:.1e}", f"{max_rel:.1e}",
                     f"{cosine:.4f}", "-" if top1 is None else share_text(top1), verdict])
    failed = m["stages"].get("convert", {}).get("failed", [])
    for f in failed:  # the cells that were not written, beside those that were
        rows.append([f"{f['target']}-{f['precision']}", "-", f["precision"], "-", "-", "-", "-", "-",
                     Text("FAILED", style="bold red")])
    headers = ["artifact", "format", "precision", "size", "max abs", "max rel", "cosine", "top-1", "verified"]
    print_table(c, f"edgeship deploy: {m['source']['name']} → {res.out}", headers, rows, right=tuple(headers[3:]),
                optional=("format", "max rel"))
    lines, warnings = _verification_lines(m["artifacts"])
    for line in lines:
        c.print(line, highlight=False, markup=False)
    if lines:
        c.print("the figures and the pass rule of each artifact are in manifest.json", highlight=False)
    for w in warnings:
        c.print(Text.assemble(("warning:", "bold yellow"), " " + w))
    small = None
    for a in m["artifacts"]:
        for note in a.get("notes") or []:
            c.print(Text.assemble((f"{a['path']}:", "dim"), " " + note))
        q = (a.get("details") or {}).get("quantization") or {}
        if q.get("rung"):
            c.print(Text.assemble((f"{a['path']}:", "dim"), f" int8 ladder stopped at {q['rung']}"))
        small = small or small_evaluation(q)
    if small:
        c.print(Text.assemble(("note:", "bold yellow"), " " + small))
    for s in m["stages"].get("convert", {}).get("skipped", []):
        c.print(f"skipped {s['target']} {s['precision']}: {s['reason']}", highlight=False, markup=False)
    for f in failed:
        c.print(Text.assemble(("FAILED", "bold red"), f" {f['target']}-{f['precision']} (not written): {f['message']}"))
    preds = m["stages"].get("predictions")
    if preds:
        print_table(c, "sample photos, classified by the artifacts", ["photo", *preds["artifacts"]],
                    [[photo, *[f"{r[0]['label']} ({r[0]['confidence']:.2f})" if r else "-" for r in row]]
                     for photo, row in preds["photos"].items()],
                    wrap=tuple(preds["artifacts"]))
    if m["stages"].get("benchmark"):
        from .bench import BenchReport

        BenchReport(m["stages"]["benchmark"]).print(c)
    convert = m["stages"].get("convert", {})
    cache = convert.get("cache") or {}
    reused, built = cache.get("reused") or [], cache.get("built") or []
    if reused:  # an unchanged run is fast because nothing was built: say so
        c.print(f"from the cache: {len(reused)} of {len(reused) + len(built)} artifact(s) as an identical earlier "
                "build made them (--no-cache builds them again)", highlight=False, markup=False)
    for d in convert.get("inputs_differ") or []:
        c.print(Text.assemble(("note:", "bold yellow"), f" {d}"))
    if convert.get("changed"):
        c.print(Text.assemble(("replaced:", "bold yellow"), f" {', '.join(convert['changed'])} rebuilt with other bytes "
                              "than the folder held; figures measured on the old files no longer count"))
    c.print(f"manifest: {res.manifest_path}   ({m['timings_s'].get('total', 0):.1f} s)", highlight=False, markup=False)
    if (Path(res.out) / "report.html").is_file():
        c.print(f"report: {Path(res.out) / 'report.html'} (open it in a browser; edgeship report OLD NEW compares two)",
                highlight=False, markup=False)
    b = m["stages"].get("bundle")
    if b:
        out = Path(res.out)
        if b.get("unchanged"):
            c.print(f"release {b['version']} unchanged: it already holds these artifacts byte for byte, so no new "
                    "release was made (--release-version makes one)", highlight=False, markup=False)
        c.print(f"release {b['version']}: {out / b['tarball']}, signed; check it with: edgeship verify "
                f"{out / b['tarball']} --key {out / b['public_key']}", highlight=False, markup=False)
        if b.get("key_created"):
            c.print(f"a new signing key was made in {out / 'keys'}: keep signing-key.pem private and backed up "
                    "(devices trust releases signed with it); give --sign-key to use your own", highlight=False,
                    markup=False)


def _usage_error(e: Any) -> None:
    """A usage error the way every other error reads: ``error: ...`` on one line, then where to
    look (click's boxed "Error" panel was a second style)."""
    if type(e).__name__ == "NoArgsIsHelpError":  # the help was printed already
        return
    ctx = getattr(e, "ctx", None)
    print(f"error: {printable(e.format_message())}", file=sys.stderr)
    if ctx is not None:
        print(f"see {ctx.command_path} --help", file=sys.stderr)


def entrypoint() -> None:  # console script
    from typer import rich_utils

    warnings.showwarning = _show_warning
    rich_utils.rich_format_error = _usage_error
    app()
