"""The audit as one self-contained HTML page (no scripts, fonts or requests), made to be read for a model zoo.

First a summary table (every model with its worst severity, counts and a link), then one section per model,
worst first: its findings with long layer lists folded, a strip of its layers by depth coloured where the
findings are, plots by depth of activation scale and zero fraction, the flagged layers with their value
histograms, and the whole layer list folded. Full names and numbers show on hover.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from layerscope.cli.audit import plots
from layerscope.cli.audit.names import SHOWN_LAYER_NAMES, plural, short_names
from layerscope.cli.audit.plots import COLOR, e

SEVERITIES = ("error", "warning", "info")
RANK = {"not audited": 4, "error": 3, "warning": 2, "info": 1, "clean": 0}
SHOWN_NAMES = SHOWN_LAYER_NAMES
"""Layer names a finding lists before the rest fold away (as the table does)."""
SHOWN_PER_CODE = 3
"""Findings of one code shown before the rest fold away."""
SHOWN_FLAGGED = 12
"""Flagged layers shown with their histograms before the rest fold away."""
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#222;max-width:1000px}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2.5rem;border-bottom:1px solid #ddd}
.finding{border-left:4px solid;padding:.3rem .8rem;margin:.5rem 0;background:#fafafa}
.error{border-color:#c62828}.warning{border-color:#ef6c00}.info{border-color:#1565c0}.clean{border-color:#2e7d32}
.badge{display:inline-block;padding:0 .5rem;border-radius:.6rem;color:#fff;font-size:12px}
.badge.error,.badge.not-audited{background:#c62828}.badge.warning{background:#ef6c00}
.badge.info{background:#1565c0}.badge.clean{background:#2e7d32}
.code{font-weight:600}.muted{color:#666;fill:#666}
svg text{font:11px system-ui,sans-serif}svg{display:block;margin:.4rem 0;max-width:100%;height:auto}
table{border-collapse:collapse}td,th{padding:.15rem .6rem;border-bottom:1px solid #eee;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
details{margin:.4rem 0}summary{cursor:pointer;color:#1565c0}
.name{max-width:22rem;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
"""


def worst(model: dict[str, Any]) -> str:
    if model["error"]:
        return "not audited"
    found = {f["severity"] for f in model["findings"]}
    return next((s for s in SEVERITIES if s in found), "clean")


def counts(model: dict[str, Any]) -> dict[str, int]:
    return {s: sum(f["severity"] == s for f in model["findings"]) for s in SEVERITIES}


def badge(severity: str) -> str:
    return f'<span class="badge {e(severity.replace(" ", "-"))}">{e(severity)}</span>'


def to_html(doc: dict[str, Any]) -> str:
    names = short_names(m["source"] for m in doc["models"])
    ordered = sorted(doc["models"], key=lambda m: (-RANK[worst(m)], names[m["source"]]))
    anchors = {m["source"]: f"model-{i}" for i, m in enumerate(ordered)}
    sections = "".join(model_section(m, names[m["source"]], anchors[m["source"]]) for m in ordered)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>layerscope audit</title>'
        f"<style>{STYLE}</style></head><body><h1>layerscope audit</h1>"
        f"<p>{e(headline(doc['models']))}</p>{summary_table(ordered, names, anchors)}{sections}</body></html>"
    )


def headline(models: Sequence[dict[str, Any]]) -> str:
    failed = sum(1 for m in models if m["error"])
    total = {s: sum(counts(m)[s] for m in models) for s in SEVERITIES}
    parts = [plural(len(models), "model"), f"{len(models) - failed} audited"]
    if failed:
        parts.append(f"{failed} not audited")
    parts += [plural(total["error"], "error"), plural(total["warning"], "warning"), f"{total['info']} info"]
    return " · ".join(parts)


def summary_table(models: Sequence[dict[str, Any]], names: dict[str, str], anchors: dict[str, str]) -> str:
    head = "<tr><th>model</th><th>worst</th><th>errors</th><th>warnings</th><th>info</th><th>layers</th>"
    head += "<th>parameters</th><th>seconds</th></tr>"
    rows = "".join(
        f'<tr><td class="name" title="{e(m["source"])}"><a href="#{anchors[m["source"]]}">{e(names[m["source"]])}</a>'
        f"</td><td>{badge(worst(m))}</td>"
        + "".join(f'<td class="num">{n}</td>' for n in counts(m).values())
        + f'<td class="num">{len(m["layers"])}</td><td class="num">{m["parameters"]:,}</td>'
        f'<td class="num">{m.get("seconds", 0):.1f}</td></tr>'
        for m in models
    )
    return f'<table aria-label="summary">{head}{rows}</table>'


def model_section(model: dict[str, Any], name: str, anchor: str) -> str:
    title = f'<h2 id="{anchor}" title="{e(model["source"])}">{e(name)} {badge(worst(model))}</h2>'
    if model["error"]:
        error = model["error"]
        return f'{title}<div class="finding error">not audited ({e(error["code"])}): {e(error["message"])}</div>'
    flagged = flagged_layers(model)
    findings = findings_html(model["findings"])
    acts = [layer.get("activation") or {} for layer in model["layers"]]
    scale = [((a["std"] ** 2 + a["mean"] ** 2) ** 0.5 if a else None) for a in acts]
    zeros = [a.get("zero_fraction") if a else None for a in acts]
    return (
        f'{title}<p class="muted">{model["parameters"]:,} parameters · {len(model["layers"])} layers · '
        f"sha256 {e(model['sha256'][:16])}…</p>{findings}"
        f"{plots.depth_strip(model['layers'], flagged)}"
        f"{plots.line_plot('activation scale by depth (RMS, log10)', model['layers'], scale, True, flagged)}"
        f"{plots.line_plot('zero fraction by depth', model['layers'], zeros, False, flagged)}"
        f"{probe_plots(model, flagged)}"
        f"{flagged_table(model, flagged)}{layer_list(model, flagged)}"
    )


def probe_plots(model: dict[str, Any], flagged: dict[str, str]) -> str:
    """The training probe's loss by step and its gradient norms by depth (first and last step), when one ran."""
    probe = model.get("probe")
    if not probe or not probe["steps"]:
        return ""
    steps = probe["steps"]
    points = [{"name": f"step {s['step']}", "class": "loss"} for s in steps]
    losses = [_float(s["loss"]) for s in steps]
    first, last = steps[0]["gradient_norms"], steps[-1]["gradient_norms"]
    layers = model["layers"]
    return (
        f'<p class="muted">training probe: {plural(len(steps) - 1, "step")} of {plots.e(probe["optimizer"])} on '
        f"{plots.e(probe['loss'])}</p>"
        f"{plots.line_plot('probe loss by step (log10)', points, losses, True, {}, axis='probe step →')}"
        + plots.line_plot(
            "gradient norm by depth, before the first step (log10)",
            layers,
            [_float(first.get(x["name"])) for x in layers],
            True,
            flagged,
        )
        + plots.line_plot(
            f"gradient norm by depth, after {len(steps) - 1} steps (log10)",
            layers,
            [_float(last.get(x["name"])) for x in layers],
            True,
            flagged,
        )
    )


def _float(value: Any) -> float | None:
    """Numbers as the JSON report writes them: a float, or "nan"/"inf" for non-finite ones (not drawn)."""
    return float(value) if isinstance(value, int | float) else None


def flagged_layers(model: dict[str, Any]) -> dict[str, str]:
    """Layer name -> the worst severity of a finding that names it."""
    flagged: dict[str, str] = {}
    for f in model["findings"]:
        for name in f["layers"]:
            if RANK[f["severity"]] > RANK.get(flagged.get(name, "clean"), 0):
                flagged[name] = f["severity"]
    return flagged


def findings_html(findings: Sequence[dict[str, Any]]) -> str:
    """Worst first; a code that fires on many layers one finding at a time shows a few, the rest folded."""
    if not findings:
        return '<p class="muted">No findings.</p>'
    by_code: dict[str, list[dict[str, Any]]] = {}
    for f in sorted(findings, key=lambda f: -RANK[f["severity"]]):
        by_code.setdefault(f["code"], []).append(f)
    parts: list[str] = []
    for code, group in by_code.items():
        parts.extend(finding_block(f) for f in group[:SHOWN_PER_CODE])
        if len(group) > SHOWN_PER_CODE:
            rest = "".join(finding_block(f) for f in group[SHOWN_PER_CODE:])
            extra = len(group) - SHOWN_PER_CODE
            noun = "finding" if extra == 1 else "findings"
            parts.append(f"<details><summary>{extra} more {e(code)} {noun}</summary>{rest}</details>")
    return "".join(parts)


def finding_block(f: dict[str, Any]) -> str:
    layers = f["layers"]
    shown = ", ".join(layers[:SHOWN_NAMES])
    rest = ""
    if len(layers) > SHOWN_NAMES:
        rest = (
            f"<details><summary>and {plural(len(layers) - SHOWN_NAMES, 'more layer')}</summary>"
            f"{e(', '.join(layers[SHOWN_NAMES:]))}</details>"
        )
    return (
        f'<div class="finding {e(f["severity"])}"><span class="code">{e(f["code"])}</span> '
        f'<span class="muted">{e(f["severity"])} · {e(shown)}</span>{rest}<br>{e(f["message"])}'
        f'<br><span class="muted">Fix: {e(f["suggestion"])}</span></div>'
    )


def flagged_table(model: dict[str, Any], flagged: dict[str, str]) -> str:
    # Worst first, then by depth: the error on the head shows before a hundred info rows.
    rows = sorted(
        (layer for layer in _numbered(model) if layer["name"] in flagged),
        key=lambda layer: (-RANK[flagged[layer["name"]]], layer["index"]),
    )
    if not rows:
        return ""
    shown = _layer_rows(rows[:SHOWN_FLAGGED], flagged, histograms=True)
    table = f'<table aria-label="flagged layers">{_HEAD_WITH_HISTOGRAM}{shown}</table>'
    if len(rows) > SHOWN_FLAGGED:
        more = _layer_rows(rows[SHOWN_FLAGGED:], flagged, histograms=True)
        table += (
            f"<details><summary>{plural(len(rows) - SHOWN_FLAGGED, 'more flagged layer')}</summary>"
            f'<table aria-label="more flagged layers">{_HEAD_WITH_HISTOGRAM}{more}</table></details>'
        )
    return f"<h3>Flagged layers ({len(rows)})</h3>{table}"


def layer_list(model: dict[str, Any], flagged: dict[str, str]) -> str:
    rows = _layer_rows(_numbered(model), flagged, histograms=False)
    return (
        f"<details><summary>All {len(model['layers'])} layers</summary>"
        f'<table aria-label="all layers">{_HEAD}{rows}</table></details>'
    )


_COLUMNS = "<th>#</th><th>layer</th><th>class</th><th>output shape</th><th>mean</th><th>std</th><th>zeros</th>"
_HEAD = f"<tr>{_COLUMNS}</tr>"
_HEAD_WITH_HISTOGRAM = f"<tr>{_COLUMNS}<th>activation histogram</th></tr>"


def _layer_rows(layers: Sequence[dict[str, Any]], flagged: dict[str, str], histograms: bool) -> str:
    return "".join(_layer_row(layer, flagged, histograms) for layer in layers)


def _numbered(model: dict[str, Any]) -> list[dict[str, Any]]:
    """The layers with their depth (`index`), so a folded-away row still says where it sits."""
    return [{**layer, "index": i} for i, layer in enumerate(model["layers"])]


def _layer_row(layer: dict[str, Any], flagged: dict[str, str], histogram: bool) -> str:
    a = layer.get("activation") or {}
    numbers = (
        f'<td class="num">{a["mean"]:.3g}</td><td class="num">{a["std"]:.3g}</td>'
        f'<td class="num">{a["zero_fraction"]:.0%}</td>'
        if a
        else '<td></td><td></td><td class="muted">no activation</td>'
    )
    severity = flagged.get(layer["name"])
    mark = f' style="border-left:4px solid {COLOR[severity]}"' if severity else ""
    cell = ""
    if histogram:
        h = layer.get("histogram")
        cell = f"<td>{plots.histogram(layer['name'], h['counts'], h['range'], h.get('sample')) if h else ''}</td>"
    shape = tuple(layer.get("output_shape") or ())
    return (
        f'<tr{mark}><td class="num">{layer.get("index", "")}</td>'
        f'<td class="name" title="{e(layer["name"])}">{e(layer["name"])}</td><td>{e(layer.get("class") or "")}</td>'
        f"<td>{e(shape)}</td>{numbers}{cell}</tr>"
    )
