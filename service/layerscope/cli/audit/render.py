"""The audit as people and tools read it: a table, a one-line summary, a progress bar, and the report file
in the chosen format (table, json, sarif, html)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, TimeElapsedColumn
from rich.table import Table

from layerscope.cli.audit.names import display_name, folded, plural, short_names
from layerscope.service.audit import report

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def unwritable(output: Path | None) -> str | None:
    """Why the report cannot go to `output`, told before the audit spends its time; None when it can."""
    if output is None:
        return None
    if output.is_dir():
        return f"expected a file for --output; received {str(output)!r}, which is a folder"
    if not output.parent.is_dir():
        return f"expected --output in an existing folder; {str(output.parent)!r} does not exist (create it first)"
    return None


def write(doc: report.Document, fmt: str, output: Path | None) -> None:
    """The report in `fmt`, to `output` or stdout."""
    if fmt == "table":
        # A pipe or a CI log has no width of its own: give the message column room to be read.
        width = None if sys.stdout.isatty() else 160
        target = Console(file=output.open("w"), width=160) if output else Console(width=width)
        table(doc, target)
        return
    if fmt == "sarif":
        from layerscope.cli.audit.sarif import to_sarif

        text = json.dumps(to_sarif(doc), indent=2)
    elif fmt == "html":
        from layerscope.cli.audit.html import to_html

        text = to_html(doc)
    else:
        text = json.dumps(doc, indent=2)
    if output:
        output.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")


def table(doc: report.Document, console: Console) -> None:
    rows = Table(title="layerscope audit", show_lines=True)
    rows.add_column("model", overflow="fold", max_width=24)
    rows.add_column("severity", no_wrap=True)
    rows.add_column("code", overflow="fold", max_width=22)
    rows.add_column("layers", overflow="fold", max_width=24)
    rows.add_column("message", overflow="fold", ratio=1)
    names = short_names(m["source"] for m in doc["models"])  # the full path is in the JSON report
    for model in doc["models"]:
        name = display_name(names[model["source"]])
        if model["error"]:
            rows.add_row(name, "[bold red]not audited[/]", model["error"]["code"], "", model["error"]["message"])
        elif not model["findings"]:
            rows.add_row(name, "[green]clean[/]", "", "", "")
        for f in model["findings"]:
            sev = f["severity"]
            # Folded as the HTML folds them: a ResNet's 106 layer names would fill the cell and the screen.
            message = escape(f["message"]) + (f"\n[dim]Fix: {escape(f['suggestion'])}[/]" if f["suggestion"] else "")
            rows.add_row(name, f"[{STYLE[sev]}]{sev}[/]", f["code"], escape(folded(f["layers"])), message)
    console.print(rows)


def summary(doc: report.Document, console: Console) -> None:
    """What a person wants at the end: how many, how bad, and which models took longest."""
    models = doc["models"]
    counts = {s: sum(f["severity"] == s for m in models for f in m["findings"]) for s in ("error", "warning", "info")}
    failed = sum(1 for m in models if m["error"])
    console.print(
        f"audited {len(models) - failed} of {plural(len(models), 'model')}: "
        f"[bold red]{plural(counts['error'], 'error')}[/], [yellow]{plural(counts['warning'], 'warning')}[/], "
        f"[cyan]{counts['info']} info[/]" + (f", [bold red]{failed} not audited[/]" if failed else "")
    )
    slowest = sorted((m for m in models if m.get("seconds")), key=lambda m: -m["seconds"])[:3]
    names = short_names(m["source"] for m in models)
    if slowest:
        console.print("slowest: " + ", ".join(f"{names[m['source']]} {m['seconds']:.1f}s" for m in slowest))


def progress(entries: Iterator[report.Entry], total: int, console: Console) -> Iterator[report.Entry]:
    """A progress bar on a terminal; nothing in a pipe, a CI log or with --quiet."""
    if console.quiet or not console.is_terminal:
        yield from entries
        return
    with Progress(*Progress.get_default_columns(), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("auditing", total=total)
        for entry in entries:
            bar.update(task, advance=1, description=Path(entry["source"]).name)
            yield entry
