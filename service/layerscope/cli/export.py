"""`layerscope export tensorboard MODEL`: a served model's monitoring windows and stored runs as TensorBoard
event files, the view Keras users already know.

Each closed window becomes one step of the `windows` run (oldest first, at its end time): per layer a
histogram of its activations (`activation/<layer>`) and scalars for drift (`drift/<layer>`, >= 1 drifting),
dead-unit fraction and NaN/Inf; each stored capture or diagnosis becomes one step of the `runs` run. Written
with TensorBoard's own event writer (the optional `tensorboard` extra); nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from layerscope.cli.history import Server, Token, fail
from layerscope.client import Client, LayerscopeError, MonitorWindow, Run, Summary

app = typer.Typer(help="Export monitoring windows and stored runs for other tools.", no_args_is_help=True)


@app.command("tensorboard")
def tensorboard(
    model: Annotated[str, typer.Argument(help="The model whose windows and runs to export.")],
    out: Annotated[Path, typer.Option("--out", help="TensorBoard log directory (`tensorboard --logdir OUT`).")],
    server: Server = "localhost:50051",
    token: Token = None,
    version: Annotated[int | None, typer.Option(help="The model version (default: the newest loaded).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Newest windows and runs to export.")] = 200,
) -> None:
    """Write TensorBoard event files: per-layer histograms over time and drift scalars."""
    try:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        typer.echo("error: the TensorBoard export needs the tensorboard package: pip install 'layerscope[tensorboard]'")
        raise typer.Exit(2) from None
    try:
        with Client(server, token=token) as client:
            windows = list(reversed(client.monitor(model, version, limit=limit).windows))
            window_runs = [client.get_run(w.window_id) for w in windows]
            runs = [client.get_run(r.run_id) for r in reversed(client.runs(model, limit=limit, version=version))]
    except LayerscopeError as exc:
        fail(exc)
    target = out / model
    written = 0
    writer = EventFileWriter(str(target / "windows"))
    for step, (window, run) in enumerate(zip(windows, window_runs, strict=True)):
        written += _write(writer, step, window.ended.timestamp(), _window_values(window, run))
    writer.close()
    writer = EventFileWriter(str(target / "runs"))
    for step, run in enumerate(runs):
        written += _write(writer, step, run.created_at.timestamp(), _run_values(run))
    writer.close()
    typer.echo(f"wrote {len(windows)} windows and {len(runs)} runs ({written} values) to {target}")
    typer.echo(f"view them: tensorboard --logdir {out}")


def _window_values(window: MonitorWindow, run: Run) -> list[tuple[str, Any]]:
    values: list[tuple[str, Any]] = [("monitor/requests", float(window.requests))]
    for layer in window.layers:
        values.append((f"drift/{layer.layer}", layer.drift_score))
        values.append((f"nonfinite/{layer.layer}", float(layer.non_finite)))
        if layer.dead_unit_fraction is not None:
            values.append((f"dead_unit_fraction/{layer.layer}", layer.dead_unit_fraction))
    return values + _histograms(run)


def _run_values(run: Run) -> list[tuple[str, Any]]:
    return _histograms(run)


def _histograms(run: Run) -> list[tuple[str, Any]]:
    return [
        (f"{kind}/{layer}", summary)
        for layer, kinds in run.summaries.items()
        for kind, summary in kinds.items()
        if summary.count
    ]


def _write(writer: Any, step: int, wall_time: float, values: Iterable[tuple[str, Any]]) -> int:
    from tensorboard.compat.proto import event_pb2, summary_pb2

    entries = []
    for tag, value in values:
        if isinstance(value, Summary):
            entries.append(summary_pb2.Summary.Value(tag=tag, histo=_histogram(value)))
        else:
            entries.append(summary_pb2.Summary.Value(tag=tag, simple_value=float(value)))
    writer.add_event(event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=entries)))
    return len(entries)


def _histogram(summary: Summary) -> Any:
    """A capture's 32 equal bins as TensorBoard's histogram: each bucket named by its right edge."""
    from tensorboard.compat.proto import summary_pb2

    low, high = summary.histogram_range
    bins = len(summary.histogram)
    finite = summary.count - summary.nan - summary.posinf - summary.neginf
    return summary_pb2.HistogramProto(
        min=summary.min,
        max=summary.max,
        num=float(finite),
        sum=summary.mean * finite,
        sum_squares=(summary.std**2 + summary.mean**2) * finite,
        bucket_limit=[low + (high - low) * (i + 1) / bins for i in range(bins)],
        bucket=[float(c) for c in summary.histogram],
    )
