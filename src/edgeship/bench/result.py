"""The benchmark report: the JSON document, a CSV with one row per candidate, a rich table."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

from rich.text import Text

from .._table import print_table, size_text
from .._util import atomic_write_text

__all__ = ["BenchReport", "CSV_COLUMNS"]

CSV_COLUMNS = (
    "id", "role", "status", "name", "format", "precision", "threads", "cpus",
    "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "std_ms", "runs",
    "cold_total_s", "cold_process_start_s", "cold_runtime_import_s", "cold_model_load_s", "cold_first_inference_s",
    "peak_rss_bytes", "size_bytes", "throughput", "macs", "gops", "percent_of_peak",
    "cpu_ms_per_inference", "energy_mj_per_inference_estimate", "speedup_vs_baseline", "baseline", "reason",
)


@dataclasses.dataclass(frozen=True)
class BenchReport:
    """What ``edgeship.api.benchmark`` returns; ``data`` is the JSON document."""

    data: dict[str, Any]

    @property
    def results(self) -> list[dict[str, Any]]:
        return self.data["results"]

    @property
    def incomplete(self) -> list[dict[str, Any]]:
        return self.data["incomplete"]

    def result(self, id: str, threads: int | None = None) -> dict[str, Any] | None:
        for r in self.results:
            if r["id"] == id and (threads is None or r["threads"] == threads):
                return r
        return None

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def write_json(self, path: str | Path) -> Path:
        atomic_write_text(Path(path), json.dumps(self.data, indent=2) + "\n")
        return Path(path)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for r in self.results + self.incomplete:
            lat = r.get("latency_ms") or {}
            cold = r.get("cold_start_s") or {}
            comp = r.get("compute") or {}
            vs = r.get("vs_baseline") or {}
            out.append({
                "id": r["id"], "role": r["role"], "status": r["status"], "name": r.get("name"),
                "format": r.get("format"), "precision": r.get("precision"), "threads": r["threads"],
                "cpus": " ".join(map(str, r.get("cpus") or [])),
                "p50_ms": lat.get("p50"), "p90_ms": lat.get("p90"), "p99_ms": lat.get("p99"), "mean_ms": lat.get("mean"),
                "min_ms": lat.get("min"), "max_ms": lat.get("max"), "std_ms": lat.get("std"), "runs": lat.get("n"),
                "cold_total_s": cold.get("total"), "cold_process_start_s": cold.get("process_start"),
                "cold_runtime_import_s": cold.get("runtime_import"), "cold_model_load_s": cold.get("model_load"),
                "cold_first_inference_s": cold.get("first_inference"),
                "peak_rss_bytes": (r.get("memory") or {}).get("peak_rss_bytes"), "size_bytes": r.get("size_bytes"),
                "throughput": " ".join(f"b{t['batch']}:{t['items_per_s']}/s" for t in r.get("throughput") or []),
                "macs": comp.get("macs"), "gops": comp.get("gops"), "percent_of_peak": comp.get("percent_of_peak"),
                "cpu_ms_per_inference": (r.get("energy") or {}).get("cpu_ms_per_inference"),
                "energy_mj_per_inference_estimate": (r.get("energy") or {}).get("mj_per_inference"),
                "speedup_vs_baseline": vs.get("speedup_p50"), "baseline": vs.get("baseline"),
                "reason": r.get("reason"),
            })
        return out

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
        w.writeheader()
        for row in self.rows():
            w.writerow({k: "" if v is None else v for k, v in row.items()})
        return buf.getvalue()

    def write_csv(self, path: str | Path) -> Path:
        atomic_write_text(Path(path), self.to_csv())
        return Path(path)

    # ---- for people -------------------------------------------------------------------
    def print(self, console: Any) -> None:
        d = self.data
        s = d["settings"]
        title = (f"warm latency, batch 1 — {s['runs']} runs over {s['rounds']} fresh processes each, "
                 f"warm-up {s['warmup']}{', fresh input per call' if s['fresh_input'] else ''}")
        rows = []
        for r in d["results"]:
            lat = r["latency_ms"]
            vs = r.get("vs_baseline") or {}
            speed = "baseline" if r["role"] == "baseline" else (
                f"{vs['speedup_p50']:.2f}x" if vs.get("speedup_p50") else "-")
            rows.append([r["id"], str(r["threads"]), _f(lat.get("p50"), 3), _f(lat.get("p90"), 3), _f(lat.get("p99"), 3),
                         _f(lat.get("min"), 3), _f(lat.get("std"), 3), str(lat.get("n")), speed])
        for r in d["incomplete"]:
            skipped = r.get("kind") == "skipped"
            style = "yellow" if skipped else "red"
            rows.append([Text(r["id"], style=style), str(r["threads"]), *["-"] * 6,
                         Text("skipped" if skipped else "incomplete", style=style)])
        headers = ["artifact", "thr", "p50 ms", "p90 ms", "p99 ms", "min ms", "std ms", "n", "speed-up"]
        print_table(console, title, headers, rows, right=tuple(headers[1:]), optional=("p90 ms", "min ms", "std ms", "n"),
                    notes={"thr": "runtime threads", "speed-up": "p50 of the baseline / p50 of the artifact"})
        if d["results"]:
            cold_rows, tp_rows = [], []
            for r in d["results"]:
                cold, comp = r["cold_start_s"], r["compute"]
                cold_rows.append([r["id"], str(r["threads"]), *(_f(cold.get(k), 3) for k in
                                  ("process_start", "runtime_import", "model_load", "first_inference", "total")),
                                  _mb((r.get("memory") or {}).get("peak_rss_bytes")), _mb(r.get("size_bytes"))])
                tp_rows.append([r["id"], str(r["threads"]),
                                " ".join(f"b{x['batch']} {x['items_per_s']:.0f}/s" for x in r.get("throughput") or []) or "-",
                                _f(comp.get("gops"), 1), _f(comp.get("percent_of_peak"), 1),
                                _f((r.get("energy") or {}).get("cpu_ms_per_inference"), 3),
                                _f((r.get("energy") or {}).get("mj_per_inference"), 2)])
            headers = ["artifact", "thr", "start", "import", "load", "1st run", "total", "peak RSS", "size"]
            print_table(console, "cold start in a fresh process (s), memory", headers, cold_rows,
                        right=tuple(headers[1:]), optional=("import", "load", "1st run", "start"))
            headers = ["artifact", "thr", "throughput", "GOP/s", "% peak", "CPU ms/inf", "mJ/inf (est.)"]
            print_table(console, "throughput, roofline, energy", headers, tp_rows, right=tuple(headers[1:]),
                        wrap=("throughput",), optional=("CPU ms/inf",))
        for r in d["incomplete"]:
            if r.get("kind") == "skipped":
                console.print(Text.assemble(("skipped", "yellow"), f" {r['id']}: "
                                            f"{str(r['reason']).removeprefix('skipped: ')}"))
            else:
                console.print(Text.assemble(("incomplete", "red"), f" {r['id']} @{r['threads']}t: {r['reason']}"))
        peaks = d["machine"].get("peaks") or {}
        for th, p in peaks.items():
            if "error" in p:
                console.print(f"roofline at {th} thread(s): {p['error']}", highlight=False)
            else:
                console.print(f"machine peak at {th} thread(s): {p['fp32_gops']:g} GFLOP/s fp32, {p['int8_gops']:g} GOP/s int8"
                              f" ({'cached' if p.get('cached') else 'measured now'}: ORT GEMM)", highlight=False)
        notes = {(r.get("compute") or {}).get("note") for r in d["results"]} - {None}
        for n in sorted(notes):
            console.print(f"note: {n}", highlight=False)
        if d["results"]:
            console.print(f"energy: {d['results'][0]['energy']['method']}", highlight=False)
        for n in d.get("notes", []):
            console.print(f"note: {n}", highlight=False)


def _f(x: Any, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _mb(n: Any) -> str:
    return size_text(n) if n else "-"
