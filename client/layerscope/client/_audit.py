"""`layerscope audit`: find the model files, audit each, render the report, choose the exit status."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress, TimeElapsedColumn
from rich.table import Table

from layerscope.client import _audit_sources as sources

SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}
STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def model_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, folders expanded to every *.keras below them; sorted, without duplicates."""
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(p for p in path.rglob("*.keras") if p.is_file())
        else:
            found.add(path)
    return sorted(found)


def load_inputs(path: Path | None) -> dict[str, np.ndarray] | None:
    if path is None:
        return None
    loaded = np.load(path, allow_pickle=False)
    if isinstance(loaded, np.ndarray):
        return {"input": loaded}
    return {name: loaded[name] for name in loaded.files}


def exit_status(doc: dict[str, Any], fail_on: str) -> int:
    models = doc["models"]
    if any(m["error"] for m in models):
        return 2
    if fail_on == "never":
        return 0
    threshold = SEVERITY_RANK[fail_on]
    hit = any(SEVERITY_RANK[f["severity"]] >= threshold for m in models for f in m["findings"])
    return 1 if hit else 0


def render_table(doc: dict[str, Any], console: Console) -> None:
    table = Table(title="layerscope audit", show_lines=True)
    table.add_column("model", overflow="fold", max_width=24)
    table.add_column("severity", no_wrap=True)
    table.add_column("code", overflow="fold", max_width=22)
    table.add_column("layers", overflow="fold", max_width=24)
    table.add_column("message", overflow="fold", ratio=1)
    for model in doc["models"]:
        name = Path(model["source"]).stem  # the full path is in the JSON report
        if model["error"]:
            table.add_row(name, "[bold red]not audited[/]", model["error"]["code"], "", model["error"]["message"])
        elif not model["findings"]:
            table.add_row(name, "[green]clean[/]", "", "", "")
        for f in model["findings"]:
            sev = f["severity"]
            table.add_row(name, f"[{STYLE[sev]}]{sev}[/]", f["code"], ", ".join(f["layers"]), f["message"])
    console.print(table)


def run(
    paths: Sequence[Path],
    inputs: Path | None,
    fmt: str,
    output: Path | None,
    fail_on: str,
    *,
    jobs: int = 1,
    shard: str | None = None,
    server: str | None = None,
    token: str | None = None,
    custom_objects: Path | None = None,
    quiet: bool = False,
) -> int:
    console = Console(stderr=True, quiet=quiet)
    errors = Console(stderr=True, soft_wrap=True)  # --quiet hides progress, never why the audit stopped
    if len(paths) >= 1 and str(paths[0]) == "merge" and not paths[0].exists():
        return merge(paths[1:], output)
    try:
        files = sources.shard(model_files(paths), shard)
        arrays = load_inputs(inputs)
    except (OSError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    if not files and shard is None:
        console.print(f"[red]expected .keras files; found none in {[str(p) for p in paths]}[/red]")
        return 2
    if custom_objects and server:
        console.print("[red]--custom-objects runs local code: it cannot be combined with --server[/red]")
        return 2
    if custom_objects and not custom_objects.is_file():
        what = "a folder" if custom_objects.is_dir() else "not there"
        errors.print(
            f"error: expected a Python file for --custom-objects; received {str(custom_objects)!r}, which is {what}",
            markup=False,
        )
        return 2
    entries = (
        sources.remote(files, arrays, server, token)
        if server
        else sources.local(files, arrays, jobs, str(custom_objects) if custom_objects else None)
    )
    try:
        doc = {"schema": "layerscope.audit/v1", "models": list(_with_progress(entries, len(files), console))}
    except sources.AuditAborted as exc:
        errors.print(f"error: {exc.message}", markup=False, highlight=False)
        return 2
    write_report(doc, fmt, output)
    render_summary(doc, console)
    return exit_status(doc, fail_on)


def _with_progress(entries: Iterator[dict[str, Any]], total: int, console: Console) -> Iterator[dict[str, Any]]:
    """A progress bar on a terminal; nothing in a pipe, a CI log or with --quiet."""
    if console.quiet or not console.is_terminal:
        yield from entries
        return
    with Progress(*Progress.get_default_columns(), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("auditing", total=total)
        for entry in entries:
            bar.update(task, advance=1, description=Path(entry["source"]).name)
            yield entry


def write_report(doc: dict[str, Any], fmt: str, output: Path | None) -> None:
    if fmt == "table":
        # A pipe or a CI log has no width of its own: give the message column room to be read.
        width = None if sys.stdout.isatty() else 160
        target = Console(file=output.open("w"), width=160) if output else Console(width=width)
        render_table(doc, target)
        return
    if fmt == "sarif":
        from layerscope.client._audit_sarif import to_sarif

        text = json.dumps(to_sarif(doc), indent=2)
    elif fmt == "html":
        from layerscope.client._audit_html import to_html

        text = to_html(doc)
    else:
        text = json.dumps(doc, indent=2)
    if output:
        output.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")


def render_summary(doc: dict[str, Any], console: Console) -> None:
    """What a person wants at the end: how many, how bad, and which models took longest."""
    models = doc["models"]
    counts = {s: sum(f["severity"] == s for m in models for f in m["findings"]) for s in ("error", "warning", "info")}
    failed = sum(1 for m in models if m["error"])
    console.print(
        f"audited {len(models) - failed} of {len(models)} models: "
        f"[bold red]{_plural(counts['error'], 'error')}[/], [yellow]{_plural(counts['warning'], 'warning')}[/], "
        f"[cyan]{counts['info']} info[/]" + (f", [bold red]{failed} not audited[/]" if failed else "")
    )
    slowest = sorted((m for m in models if m.get("seconds")), key=lambda m: -m["seconds"])[:3]
    if slowest:
        console.print("slowest: " + ", ".join(f"{Path(m['source']).name} {m['seconds']:.1f}s" for m in slowest))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def merge(reports: Sequence[Path], output: Path | None) -> int:
    """Join shard reports into one document; a model in two shards is refused."""
    console = Console(stderr=True)
    models: dict[str, dict[str, Any]] = {}
    for report in reports:
        try:
            doc = json.loads(report.read_text())
        except (OSError, ValueError) as exc:
            console.print(f"[red]expected a layerscope audit JSON report: {report}: {exc}[/red]")
            return 2
        if doc.get("schema") != "layerscope.audit/v1":
            console.print(f"[red]expected schema layerscope.audit/v1 in {report}; received {doc.get('schema')!r}[/]")
            return 2
        for model in doc["models"]:
            if model["source"] in models:
                console.print(f"[red]{model['source']} appears in two shard reports; expected each once[/red]")
                return 2
            models[model["source"]] = model
    write_report({"schema": "layerscope.audit/v1", "models": [models[k] for k in sorted(models)]}, "json", output)
    return 0


def explain(code: str) -> int:
    from layerscope.service.diagnosis.catalog import explain as describe_code

    try:
        text = describe_code(code)
    except KeyError:
        Console(stderr=True).print(f"[red]unknown finding code {code!r}[/red]")
        return 2
    Console().print(text)
    return 0
