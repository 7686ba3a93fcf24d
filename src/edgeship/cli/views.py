"""Every human printer of the command line: what a command shows on stdout without ``--json``
(the plan, a deploy, a sweep, an analysis, a quantisation, a compression, edge against cloud, the
predictions), drawn with the one table printer (:func:`edgeship._table.print_table`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from .._table import count_text, print_table, size_text
from .._util import article, share_text
from ..artifact import verification_status
from ..bench import BenchReport
from ..data import small_evaluation

__all__ = ["prediction_rows", "print_cloud", "print_compress", "print_deploy", "print_plan", "print_quantize",
           "print_report", "print_sweep"]


def prediction_rows(results: list[dict[str, Any]]) -> list[list[str]]:
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


def print_plan(c: Console, p: Any, jobs: int = 1) -> None:
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


#: the table's agreement column per task (edgeship.tasks): its header and the figure of verification.task
TASK_COLUMN = {"voice_activity": ("speech", "chunk_agreement"), "embedding": ("NN", "nn_agreement")}


def print_deploy(c: Console, res: Any) -> None:
    m = res.manifest
    rows = []
    kind = ((m.get("source") or {}).get("task") or {}).get("kind")
    column, figure = TASK_COLUMN.get(kind, ("top-1", None))
    for a in m["artifacts"]:
        v = a.get("verification") or {}
        outs = v.get("outputs", [])
        if kind == "voice_activity":  # a stream's state is internal: the probabilities are what it says
            prob = ((m.get("source") or {}).get("task") or {}).get("probability")
            outs = [o for o in outs if o.get("name") == prob] or outs[:1]
        max_abs = max((o["max_abs"] for o in outs), default=float("nan"))
        max_rel = max((o["max_rel"] for o in outs), default=float("nan"))
        cosine = min((o.get("cosine", 1.0) for o in outs), default=float("nan"))
        top1 = (v.get("task") or {}).get(figure) if figure else v.get("top1_agreement")
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
    headers = ["artifact", "format", "precision", "size", "max abs", "max rel", "cosine", column, "verified"]
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


def print_sweep(c: Console, doc: dict, out: Path) -> None:
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
    from ..reporting.sweep import problems

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


def print_cloud(c: Console, doc: dict) -> None:
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


def print_compress(c: Console, doc: dict) -> None:
    from ..reporting.compress import compress_page

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


def print_quantize(c: Console, art: Any, q: dict, full: dict) -> None:
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


# ---- analyze --------------------------------------------------------------------------

def _n(x: float | None) -> str:
    """A count for people: 128, 106.7k, 4.87M, 1.23G (the unit glued on: '106.7k MACs')."""
    if x is None:
        return "-"
    x = float(x)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            v = x / div
            return f"{v:.2f}{unit}" if abs(v) < 10 else f"{v:.1f}{unit}" if abs(v) < 100 else f"{v:.0f}{unit}"
    return f"{x:.0f}"


def _where(r: dict[str, Any]) -> str:
    return r.get("module") or r.get("name") or r.get("layer") or "?"


def print_report(c: Any, r: dict[str, Any], top: int = 10) -> None:
    """The analysis of ``edgeship analyze``: totals, the heaviest layers, advice, roofline, compatibility."""
    m, t = r["model"], r["totals"]
    c.print(Text.assemble((m["name"], "bold"), f" ({m['kind']}, counted on the {m['frontend']} graph): "
                          f"{_n(t['macs'])} MACs, {_n(t['params'])} params, {t['layers']} layers"))
    wb = t["weight_bytes"]
    at = t["peak_activation_at"].get("module") or t["peak_activation_at"].get("layer")
    c.print(f"weights {size_text(wb['fp32'])} fp32 / {size_text(wb['fp16'])} fp16 / {size_text(wb['int8'])} int8; "
            f"peak activations {size_text(t['peak_activation_bytes'])} at {at}", highlight=False, markup=False)
    cc = r.get("cross_check")
    if cc:
        c.print(f"cross-check: torch {_n(cc['torch_macs'])} MACs vs ONNX {_n(cc['onnx_macs'])} MACs "
                f"({'agree' if cc['agree'] else 'DISAGREE'}, {cc['rel_diff']:.2%})", highlight=False)

    by_index = {row["index"]: row for row in r["layers"]}
    rows = []
    for b in r["top_layers"][:top]:
        row = by_index[b["index"]]
        rows.append([str(row["index"]), _where(row), row["kind"], _n(row["macs"]), f"{row['macs_share']:.1%}",
                     "x".join(map(str, row["output_shape"] or [])), f"{row['intensity'] or 0:.1f}",
                     row.get("bound") or "-", f"{row['est_us']:.1f}" if "est_us" in row else "-"])
    headers = ["#", "layer (module)", "kind", "MACs", "share", "out shape", "ops/byte", "bound", "est µs"]
    print_table(c, f"top {len(rows)} layers by MACs", headers, rows, right=("#", "MACs", "share", "ops/byte", "est µs"),
                optional=("out shape", "bound", "ops/byte"),
                notes={"ops/byte": "arithmetic intensity", "est µs": "roofline estimate"})

    print_table(c, "MACs by kind", ["kind", "layers", "MACs", "share", "heaviest"],
                [[kind, str(v["count"]), _n(v["macs"]), f"{v['macs_share']:.1%}", ", ".join(_where(x) for x in v["top"][:3])]
                 for kind, v in r["ranked_by_kind"].items()],
                right=("layers", "MACs", "share"), wrap=("heaviest",))

    sep = r["advice"]["separable"]
    if sep:
        rows = [[str(a["rank"]), _where(a), f"{a['kernel'][0]}x{a['kernel'][1]} {a['input_channels']}→{a['output_channels']}",
                 "x".join(map(str, a["output_hw"])), f"{a['macs']:,}", f"{a['separable_macs']['total']:,}",
                 f"{a['saving_macs']:,}", f"{a['ratio']:.3f} = {a['ratio_formula']}"] for a in sep[:top]]
        headers = ["rank", "layer (module)", "conv", "out HxW", "MACs", "separable", "saving", "ratio"]
        print_table(c, "lighter layers: standard k×k conv → depthwise-separable (ranked by saving)", headers, rows,
                    right=("rank", "MACs", "separable", "saving"), wrap=("conv", "ratio"),
                    optional=("out HxW", "MACs", "separable"))
    else:
        c.print("lighter layers: no standard k×k convolutions to make depthwise-separable")
    for p in r["advice"]["patterns"][:6]:
        where = f" {_where(p)}" if "layer" in p else ""
        c.print(Text.assemble("• ", (p["pattern"], "bold"), f"{where}: {p['suggestion']}"))

    roof = r.get("roofline")
    if roof:
        meas = roof.get("measured")
        line = Text.assemble("roofline ", ("estimate", "italic"), f" on {roof['profile']['name']} ({roof['precision']}): "
                f"{roof['total_ms']:.2f} ms ({roof['compute_bound']['layers']} compute-bound layers "
                f"{roof['compute_bound']['ms']:.2f} ms, {roof['memory_bound']['layers']} memory-bound "
                f"{roof['memory_bound']['ms']:.2f} ms); int8 {roof['int8_total_ms']:.2f} ms")
        c.print(line, highlight=False)
        if roof.get("onnx_graph_total_ms") is not None:
            c.print(f"  on the ONNX export (BatchNorm and padding folded): {roof['onnx_graph_total_ms']:.2f} ms",
                    highlight=False)
        if meas:
            c.print(f"measured (benchmark in the deploy manifest): {meas['latency_ms']:.2f} ms  — estimate/measured "
                    f"{roof.get('estimate_over_measured')}", highlight=False)
        else:
            c.print(f"measured: {roof.get('measured_note')}", highlight=False, markup=False)

    comp = r.get("compatibility") or {}
    if comp:
        rows = []
        for name, v in comp.items():
            share = v.get("macs_share_fast")
            uns = "; ".join(f"{u.get('type') or '?'} at {u.get('module') or u.get('node') or '?'}"
                            for u in v.get("unsupported", [])[:3]) or "-"
            if len(v.get("unsupported", [])) > 3:
                uns += f" (+{len(v['unsupported']) - 3})"
            style = {"ready": "green", "partial": "yellow", "unsupported": "red"}.get(v["status"], "dim")
            rows.append([name, Text(v["status"], style=style), "-" if share is None else share_text(share, 0), uns,
                         v.get("checked_with", "-")])
        print_table(c, "compatibility preview (before conversion)",
                    ["target", "status", "fast MACs", "unsupported ops", "checked with"], rows,
                    right=("fast MACs",), wrap=("unsupported ops", "checked with"), optional=("checked with",),
                    notes={"fast MACs": "share of the MACs on the target's fast kernels"})
        for name, v in comp.items():
            for u in v.get("unsupported", [])[:5]:
                c.print(f"  {name}: {u.get('op')} at node {u.get('node')} (module {u.get('module')}): {u.get('hint')}",
                        highlight=False, markup=False)
            # why a target is not ready, and what a placeholder shape changed (the rest is in --json)
            for note in v.get("notes", []):
                if v["status"] in ("not_applicable", "error", "unsupported", "unavailable") or "placeholder" in note:
                    c.print(f"  {name}: {note}", highlight=False, markup=False)
    for note in r.get("notes", []):
        c.print(f"note: {note}", highlight=False, markup=False)


def print_pipeline(c: Console, res: Any) -> None:
    """A pipeline deploy: each stage's artifacts, each artifact set's end-to-end figures against
    the fp32 pipeline, the release."""
    rec = res.record
    p = rec["pipeline"]
    rows = []
    for name, st in rec["stages"].items():
        status = "ok" if st.get("ok") else f"failed: {(st.get('error') or {}).get('message', '')[:60]}"
        rows.append([name, str(len(st.get("artifacts") or [])), status])
    print_table(c, f"{p['name']} ({p['kind']}): models", ["stage", "artifacts", "status"], rows, wrap=("status",))
    ref = rec.get("reference") or {}
    title = (f"end to end: {ref.get('pages', '?')} pages, {ref.get('lines', '?')} lines, against the fp32 "
             f"pipeline (CER <= {share_text(res.record.get('max_cer', 0.02))})")
    rows = []
    for s in rec.get("sets") or []:
        if "error" in s:
            rows.append([s["id"], "-", "-", "-", "did not run"])
            continue
        rows.append([s["id"], share_text(s["cer"], 2), f"{s['iou_mean']:.3f}", f"{s['missed']}/{s['extra']}",
                     "pass" if s["passed"] else "OVER"])
    print_table(c, title, ["artifact set", "CER", "box IoU", "missed/extra", "budget"], rows,
                right=("CER", "box IoU", "missed/extra"))
    b = rec.get("bundle")
    if b:
        c.print(f"release {b['version']}: {b['folder']}", markup=False, highlight=False)
    c.print(f"record: {Path(res.out) / 'pipeline.json'}", markup=False, highlight=False)
