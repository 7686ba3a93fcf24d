"""The report's sections beyond the artifacts table, one per manifest stage: the environment (and
the benchmark's warnings), the analysis, the bundle, the sample predictions, compression and
compare-cloud. Each gives None when its stage did not run."""

from __future__ import annotations

from typing import Any

from ..manifest import Manifest, as_dict, as_list, as_num, as_pos, as_text

__all__ = ["environment", "analysis", "bundle", "predictions", "compression", "cloud"]


def environment(m: Manifest, bench: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    env = m.environment
    machine = as_dict(bench.get("machine"))
    settings = as_dict(bench.get("settings"))
    load = as_dict(machine.get("load_average"))
    cpus = as_num(env.get("cpu_count")) or as_num(machine.get("cpu_count"))
    versions = {as_text(k, 60): as_text(v, 60) for k, v in as_dict(env.get("tool_versions")).items()}
    for r in rows:
        if r["bench"]:
            versions.update({k: v for k, v in r["bench"]["runtime"].items() if v not in ("", "?")})
    start = [x for x in as_list(load.get("start")) if as_num(x) is not None]
    end = [x for x in as_list(load.get("end")) if as_num(x) is not None]
    warnings = []
    # did the timed calls get their CPU? one thread that waits shows as CPU time below wall time
    shares = sorted(r["bench"]["cpu_share"] for r in rows if r["bench"] and r["bench"].get("cpu_share") is not None)
    cpu_share = shares[len(shares) // 2] if shares else None
    if cpu_share is not None and cpu_share < 0.85:
        warnings.append(f"the timed calls waited for a CPU: CPU time was {cpu_share:.0%} of wall time (median over the "
                        "1-thread artifacts); compare ratios, not absolute milliseconds, or re-run on a quiet machine")
    noisy = [r["id"] for r in rows if r["bench"] and r["bench"]["p50"] and r["bench"]["p99"]
             and r["bench"]["p99"] > 3 * r["bench"]["p50"]]
    if noisy:
        warnings.append(f"p99 is more than 3× p50 for {', '.join(noisy)}: a long tail (other load, or the runtime "
                        "itself); compare p50s, or re-run on a quiet machine")
    peaks = {}
    for k, p in as_dict(machine.get("peaks")).items():
        p = as_dict(p)
        if as_num(p.get("fp32_gops")) is not None:
            peaks[as_text(k, 8)] = {"fp32_gops": as_num(p.get("fp32_gops")), "int8_gops": as_num(p.get("int8_gops"))}
    return {
        "python": as_text(env.get("python"), 40), "platform": as_text(env.get("platform"), 120),
        "machine": as_text(env.get("machine"), 40), "cpu": as_text(machine.get("cpu"), 120),
        "cpu_count": int(cpus) if cpus else None,
        "threads": [t for t in as_list(settings.get("threads")) if isinstance(t, int)],
        "cpus": as_text(settings.get("cpus"), 60) if settings.get("cpus") is not None else
        ", ".join(sorted({",".join(map(str, r["bench"]["cpus"])) for r in rows if r["bench"] and r["bench"]["cpus"]})) or None,
        "runs": as_num(settings.get("runs")), "rounds": as_num(settings.get("rounds")),
        "warmup": as_num(settings.get("warmup")),
        "load_start": start[:3], "load_end": end[:3], "peaks": peaks, "cpu_share": cpu_share,
        "versions": dict(sorted(versions.items())), "warnings": warnings,
        "bench_notes": [as_text(n, 300) for n in as_list(bench.get("notes"))[:10]],
    }


def analysis(m: Manifest) -> dict[str, Any] | None:
    a = m.stage("analysis")
    if not a:
        return None
    if a.get("error"):
        return {"error": as_text(a["error"])}
    totals = as_dict(a.get("totals"))
    layers = []
    for r in as_list(a.get("layers")):
        if isinstance(r, dict) and as_num(r.get("index")) is not None:
            layers.append({"index": int(r["index"]), "name": as_text(r.get("name"), 120),
                           "module": as_text(r.get("module"), 120) or None, "kind": as_text(r.get("kind"), 30),
                           "macs": as_num(r.get("macs")) or 0.0, "params": as_num(r.get("params")) or 0.0})
    adv = as_dict(a.get("advice"))
    sep = [s for s in as_list(adv.get("separable")) if isinstance(s, dict)]
    roof = as_dict(a.get("roofline"))
    return {
        "error": None, "of": as_text(a.get("of"), 80),
        "macs": as_num(totals.get("macs")), "params": as_num(totals.get("params")), "layers_count": as_num(totals.get("layers")),
        "peak_activation_bytes": as_num(totals.get("peak_activation_bytes")),
        "peak_activation_at": as_text(as_dict(totals.get("peak_activation_at")).get("module")
                                    or as_dict(totals.get("peak_activation_at")).get("layer"), 120),
        "weight_bytes": {k: as_num(as_dict(totals.get("weight_bytes")).get(k)) for k in ("fp32", "fp16", "int8", "as_stored")},
        "macs_by_kind": {as_text(k, 30): as_num(v) for k, v in as_dict(a.get("macs_by_kind")).items() if as_num(v)},
        "top_layers": [{"index": r.get("index"), "name": as_text(r.get("module") or r.get("name"), 120),
                        "kind": as_text(r.get("kind"), 30), "macs": as_num(r.get("macs")), "share": as_num(r.get("macs_share"))}
                       for r in as_list(a.get("top_layers"))[:10] if isinstance(r, dict)],
        "separable": [{"name": as_text(s.get("module") or s.get("name"), 120), "macs": as_num(s.get("macs")),
                       "saving": as_num(s.get("saving_macs")), "share": as_num(s.get("saving_share_of_model")),
                       "ratio": as_num(s.get("ratio"))} for s in sep],
        "separable_count": as_num(adv.get("separable_count")) or len(sep),
        "patterns": _patterns(adv),
        "roofline": {"profile": as_text(as_dict(roof.get("profile")).get("name") or roof.get("profile"), 80),
                     "total_ms": as_num(roof.get("total_ms")), "int8_total_ms": as_num(roof.get("int8_total_ms"))}
        if roof else None,
        "layers": layers,
        "notes": [as_text(n, 300) for n in as_list(a.get("notes"))[:8]],
    }


def _patterns(adv: dict[str, Any]) -> list[dict[str, Any]]:
    """The lighter-layer advice, one entry per suggestion (the layers it applies to listed once)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for p in as_list(adv.get("patterns")):
        if isinstance(p, dict):
            where = as_text(p.get("module") or p.get("layer") or p.get("where"), 120)
            text = as_text(p.get("suggestion"), 400)
            grouped.setdefault((as_text(p.get("pattern"), 40), text), []).append(where)
    return [{"pattern": k[0], "suggestion": k[1], "where": [w for w in v if w]} for k, v in grouped.items()]


def bundle(m: Manifest) -> dict[str, Any] | None:
    b = m.stage("bundle")
    if not b:
        return None
    return {"version": as_text(b.get("version"), 40), "release": b.get("release") if isinstance(b.get("release"), int) else None,
            "tarball": as_text(b.get("tarball"), 200), "public_key": as_text(b.get("public_key"), 200),
            "fallback_order": [as_text(x, 80) for x in as_list(b.get("fallback_order"))],
            "contents": {as_text(k, 120): v for k, v in as_dict(as_dict(b.get("contents")).get("parts")).items() if as_num(v) is not None},
            "files": as_num(as_dict(b.get("contents")).get("files")), "bytes": as_num(as_dict(b.get("contents")).get("bytes")),
            "tarball_bytes": as_num(as_dict(b.get("contents")).get("tarball_bytes"))}


def predictions(m: Manifest) -> dict[str, Any] | None:
    """The sample photos' top-1 as each model saw it: one row per model (the source first), one
    column per photo."""
    p = m.stage("predictions")
    models = [as_text(c, 80) for c in as_list(p.get("artifacts"))]
    photos = {k: as_list(v) for k, v in list(as_dict(p.get("photos")).items())[:12]}
    if not models or not photos:
        return None
    rows = []
    for i, name in enumerate(models):
        cells = []
        for preds in photos.values():
            top = next((x for x in as_list(preds[i] if i < len(preds) else None) if isinstance(x, dict)), None)
            cells.append(None if top is None else {"label": as_text(top.get("label"), 80), "confidence": as_num(top.get("confidence"))})
        rows.append({"model": name, "cells": cells})
    return {"photos": [as_text(k, 60) for k in photos], "rows": rows}


def compression(m: Manifest) -> dict[str, Any] | None:
    """How ``edgeship compress`` made this model (stages.compression), when it did."""
    c = m.stage("compression")
    if not c:
        return None
    fid, before = as_dict(c.get("fidelity")), as_dict(c.get("before_fine_tuning"))
    key = "accuracy" if as_num(fid.get("accuracy")) is not None else "top1_agreement" \
        if as_num(fid.get("top1_agreement")) is not None else "cosine"
    rows = []
    for t, v in list(as_dict(c.get("latency")).items())[:8]:
        v = as_dict(v)
        rows.append({"runtime": as_text(t, 40), "original": as_pos(v.get("original_p50_ms")),
                     "pruned": as_pos(v.get("pruned_p50_ms")), "speedup": as_pos(v.get("speedup"))})
    macs, params = as_dict(c.get("macs")), as_dict(c.get("params"))
    return {"from": as_text(c.get("from"), 200), "method": as_text(c.get("method"), 20), "ratio": as_num(c.get("ratio")),
            "macs_before": as_num(macs.get("before")), "macs_after": as_num(macs.get("after")),
            "macs_removed": as_num(macs.get("removed")), "params_before": as_num(params.get("before")),
            "params_after": as_num(params.get("after")),
            "metric": {"accuracy": "accuracy", "top1_agreement": "top-1 agreement with the original"}.get(key, "cosine"),
            "value": as_num(fid.get(key)), "original": as_num(fid.get("accuracy_fp32")) if key == "accuracy" else None,
            "before_tuning": as_num(before.get(key)), "data": as_text(fid.get("data"), 200),
            "note": as_text(fid.get("note"), 300), "latency": rows}


def cloud(m: Manifest) -> dict[str, Any] | None:
    """``edgeship compare-cloud``'s figures, if it ran on this folder (every value checked: the
    manifest is a file like any other)."""
    c = m.cloud()
    if not c:
        return None  # none, or measured on bytes the folder no longer holds

    def side(name: str, r: Any) -> dict[str, Any]:
        r = as_dict(r)
        return {"name": name, "p50_ms": as_num(r.get("p50_ms")), "p99_ms": as_num(r.get("p99_ms")),
                "bytes_sent": as_num(r.get("bytes_sent")), "bytes_received": as_num(r.get("bytes_received")),
                "error_rate": as_num(r.get("error_rate")), "error": as_text(r.get("error"), 200) if r.get("error") else None}

    sides = [side(f"edge: {as_text(c.get('artifact'), 80)}", c.get("edge"))]
    fast = as_dict(c.get("edge_fastest"))
    if fast:
        sides.append(side(f"edge: {as_text(fast.get('artifact'), 80)} (the fastest)", fast))
    sides += [side(f"cloud, {as_text(n, 20)}", r) for n, r in as_dict(c.get("cloud")).items()]
    sat, cost, img = as_dict(c.get("saturation")), as_dict(c.get("cost")), as_dict(c.get("image"))
    nets = [{"name": as_text(n, 20), "rtt_ms": as_num(as_dict(v).get("rtt_ms")), "jitter_ms": as_num(as_dict(v).get("jitter_ms")),
             "down_mbit": as_num(as_dict(v).get("down_mbit")), "up_mbit": as_num(as_dict(v).get("up_mbit")),
             "source": as_text(as_dict(v).get("source"), 200)} for n, v in as_dict(c.get("networks")).items() if v]
    return {"sides": sides, "networks": nets, "emulation": as_text(c.get("emulation"), 40),
            "emulation_note": as_text(c.get("emulation_note"), 400),
            "image": {"what": as_text(img.get("what"), 200), "bytes": as_num(img.get("bytes"))},
            "saturation": {"clients": as_num(sat.get("clients")), "throughput": as_num(sat.get("throughput_per_s")),
                           "p99_ms": as_num(sat.get("p99_ms"))},
            "cost": {"price_per_hour": as_num(cost.get("price_per_hour")), "per_million": as_num(cost.get("per_million"))}
            if cost else None,
            "requests": as_num(c.get("requests"))}


def task(m: Manifest, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The task's own figures per artifact (:mod:`edgeship.tasks`), beside its fidelity: for a
    voice-activity stream the speech decisions per chunk against the original's (each artifact
    streaming with its own state), the chunk probabilities' worst difference, the latency per
    chunk and the real-time factor (time per chunk / the chunk's audio); for embeddings the
    nearest-neighbour agreement with the original's on the evaluation sentences, beside cosine."""
    t = as_dict(m.source.get("task"))
    kind = as_text(t.get("kind"), 40)
    if kind not in ("voice_activity", "embedding"):
        return None
    by_id = {as_text(r.get("id") or r.get("path"), 80): r for r in m.records}
    chunk_ms = None
    if kind == "voice_activity" and as_pos(t.get("chunk")) and as_pos(t.get("sample_rate")):
        chunk_ms = 1000.0 * float(t["chunk"]) / float(t["sample_rate"])
    out = []
    for r in rows:
        rec = by_id.get(r["id"]) or {}
        v = as_dict(rec.get("verification"))
        f = as_dict(v.get("task"))
        q = as_dict(as_dict(rec.get("details")).get("quantization"))
        steps = [x for x in as_list(q.get("steps")) if isinstance(x, dict)]
        chosen = q.get("chosen") if isinstance(q.get("chosen"), int) and 0 <= q["chosen"] < len(steps) else None
        if not f and chosen is not None:
            f = as_dict(steps[chosen].get("task"))
        p50 = r["bench"]["p50"] if r.get("bench") else None
        row = {"id": r["id"], "precision": r["precision"], "status": r["fidelity"]["status"],
               "cosine": r["fidelity"]["cosine"], "inputs": as_text(v.get("inputs"), 200)}
        if kind == "voice_activity":
            row.update(agreement=as_num(f.get("chunk_agreement")), chunks=as_pos(f.get("chunks")),
                       streams=as_pos(f.get("streams")), max_dp=as_num(f.get("max_prob_diff")),
                       segments=as_num(f.get("segments")), segments_ref=as_num(f.get("segments_reference")),
                       p50_ms=p50, rtf=(p50 / chunk_ms) if p50 and chunk_ms else None)
        else:
            row.update(nn=as_num(f.get("nn_agreement")), mean_cosine=as_num(f.get("mean_cosine")),
                       min_cosine=as_num(f.get("min_cosine")), n=as_pos(f.get("inputs")), p50_ms=p50)
        out.append(row)
    return {"kind": kind, "chunk_ms": chunk_ms, "rows": out,
            "min_agreement": as_num(t.get("min_agreement")) if kind == "voice_activity" else None}
