"""`layerscope serve`: build the service's Settings from flags and the environment, then run it."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


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

    from layerscope.service import logsafe
    from layerscope.service.errors import StartupError
    from layerscope.service.runtime.quiet_start import native_stderr_muted
    from layerscope.service.settings import Settings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_muted():  # TensorFlow's native start-up lines; the server logs its devices itself
        from layerscope.service.app import App
        from layerscope.service.app import serve as run

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
        Console(stderr=True).print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc
    logsafe.install(logging.INFO)  # control characters in logged text are escaped: no forged lines

    def announce(started: App) -> None:
        print(
            f"layerscope serving on {settings.host}:{started.port} "
            f"(metrics on :{started.metrics_port}, models in {settings.model_repository})",
            flush=True,
        )

    try:
        asyncio.run(run(settings, announce))
    except StartupError as exc:  # a taken port: one line, no traceback
        Console(stderr=True).print(f"[red]layerscope:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
