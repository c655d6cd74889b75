"""`layerscope monitor NAME`: a live terminal view of a served model's layers, refreshed from the server.

One row per layer of the newest closed window, nearest the input first: drift against the reference (the
first drifting layer marked, since it localises the cause), dead-unit fraction, NaN/Inf and scale; above
it the sample rate and what sampling skipped, below it what was reported at once (NaN, a layer that died).
`--once` prints one frame (for scripts and CI logs); `--format json` prints the status as JSON.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from layerscope.cli.history import Format, OutputFormat, Server, Token, fail, print_json
from layerscope.client import Client, LayerscopeError, MonitorStatus, MonitorWindow

BAR = 20


def monitor(
    model: Annotated[str, typer.Argument(help="The model to watch.")],
    server: Server = "localhost:50051",
    token: Token = None,
    version: Annotated[int | None, typer.Option(help="The model version (default: the newest loaded).")] = None,
    refresh: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    output_format: OutputFormat = Format.table,
) -> None:
    """Watch a served model's layers live: drift, dead units, NaN/Inf, from its sampled traffic."""
    try:
        with Client(server, token=token) as client:
            if output_format is Format.json:
                print_json(dataclasses.asdict(client.monitor(model, version)))
                return
            if once:
                Console().print(frame(client.monitor(model, version)))
                return
            with Live(frame(client.monitor(model, version)), refresh_per_second=4, screen=False) as live:
                while True:
                    time.sleep(refresh)
                    live.update(frame(client.monitor(model, version)))
    except LayerscopeError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def frame(status: MonitorStatus) -> Group:
    """One screen: the header, the newest window's layers, the events."""
    parts: list[Any] = [_header(status)]
    window = status.windows[0] if status.windows else None
    if window is None:
        parts.append(Text("no closed window yet: waiting for sampled traffic", style="dim"))
    else:
        parts.append(_layers(window))
    for event in status.events[:5]:
        parts.append(Text(f"{event.at:%H:%M:%S} {event.kind}: {event.message}", style="bold red"))
    return Group(*parts)


def _header(status: MonitorStatus) -> Text:
    skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(status.skipped.items())) or "none"
    if status.reference is None:
        collected, needed = status.reference_progress
        reference = f"being made ({collected}/{needed} sampled requests)"
    else:
        reference = f"{status.reference.source} ({status.reference.requests} requests)"
    return Text(
        f"{status.model} v{status.version}  sampling {status.sample_rate:.0%}  samples {status.samples}  "
        f"skipped {skipped}  non-finite {status.nonfinite_samples}\nreference: {reference}"
    )


def _layers(window: MonitorWindow) -> Table:
    first = window.first_drifting_layer
    title = f"window {window.window_id} ({window.requests} requests, {window.replica}, ended {window.ended:%H:%M:%S})"
    table = Table(title=title, box=box.SIMPLE, title_justify="left")
    for column, justify in (
        ("layer", "left"),
        ("drift", "left"),
        ("score", "right"),
        ("dead", "right"),
        ("NaN/Inf", "right"),
        ("rms", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for layer in window.layers:
        mark = " ◀ first" if layer.layer == first else ""
        style = "bold red" if layer.drifting else ""
        filled = min(int(layer.drift_score * BAR / 2), BAR)  # the bar is full at twice the threshold
        bar = "█" * filled + "·" * (BAR - filled)
        dead = "-" if layer.dead_unit_fraction is None else f"{layer.dead_unit_fraction:.0%}"
        table.add_row(
            Text(layer.layer + mark, style=style),
            Text(bar, style=style or "green"),
            f"{layer.drift_score:.2f}",
            dead,
            str(layer.non_finite),
            f"{layer.activation_rms:.3g}",
        )
    return table
