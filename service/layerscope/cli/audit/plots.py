"""The HTML report's SVG plots, drawn to stay readable from a handful of layers to several hundred: a fixed
width whatever the depth, no labels that collide, and every layer's full name and numbers on hover (<title>)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

COLOR = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}
NEUTRAL = "#cfd8dc"
WIDTH = 960
"""Every plot is this wide, so depth spreads across the page instead of down it."""
MAX_DOTS = 80
"""Up to this many layers each gets a dot; past it the line alone reads better."""


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def layer_label(index: int, layer: dict[str, Any]) -> str:
    shape = layer.get("output_shape")
    return f"#{index} {layer['name']} ({layer.get('class') or '?'}) {tuple(shape) if shape else ''}".strip()


def depth_strip(layers: Sequence[dict[str, Any]], flagged: dict[str, str]) -> str:
    """One thin bar per layer in depth order, coloured by the worst finding on it: where the trouble sits."""
    if not layers:
        return ""
    height, step = 26, WIDTH / len(layers)
    bars = "".join(
        f'<rect x="{i * step:.2f}" y="0" width="{max(step - (1 if step > 3 else 0), 0.5):.2f}" height="{height}" '
        f'fill="{COLOR.get(flagged.get(layer["name"], ""), NEUTRAL)}"><title>{e(_strip_title(i, layer, flagged))}'
        "</title></rect>"
        for i, layer in enumerate(layers)
    )
    return (
        f'<svg class="strip" width="{WIDTH}" height="{height + 16}" viewBox="0 0 {WIDTH} {height + 16}" role="img" '
        f'aria-label="layers by depth">{bars}<text x="0" y="{height + 13}" class="muted">input</text>'
        f'<text x="{WIDTH}" y="{height + 13}" text-anchor="end" class="muted">'
        f"output ({len(layers)} layers)</text></svg>"
    )


def _strip_title(index: int, layer: dict[str, Any], flagged: dict[str, str]) -> str:
    severity = flagged.get(layer["name"])
    return layer_label(index, layer) + (f" - {severity}" if severity else "")


def line_plot(
    title: str,
    layers: Sequence[dict[str, Any]],
    values: Sequence[float | None],
    log: bool,
    flagged: dict[str, str],
    axis: str = "layer depth →",
) -> str:
    """A value by depth (or by whatever `layers` and `axis` name); flagged layers as coloured dots, every
    layer's value on hover."""
    height, pad = 150, 34
    points = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v) and (v > 0 or not log)]
    if not points:
        label = f'<text x="0" y="20">{e(title)}: no data</text>'
        return f'<svg width="{WIDTH}" height="30" role="img" aria-label="{e(title)}">{label}</svg>'
    ys = [math.log10(v) if log else v for _, v in points]
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or 1.0
    step = (WIDTH - 2 * pad) / max(len(values) - 1, 1)

    def x(i: int) -> float:
        return pad + i * step

    def y(value: float) -> float:
        return height - pad - (value - lo) / span * (height - 2 * pad)

    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for (i, _), v in zip(points, ys, strict=True))
    dots = "".join(
        f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{3 if name in flagged else 2}" '
        f'fill="{COLOR.get(flagged.get(name, ""), "#1565c0")}"/>'
        for (i, _), v in zip(points, ys, strict=True)
        for name in [layers[i]["name"]]
        if name in flagged or len(values) <= MAX_DOTS
    )
    hover = "".join(
        f'<rect x="{x(i) - step / 2:.1f}" y="{pad - 6}" width="{max(step, 1):.2f}" height="{height - 2 * pad + 12}" '
        f'fill="transparent"><title>{e(layer_label(i, layers[i]))}: {raw:.4g}</title></rect>'
        for i, raw in points
    )
    return (
        f'<svg width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{e(title)}">'
        f'<text x="{pad}" y="14">{e(title)}</text>'
        f'<text x="0" y="{pad + 4}">{_tick(hi, log)}</text><text x="0" y="{height - pad}">{_tick(lo, log)}</text>'
        f'<line x1="{pad}" y1="{height - pad}" x2="{WIDTH - pad}" y2="{height - pad}" stroke="#bbb"/>'
        f'<polyline points="{line}" fill="none" stroke="#1565c0" stroke-width="1.5"/>{dots}{hover}'
        f'<text x="{pad}" y="{height - 10}" class="muted">{e(axis)}</text></svg>'
    )


def _tick(value: float, log: bool) -> str:
    return f"{10**value:.2g}" if log else f"{value:.2f}"


def histogram(name: str, counts: Sequence[int], value_range: Sequence[float], sample: int | None = None) -> str:
    """A layer's activation histogram (the capture's bins), small enough to sit in a table row.

    The bars are one path, not a shape each: a report of hundreds of flagged layers stays small. A histogram
    binned from a sample says so, in its title and with a "sampled" mark a reader sees without hovering.
    """
    w, h = 200, 48
    total = max(sum(counts), 1)
    peak = max(counts, default=0) or 1
    bar = w / max(len(counts), 1)
    lo, hi = (value_range[0], value_range[1]) if len(value_range) == 2 else (0.0, 0.0)
    path = "".join(
        f"M{i * bar:.1f} {h - 12}v{-c / peak * (h - 14):.1f}h{max(bar - 1, 0.5):.1f}v{c / peak * (h - 14):.1f}z"
        for i, c in enumerate(counts)
        if c
    )
    top = max(range(len(counts)), key=lambda i: counts[i], default=0)
    width = (hi - lo) / max(len(counts), 1)
    binned = f"an estimate from a fixed sample of {sample} finite values" if sample else f"{sum(counts)} finite values"
    title = (
        f"{name}: {binned} in [{lo:.3g}, {hi:.3g}]; the fullest bin "
        f"[{lo + top * width:.3g}, {lo + (top + 1) * width:.3g}) holds {peak / total:.0%}"
    )
    mark = f'<text x="{w / 2}" y="10" text-anchor="middle" class="muted">sampled, n={sample}</text>' if sample else ""
    return (
        f'<svg width="{w}" height="{h}" role="img" aria-label="histogram of {e(name)}"><title>{e(title)}</title>'
        f'<path d="{path}" fill="#546e7a"/>{mark}<text x="0" y="{h - 1}" class="muted">{lo:.3g}</text>'
        f'<text x="{w}" y="{h - 1}" text-anchor="end" class="muted">{hi:.3g}</text></svg>'
    )
