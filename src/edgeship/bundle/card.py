"""MODEL_CARD.md: what a bundle's model is, how to feed it, how well each artifact keeps to the
source and how fast it ran, where, and what it does not promise. Written from bundle.json alone."""

from __future__ import annotations

from typing import Any

from .._util import share_text


def _md(text: Any) -> str:
    """A value from a model file as inert Markdown text (no markup, no HTML, one line)."""
    s = "".join(ch if ch.isprintable() else " " for ch in str(text))
    for ch in "\\`*_[]<>|#":
        s = s.replace(ch, "\\" + ch)
    return s


def _shape(spec: dict[str, Any]) -> str:
    return "×".join(str(d) for d in spec.get("shape") or [])


def model_card(doc: dict[str, Any]) -> str:
    src = doc.get("source") or {}
    lines = [f"# {_md(doc.get('name'))} {_md(doc.get('version'))}", "",
             f"Release {doc.get('release')} of **{_md(src.get('name'))}**, packaged by edgeship "
             f"{_md(doc.get('edgeship_version'))} on {_md(doc.get('created'))}. "
             f"Source: {_md(src.get('kind'))} model `{_md(src.get('origin'))}` "
             f"(sha256 {_md(str(src.get('digest'))[:16])}…).", "", "## Inputs and outputs", ""]
    for s in src.get("inputs") or []:
        lines.append(f"- input `{_md(s.get('name'))}`: {_md(s.get('dtype'))} {_shape(s)}"
                     + (f", layout {_md(s.get('layout'))}" if s.get("layout") else ""))
    for s in src.get("outputs") or []:
        lines.append(f"- output `{_md(s.get('name'))}`: {_md(s.get('dtype'))} {_shape(s)}")
    pre = src.get("preprocess")
    if pre:
        lines += ["", "## Preprocessing", "",
                  f"Resize so the centre crop of {pre.get('crop_fraction')} of the shorter side becomes "
                  f"{pre.get('width')}×{pre.get('height')} ({_md(pre.get('resample'))}), {_md(pre.get('color'))}, "
                  f"then (pixel − {list(pre.get('mean') or [])}) / {list(pre.get('std') or [])}, layout "
                  f"{_md(pre.get('layout'))}; the model outputs {_md(pre.get('output'))}. An artifact whose input "
                  "is uint8 takes the raw pixels (its normalisation is folded into the model)."]
    if doc.get("labels_count"):
        lines += ["", f"{doc['labels_count']} class labels in `labels.txt`, one per line, in output order."]
    lines += ["", "## Artifacts", "",
              "In fallback order: a device uses the first it can load and that passes its golden vectors.", "",
              "| artifact | runtime | size | fidelity vs source | p50 (ms) | verified by |",
              "|---|---|---|---|---|---|"]
    arts = {a["id"]: a for a in doc.get("artifacts") or []}
    for aid in doc.get("fallback_order") or []:
        a = arts.get(aid) or {}
        f = a.get("fidelity") or {}
        fid = []
        if f.get("cosine_min") is not None:
            fid.append(f"cosine {f['cosine_min']:.4f}")
        if f.get("top1_agreement") is not None:
            fid.append(f"top-1 {share_text(f['top1_agreement'])}")
        bench = a.get("benchmark") or {}
        rt = a.get("runtime") or {}
        p50 = f"{bench['p50_ms']:.2f}" if isinstance(bench.get("p50_ms"), (int, float)) else "-"
        status = f.get("status") or "verified"
        if status == "unverified":
            fid = [x + " on random inputs" for x in fid]
        by = _md(f.get("reference") or "-")
        if status == "unverified":
            by = "**UNVERIFIED**: judged only on random inputs (shipped with --allow-unverified)"
        elif status == "structural":
            by = "structural only (outputs not computed): " + by
        cells = [_md(aid), f"{_md(rt.get('name'))} {_md(rt.get('min_version') or '')}".strip(),
                 f"{(a.get('size_bytes') or 0) / 1e6:.2f} MB", ", ".join(fid) or "-", p50, by]
        lines.append("| " + " | ".join(cells) + " |")
    unverified = [_md(a.get("id")) for a in doc.get("artifacts") or [] if (a.get("fidelity") or {}).get("status") == "unverified"]
    if unverified:
        lines += ["", f"**Unverified**: {', '.join(unverified)} {'was' if len(unverified) == 1 else 'were'} judged only on "
                  "random inputs, which say nothing of a reduced precision's accuracy on real data; they are tried "
                  "after every verified artifact. Check them on real inputs before relying on them."]
    left = [x for x in doc.get("left_out") or [] if isinstance(x, dict)]
    if left:
        lines += ["", "Left out of this release: " + "; ".join(f"{_md(x.get('id'))} ({_md(x.get('why'))}: {_md(x.get('fix'))})"
                                                          for x in left) + "."]
    env = doc.get("environment") or {}
    lines += ["", "## How it was measured", "",
              "Fidelity: each artifact against its source on real inputs (fp32: every element within the "
              "tolerance; fp16/int8: cosine per output and top-1 agreement for class scores, on evaluation "
              "inputs never used for calibration). Latency: `edgeship deploy --benchmark` when it was run, "
              f"on {_md(env.get('machine'))} {_md(env.get('platform'))} ({env.get('cpu_count')} CPUs); "
              "a phone will differ. Golden vectors (`golden/`) let a device check the model it loaded.", "",
              "## Limits", "",
              "- The figures hold for inputs like the ones measured; they say nothing of data the model "
              "was not trained for.",
              "- edgeship checks conversions, not training: a biased or poisoned source model stays so.",
              "- Core ML predicts only on Apple devices; its artifacts are checked structurally here (weights, names, "
              "types), not verified: run them on a Mac or an iOS device before shipping.", ""]
    return "\n".join(lines)
