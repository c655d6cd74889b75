"""The audit as one self-contained HTML page: no scripts from elsewhere, no fonts, no requests.

Per model: its findings, the layer chain drawn as SVG with the layers a finding names in red, and plots by
depth of activation scale (log), zero fraction and value histograms, so a person sees where it goes wrong.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

COLOR = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#222;max-width:1100px}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2.5rem;border-bottom:1px solid #ddd}
.finding{border-left:4px solid;padding:.3rem .8rem;margin:.5rem 0;background:#fafafa}
.error{border-color:#c62828}.warning{border-color:#ef6c00}.info{border-color:#1565c0}
.code{font-weight:600}.muted{color:#666}.plots{display:flex;flex-wrap:wrap;gap:1rem}
svg text{font:11px system-ui,sans-serif}
table{border-collapse:collapse}td,th{padding:.15rem .6rem;border-bottom:1px solid #eee;text-align:left}
"""


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def layer_graph(model: dict[str, Any]) -> str:
    layers = model["layers"]
    flagged: dict[str, str] = {}
    for f in model["findings"]:
        for name in f["layers"]:
            if flagged.get(name) != "error":
                flagged[name] = f["severity"]
    width, box = 150, 26
    rows = [
        f'<rect x="10" y="{10 + i * (box + 12)}" width="{width}" height="{box}" rx="4" '
        f'fill="{COLOR.get(flagged.get(layer["name"], ""), "#eceff1")}" '
        f'fill-opacity="{0.85 if layer["name"] in flagged else 1}"/>'
        f'<text x="18" y="{27 + i * (box + 12)}" fill="{"#fff" if layer["name"] in flagged else "#222"}">'
        f"{e(layer['name'][:22])}</text>"
        f'<text x="{width + 20}" y="{27 + i * (box + 12)}" class="muted">{e(layer.get("class") or "")} '
        f"{e(layer.get('output_shape') or '')}</text>"
        + (
            f'<line x1="85" y1="{10 + i * (box + 12) - 12}" x2="85" y2="{10 + i * (box + 12)}" stroke="#999"/>'
            if i
            else ""
        )
        for i, layer in enumerate(layers)
    ]
    height = 20 + len(layers) * (box + 12)
    return f'<svg width="520" height="{height}" role="img" aria-label="layer graph">{"".join(rows)}</svg>'


def line_plot(title: str, values: list[float | None], log: bool) -> str:
    points = [(i, v) for i, v in enumerate(values) if v is not None and (v > 0 or not log)]
    w, h, pad = 320, 160, 30
    if not points:
        return f'<svg width="{w}" height="{h}"><text x="10" y="20">{e(title)}: no data</text></svg>'
    ys = [math.log10(v) if log else v for _, v in points]
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or 1.0
    n = max(len(values) - 1, 1)
    coords = [
        (pad + i * (w - 2 * pad) / n, h - pad - (y - lo) / span * (h - 2 * pad))
        for (i, _), y in zip(points, ys, strict=True)
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#1565c0"/>' for x, y in coords)

    def label(value: float) -> str:
        return f"{10**value:.2g}" if log else f"{value:.2f}"

    return (
        f'<svg width="{w}" height="{h}" role="img" aria-label="{e(title)}">'
        f'<text x="{pad}" y="14">{e(title)}</text>'
        f'<text x="2" y="{pad + 4}">{label(hi)}</text><text x="2" y="{h - pad}">{label(lo)}</text>'
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#bbb"/>'
        f'<polyline points="{path}" fill="none" stroke="#1565c0"/>{dots}'
        f'<text x="{pad}" y="{h - 8}" class="muted">layer depth →</text></svg>'
    )


def histograms(model: dict[str, Any]) -> str:
    """Each layer's value range and spread by depth: a bar from min to max, a tick at the mean."""
    rows = [(layer["name"], layer["activation"]) for layer in model["layers"] if layer.get("activation")]
    if not rows:
        return ""
    lo: float = min(a["min"] for _, a in rows)
    hi: float = max(a["max"] for _, a in rows)
    span = (hi - lo) or 1.0
    w, row = 320, 14

    def x(value: float) -> float:
        return 110 + (value - lo) / span * (w - 120)

    bars = "".join(
        f'<text x="2" y="{20 + i * row}">{e(name[:16])}</text>'
        f'<line x1="{x(a["min"]):.1f}" y1="{16 + i * row}" x2="{x(a["max"]):.1f}" y2="{16 + i * row}" '
        'stroke="#90a4ae" stroke-width="6"/>'
        f'<line x1="{x(a["mean"]):.1f}" y1="{11 + i * row}" x2="{x(a["mean"]):.1f}" y2="{21 + i * row}" '
        'stroke="#c62828" stroke-width="2"/>'
        for i, (name, a) in enumerate(rows)
    )
    return f'<svg width="{w}" height="{30 + len(rows) * row}" role="img" aria-label="value ranges">{bars}</svg>'


def model_section(model: dict[str, Any]) -> str:
    name = Path(model["source"]).name
    if model["error"]:
        return f'<h2>{e(name)}</h2><div class="finding error">not audited: {e(model["error"]["message"])}</div>'
    findings = (
        "".join(
            f'<div class="finding {e(f["severity"])}"><span class="code">{e(f["code"])}</span> '
            f'<span class="muted">{e(f["severity"])} · {e(", ".join(f["layers"]))}</span><br>{e(f["message"])}'
            f'<br><span class="muted">Fix: {e(f["suggestion"])}</span></div>'
            for f in model["findings"]
        )
        or '<p class="muted">No findings.</p>'
    )
    acts = [layer.get("activation") or {} for layer in model["layers"]]
    scale = [math.sqrt(a["std"] ** 2 + a["mean"] ** 2) if a else None for a in acts]
    zeros = [a.get("zero_fraction") if a else None for a in acts]
    return (
        f'<h2>{e(name)}</h2><p class="muted">{e(model["parameters"])} parameters · '
        f"sha256 {e(model['sha256'][:16])}…</p>"
        f"{findings}<div class='plots'>{layer_graph(model)}<div>"
        f"{line_plot('activation scale (RMS, log10)', scale, log=True)}"
        f"{line_plot('zero fraction', zeros, log=False)}{histograms(model)}</div></div>"
    )


def to_html(doc: dict[str, Any]) -> str:
    counts = {s: sum(f["severity"] == s for m in doc["models"] for f in m["findings"]) for s in COLOR}
    summary = " · ".join(f"{n} {s}" for s, n in counts.items())
    body = "".join(model_section(m) for m in doc["models"])
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>layerscope audit</title>'
        f"<style>{STYLE}</style></head><body><h1>layerscope audit</h1>"
        f"<p>{len(doc['models'])} models · {e(summary)}</p>{body}</body></html>"
    )
