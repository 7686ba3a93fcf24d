"""The report pages' jinja environment (the deploy report, compress's and sweep's pages): autoescaped,
strict, with the number filters the templates share."""

from __future__ import annotations

from typing import Any

from .._table import count_text, size_text
from .._util import share_text

__all__ = ["environment", "REPORT_HTML"]

#: the page a report folder gets (deploy's, compress's, sweep's)
REPORT_HTML = "report.html"


def _filters() -> dict[str, Any]:
    def ms(x: float | None) -> str:
        return "–" if x is None else f"{x:.3g}" if x < 10 else f"{x:.1f}"

    def secs(x: float | None) -> str:
        return "–" if x is None else f"{x:.2f} s"

    def big(x: float | None) -> str:
        return count_text(x, none="–")

    def fidelity(f: dict[str, Any]) -> str:
        if f["value"] is None:
            return "–"
        text = share_text(f["value"]) if f["metric"] == "top-1 agreement" else f"cos {f['value']:.4f}"
        return text + " (random inputs)" if f.get("status") == "unverified" else text

    def change(c: dict[str, Any], kind: str) -> str:
        if c["new"] is None and c["old"] is None:
            return "–"
        if c["delta"] is None:
            return "new only" if c["old"] is None else "not measured now"
        if kind == "fid":
            return f"{c['new']:.1%} ({100 * c['delta']:+.1f} pt)" if abs(c["new"]) <= 1 else f"{c['new']:.4f}"
        shown = {"size": size_text(c["new"]), "ms": f"{ms(c['new'])} ms", "s": secs(c["new"])}[kind]
        return f"{shown} ({c['rel']:+.0%})" if c["rel"] is not None else shown

    return {"ms": ms, "secs": secs, "big": big, "size": size_text, "fidelity": fidelity, "change": change}


def environment() -> Any:
    """The templates' jinja environment: autoescaped, strict, with the report's number filters."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("edgeship.reporting", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(_filters())
    return env
