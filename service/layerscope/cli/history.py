"""`layerscope runs` and `layerscope compare`: stored history from a running server, as tables that stay
readable in 80 columns, or as JSON for scripts (`--format json`)."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from layerscope.client import Client, LayerscopeError
from layerscope.client.types import Comparison, Finding, RunPage

Server = Annotated[str, typer.Option("--server", envvar="LAYERSCOPE_SERVER", help="host:port of the service.")]
Token = Annotated[str | None, typer.Option("--token", envvar="LAYERSCOPE_TOKEN", help="Bearer token.")]


class Format(StrEnum):
    table = "table"
    json = "json"


OutputFormat = Annotated[Format, typer.Option("--format", help="A table for people, JSON for scripts.")]


def runs(
    model: Annotated[str | None, typer.Argument(help="Only runs of this model.")] = None,
    server: Server = "localhost:50051",
    token: Token = None,
    version: Annotated[int | None, typer.Option(help="Only this model version.")] = None,
    code: Annotated[str | None, typer.Option(help="Only runs with this finding code.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Only runs at or after this time (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Only runs before this time (UTC).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Runs per page.")] = 20,
    page_token: Annotated[str | None, typer.Option(help="The next page, as printed under a full page.")] = None,
    output_format: OutputFormat = Format.table,
) -> None:
    """List stored runs, newest first."""
    try:
        with Client(server, token=token) as c:
            page = c.runs_page(
                model, limit, version=version, since=since, until=until, code=code, page_token=page_token
            )
    except LayerscopeError as exc:
        fail(exc)
    if output_format is Format.json:
        print_json({"runs": [_run_json(r) for r in page.runs], "next_page_token": page.next_page_token})
        return
    _runs_table(page, model)


def _runs_table(page: RunPage, model: str | None) -> None:
    # Two lines per run keep the full run id (people copy it into `compare`) inside 80 columns.
    table = Table(title=f"runs{f' of {model}' if model else ''}", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("run / time (UTC)", no_wrap=True)
    table.add_column("model / kind", overflow="fold")
    table.add_column("batch / s", no_wrap=True)
    table.add_column("device / findings", overflow="fold", ratio=1)
    for r in page.runs:
        findings = ", ".join(sorted({f.code for f in r.findings})) or "-"
        table.add_row(
            f"{r.run_id}\n{r.created_at:%Y-%m-%d %H:%M:%S}",
            f"{r.model_name}:{r.model_version}\n{r.kind}",
            f"{r.batch_size}\n{r.duration_seconds:.3f}",
            f"{r.device}\n{findings}",
        )
    Console().print(table)
    if page.next_page_token:
        # Plain, on one line: a token wrapped or coloured by the terminal would not paste back.
        sys.stdout.write(f"more runs: --page-token {page.next_page_token}\n")


def compare(
    run_a: Annotated[str, typer.Argument(help="The earlier run.")],
    run_b: Annotated[str, typer.Argument(help="The later run.")],
    server: Server = "localhost:50051",
    token: Token = None,
    top: Annotated[int, typer.Option(help="Show the layers that changed most.")] = 30,
    output_format: OutputFormat = Format.table,
) -> None:
    """What changed between two runs, per layer and kind, and which findings came or went."""
    try:
        with Client(server, token=token) as c:
            result = c.compare(run_a, run_b)
    except LayerscopeError as exc:
        fail(exc)
    if output_format is Format.json:
        print_json(dataclasses.asdict(result))
        return
    _comparison_table(result, top)


def _comparison_table(result: Comparison, top: int) -> None:
    console = Console()
    table = Table(title=f"{result.run_a} -> {result.run_b}", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("layer", overflow="fold", ratio=1)
    table.add_column("kind", overflow="fold", min_width=10)
    for column in ("Δ mean", "Δ std", "Δ zero", "Δ dead", "distance"):
        table.add_column(column, justify="right", no_wrap=True)
    ranked = sorted(result.changes, key=lambda ch: ch.histogram_distance, reverse=True)[:top]
    for ch in ranked:
        table.add_row(
            ch.layer,
            ch.kind,
            f"{ch.mean_delta:+.3g}",
            f"{ch.std_delta:+.3g}",
            f"{ch.zero_fraction_delta:+.3f}",
            f"{ch.dead_unit_fraction_delta:+.3f}",
            f"{ch.histogram_distance:.3f}",
        )
    console.print(table)
    console.print("Δ dead: change in the fraction of dead units; distance: 0 same values, 1 disjoint.", style="dim")
    for label, findings in (("new", result.new_findings), ("resolved", result.resolved_findings)):
        for f in findings:
            console.print(f"{label}: [bold]{f.code}[/bold] ({f.severity}) on {', '.join(f.layers)}: {f.message}")


def _run_json(r: Any) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "model": r.model_name,
        "version": r.model_version,
        "kind": r.kind,
        "created_at": r.created_at.isoformat(),
        "batch_size": r.batch_size,
        "device": r.device,
        "duration_seconds": r.duration_seconds,
        "findings": [dataclasses.asdict(f) for f in r.findings],
    }


def print_json(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Finding):
        return dataclasses.asdict(value)
    tolist = getattr(value, "tolist", None)  # numpy values in evidence
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def fail(exc: LayerscopeError) -> Any:
    Console(stderr=True, soft_wrap=True).print(f"error: {exc}", markup=False, highlight=False)
    raise typer.Exit(2) from exc
