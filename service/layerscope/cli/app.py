"""The `layerscope` command: the second composition root, beside the service's `app.py`.

It wires the commands together: `serve` runs the service, `audit` audits model files (here or through a
server); through the client, `runs` and `compare` read stored history, `monitor` watches a served model and
`export tensorboard` writes its windows for TensorBoard. Heavy imports (TensorFlow, the service) happen
inside the commands that need them, so `--help` is instant.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated, Any

import typer

from layerscope.cli import export, history, monitor, serve
from layerscope.cli.audit import command as audit

_display_type = typer.core.TyperOption.display_type_rich


def _no_type_on_flags(option: typer.core.TyperOption, ctx: Any) -> str | None:
    """Typer (0.29) prints `<bool>` beside every flag in --help (--help itself, --quiet, --once), as if it took
    a value; a flag takes none, so it shows no type. Options that take a value keep theirs."""
    return None if option.is_flag and not option.count else _display_type(option, ctx)


typer.core.TyperOption.display_type_rich = _no_type_on_flags  # type: ignore[method-assign, assignment]

app = typer.Typer(help="Look inside Keras models: serve, audit, runs, compare, monitor, export.", no_args_is_help=True)


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"layerscope {version('layerscope')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    """layerscope: model introspection and debugging for Keras 3."""


app.command("serve")(serve.serve)
app.add_typer(audit.app, name="audit")
app.command("runs")(history.runs)
app.command("compare")(history.compare)
app.command("monitor")(monitor.monitor)
app.add_typer(export.app, name="export")


def main() -> Any:
    return app()
