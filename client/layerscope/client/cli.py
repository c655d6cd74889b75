"""The `layerscope` command: `serve` the gRPC service, `audit` model files, read history (`runs`, `compare`).

Heavy imports (TensorFlow, the service) happen inside the commands that need them, so `--help` is instant
and `layerscope.client` stays light.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(help="Look inside Keras models: serve, audit, runs, compare.", no_args_is_help=True)
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """layerscope: model introspection and debugging for Keras 3."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (env LAYERSCOPE_HOST; default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(help="gRPC port, 0 for any free one (env LAYERSCOPE_PORT; default 50051).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port (env LAYERSCOPE_METRICS_PORT; default 9464).")
    ] = None,
    model_repository: Annotated[
        Path | None,
        typer.Option(help="Folder of <name>/<version>/model.keras (env LAYERSCOPE_MODEL_REPOSITORY; default models)."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL (env LAYERSCOPE_DATABASE_URL; default sqlite:///layerscope.db)."),
    ] = None,
) -> None:
    """Run the gRPC service until SIGTERM/SIGINT."""
    from pydantic import ValidationError

    from layerscope.service.app import App
    from layerscope.service.app import serve as run
    from layerscope.service.settings import Settings

    flags = {
        "host": host,
        "port": port,
        "metrics_port": metrics_port,
        "model_repository": model_repository,
        "database_url": database_url,
    }
    try:
        settings = Settings.model_validate({k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        err.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def announce(started: App) -> None:
        print(
            f"layerscope serving on {settings.host}:{started.port} "
            f"(metrics on :{started.metrics_port}, models in {settings.model_repository})",
            flush=True,
        )

    asyncio.run(run(settings, announce))


class Format(StrEnum):
    table = "table"
    json = "json"
    sarif = "sarif"
    html = "html"


class FailOn(StrEnum):
    error = "error"
    warning = "warning"
    never = "never"


@app.command()
def audit(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Model files or folders (every *.keras below); `merge R.json...`.")
    ] = None,
    inputs: Annotated[Path | None, typer.Option(help="A .npy array (or .npz of named arrays) to run on.")] = None,
    output_format: Annotated[Format, typer.Option("--format", help="Report format.")] = Format.table,
    output: Annotated[Path | None, typer.Option(help="Write the report here instead of stdout.")] = None,
    fail_on: Annotated[FailOn, typer.Option(help="Exit 1 on findings at or above this severity.")] = FailOn.error,
    jobs: Annotated[int, typer.Option(min=1, help="Worker processes (TensorFlow loads once per worker).")] = 1,
    shard: Annotated[str | None, typer.Option(help="Audit only slice I of N (0-based), e.g. 0/4.")] = None,
    server: Annotated[str | None, typer.Option(help="Audit through a running server at this target.")] = None,
    token: Annotated[str | None, typer.Option(envvar="LAYERSCOPE_TOKEN", help="Bearer token for --server.")] = None,
    custom_objects: Annotated[
        Path | None, typer.Option(help="A trusted local .py that registers custom layers (local audits only).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    explain: Annotated[str | None, typer.Option(help="Print what a finding code means and exit.")] = None,
) -> None:
    """Audit model files: exit 0 clean, 1 findings at or above --fail-on, 2 a model could not be audited.

    `layerscope audit merge SHARD.json...` joins shard reports into one document.
    """
    from layerscope.client import _audit

    if explain:
        raise typer.Exit(_audit.explain(explain))
    if not paths:
        err.print("[red]expected at least one model file or folder[/red]")
        raise typer.Exit(2)
    status = _audit.run(
        paths,
        inputs,
        output_format.value,
        output,
        fail_on.value,
        jobs=jobs,
        shard=shard,
        server=server,
        token=token,
        custom_objects=custom_objects,
        quiet=quiet,
    )
    raise typer.Exit(status)


def _register_history() -> None:
    from layerscope.client import _history

    app.command("runs")(_history.runs)
    app.command("compare")(_history.compare)


_register_history()


def main() -> Any:
    return app()


if __name__ == "__main__":
    sys.exit(main())
