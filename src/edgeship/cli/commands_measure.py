"""Commands that measure and compare: analyze, benchmark, report, compare-cloud, sweep."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from .._table import print_table
from .._util import atomic_write_text
from ..analysis.config import AnalyzeConfig
from ..bench.config import BenchConfig
from ..errors import EdgeshipError, UsageError
from .options import JSON_OPT, options_from
from .run import progress, run_command
from .views import print_cloud, print_report, print_sweep

__all__ = ["analyze", "benchmark", "compare_cloud_cmd", "report", "sweep"]


@options_from(AnalyzeConfig, skip=("dynamic_batch",))
def analyze(
    model: str = typer.Argument("efficientnet-lite0", metavar="MODEL", help="built-in name, factory pkg.mod:fn, a .pt2/.onnx/.tflite "
                                                           "file, or an artifact folder written by edgeship deploy"),
    as_json: bool = JSON_OPT,
    options: dict = None,  # type: ignore[assignment]
) -> None:
    """Per-layer MACs, params and memory, lighter-layer advice, a roofline estimate and a per-target preview."""
    from .. import api

    def body():
        report = api.analyze(model, **(options or {}))
        return {"ok": True, "analysis": report}, lambda c: print_report(c, report, top=(options or {}).get("top", 10))

    run_command(as_json, body)


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
    from .. import api

    def body():
        with progress() as update:
            report = api.benchmark(artifacts, progress=update, **(options or {}))
        if csv is not None:
            report.write_csv(csv)
        return report.to_dict(), report.print

    run_command(as_json, body)


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
    from .. import api

    def body():
        if len(folders) > 2:
            raise UsageError("give one output folder, or two (old, then new)")
        old, new = (folders[0], folders[1]) if len(folders) == 2 else (None, folders[0])
        if old is None and out is None and (new / "pipeline.json").is_file() and not (new / "manifest.json").is_file():
            from ..reporting.pipeline import write_pipeline_report  # a pipeline deploy's folder

            path = write_pipeline_report(new)
            return {"ok": True, "path": str(path)}, lambda c: c.print(f"report: {path}", markup=False, highlight=False)
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
    from .. import api

    def body():
        with progress() as update:
            doc = api.compare_cloud(target, image=image, networks=[n.strip() for n in network.split(",") if n.strip()],
                                    requests=requests, concurrency=concurrency, price_per_hour=price_per_hour,
                                    saturation_seconds=saturation_seconds, progress=update)
        return doc, lambda c: print_cloud(c, doc)

    run_command(as_json, body)


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
    from .. import sweep as sweeps

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
        with progress() as update:
            doc = sweeps.sweep(cfg, address=address, progress=update)
        if csv_path is not None:
            atomic_write_text(csv_path, sweeps.to_csv(doc))
        result = {"ok": not doc["summary"]["failed_tasks"], "out": str(cfg.out), **doc}
        failed = doc["summary"]["failed_tasks"]
        if failed:
            e = EdgeshipError(f"{len(failed)} of {len(doc['tasks'])} sweep task(s) failed: {', '.join(failed)}",
                              hint=f"their errors are in the table; every result is in {cfg.out}/sweep.json",
                              out=str(cfg.out))
            e.human = lambda c: print_sweep(c, doc, cfg.out)  # type: ignore[attr-defined]
            raise e
        return result, lambda c: print_sweep(c, doc, cfg.out)

    run_command(as_json, body)
