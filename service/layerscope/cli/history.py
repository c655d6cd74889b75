"""`layerscope runs` and `layerscope compare`: stored history from a running server, as readable tables."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from layerscope.client import Client, LayerscopeError

Server = Annotated[str, typer.Option("--server", envvar="LAYERSCOPE_SERVER", help="host:port of the service.")]
Token = Annotated[str | None, typer.Option("--token", envvar="LAYERSCOPE_TOKEN", help="Bearer token.")]


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
) -> None:
    """List stored runs, newest first."""
    try:
        with Client(server, token=token) as c:
            page = c.runs_page(
                model, limit, version=version, since=since, until=until, code=code, page_token=page_token
            )
    except LayerscopeError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    table = Table(title=f"runs{f' of {model}' if model else ''}")
    for column in ("run", "model", "kind", "time (UTC)", "batch", "device", "seconds", "findings"):
        table.add_column(column, no_wrap=column in ("run", "time (UTC)"))
    for r in page.runs:
        findings = ", ".join(sorted({f.code for f in r.findings})) or "-"
        table.add_row(
            r.run_id,
            f"{r.model_name}:{r.model_version}",
            r.kind,
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(r.batch_size),
            r.device,
            f"{r.duration_seconds:.3f}",
            findings,
        )
    Console().print(table)
    if page.next_page_token:
        Console().print(f"more runs: add --page-token {page.next_page_token}")


def compare(
    run_a: Annotated[str, typer.Argument(help="The earlier run.")],
    run_b: Annotated[str, typer.Argument(help="The later run.")],
    server: Server = "localhost:50051",
    token: Token = None,
    top: Annotated[int, typer.Option(help="Show the layers that changed most.")] = 30,
) -> None:
    """What changed between two runs, per layer and kind, and which findings came or went."""
    try:
        with Client(server, token=token) as c:
            result = c.compare(run_a, run_b)
    except LayerscopeError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    table = Table(title=f"{run_a} -> {run_b}")
    for column in ("layer", "kind", "Δ mean", "Δ std", "Δ zero", "Δ dead units", "hist distance"):
        table.add_column(column, justify="right" if column.startswith(("Δ", "hist")) else "left")
    ranked = sorted(result.changes, key=lambda ch: ch.histogram_distance, reverse=True)[:top]
    for ch in ranked:
        table.add_row(
            ch.layer,
            ch.kind,
            f"{ch.mean_delta:+.4g}",
            f"{ch.std_delta:+.4g}",
            f"{ch.zero_fraction_delta:+.3f}",
            f"{ch.dead_unit_fraction_delta:+.3f}",
            f"{ch.histogram_distance:.3f}",
        )
    console = Console()
    console.print(table)
    for label, findings in (("new", result.new_findings), ("resolved", result.resolved_findings)):
        for f in findings:
            console.print(f"{label}: [bold]{f.code}[/bold] ({f.severity}) on {', '.join(f.layers)}: {f.message}")
