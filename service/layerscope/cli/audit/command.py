"""`layerscope audit`: audit model files here or through a server, and `layerscope audit merge` shard reports.

This module parses the command line and renders; what an audit does (the files of a shard, the audit
processes, the document) is the service's audit use case, `layerscope.service.audit`.

Exit status: 0 nothing at or above --fail-on, 1 findings at or above it, 2 a model could not be audited or
bad usage.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from layerscope.cli.audit import render
from layerscope.service.audit import batch, report
from layerscope.service.audit.shards import ShardBy, select

AUDIT = "models"
"""The hidden subcommand that audits: `layerscope audit PATH...` runs it."""


class AuditGroup(TyperGroup):
    """`audit` runs the audit unless its first argument names a subcommand (`merge`): the command line users
    know stays as it was, and `merge` has its own help and options. A model file called `merge`: `./merge`."""

    # ctx is click's Context, which typer vendors in recent releases and imports from click in older ones.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[-1] == "--explain":  # no code given: list them all (typer has no optional values)
            args = [*args[:-1], "--list-codes"]
        if not args or args[0] not in self.commands:
            args = [AUDIT, *args]
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        return ("" if name == AUDIT else name), command, rest  # usage reads `layerscope audit [OPTIONS]`


class _AuditContext(typer.Context):
    @property
    def command_path(self) -> str:
        return super().command_path.rstrip()  # the hidden subcommand's name is empty: no double space


class _AuditCommand(TyperCommand):
    context_class = _AuditContext


app = typer.Typer(cls=AuditGroup, help="Audit model files; `merge` joins shard reports.")


class Format(StrEnum):
    table = "table"
    json = "json"
    sarif = "sarif"
    html = "html"


class FailOn(StrEnum):
    error = "error"
    warning = "warning"
    never = "never"


@dataclass(frozen=True)
class AuditOptions:
    """Everything one `layerscope audit` was asked to do."""

    paths: tuple[Path, ...]
    inputs: Path | None = None
    targets: Path | None = None
    probe_steps: int | None = None
    output_format: Format = Format.table
    output: Path | None = None
    fail_on: FailOn = FailOn.error
    jobs: int = 1
    shard: str | None = None
    shard_by: ShardBy | None = None
    server: str | None = None
    token: str | None = None
    custom_objects: Path | None = None
    quiet: bool = False
    model_timeout: float = batch.MODEL_TIMEOUT_SECONDS

    def refusal(self) -> str | None:
        """Why these options cannot run together, in one line; None when they can."""
        if self.targets and not self.inputs:
            return "--targets are the labels of --inputs: pass --inputs x.npy with --targets y.npy"
        if self.probe_steps is not None and not self.targets:
            return "--probe-steps trains on --targets: pass --inputs x.npy --targets y.npy with it"
        if self.shard_by is not None and self.shard is None:
            return f"--shard-by {self.shard_by.value} says how --shard I/N splits the files: pass --shard with it"
        if self.custom_objects and self.server:
            return "--custom-objects runs local code: it cannot be combined with --server"
        if self.custom_objects and not self.custom_objects.is_file():
            what = "a folder" if self.custom_objects.is_dir() else "not there"
            return (
                f"expected a Python file for --custom-objects; received {str(self.custom_objects)!r}, which is {what}"
            )
        return None


@app.command(AUDIT, hidden=True, cls=_AuditCommand)
def audit(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Model files or folders (every *.keras below). `layerscope audit merge --help`: shards."),
    ] = None,
    inputs: Annotated[Path | None, typer.Option(help="A .npy array (or .npz of named arrays) to run on.")] = None,
    targets: Annotated[
        Path | None,
        typer.Option(help="Targets for --inputs (.npy, or .npz by output name): gradients and a training probe."),
    ] = None,
    probe_steps: Annotated[
        int | None, typer.Option(min=0, help="Optimizer steps of the training probe (default 5; 0: gradients only).")
    ] = None,
    output_format: Annotated[Format, typer.Option("--format", help="Report format.")] = Format.table,
    output: Annotated[Path | None, typer.Option(help="Write the report here instead of stdout.")] = None,
    fail_on: Annotated[FailOn, typer.Option(help="Exit 1 on findings at or above this severity.")] = FailOn.error,
    jobs: Annotated[
        int,
        typer.Option(
            min=1, help="Audit processes at once (TensorFlow loads once per process; a crash costs one model)."
        ),
    ] = 1,
    model_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds one model may take before it is stopped and marked unauditable.")
    ] = batch.MODEL_TIMEOUT_SECONDS,
    shard: Annotated[str | None, typer.Option(help="Audit only slice I of N (0-based), e.g. 0/4.")] = None,
    shard_by: Annotated[
        ShardBy | None,
        typer.Option(
            help="What --shard keeps equal: count (default; interleaved slices of the sorted files) or size "
            "(total archive bytes; every machine must see the same files)."
        ),
    ] = None,
    server: Annotated[str | None, typer.Option(help="Audit through a running server at this target.")] = None,
    token: Annotated[str | None, typer.Option(envvar="LAYERSCOPE_TOKEN", help="Bearer token for --server.")] = None,
    custom_objects: Annotated[
        Path | None, typer.Option(help="A trusted local .py that registers custom layers (local audits only).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    explain: Annotated[
        str | None, typer.Option(metavar="[CODE]", help="Print what a finding code means (no code: list them all).")
    ] = None,
    list_codes: Annotated[bool, typer.Option("--list-codes", help="List every finding code and exit.")] = False,
) -> None:
    """Audit model files: exit 0 clean, 1 findings at or above --fail-on, 2 a model could not be audited.

    `layerscope audit merge SHARD.json...` joins shard reports into one document.
    """
    if list_codes:
        raise typer.Exit(list_all_codes())
    if explain:
        raise typer.Exit(explain_code(explain))
    options = AuditOptions(
        paths=tuple(paths or ()),
        inputs=inputs,
        targets=targets,
        probe_steps=probe_steps,
        output_format=output_format,
        output=output,
        fail_on=fail_on,
        jobs=jobs,
        shard=shard,
        shard_by=shard_by,
        server=server,
        token=token,
        custom_objects=custom_objects,
        quiet=quiet,
        model_timeout=model_timeout,
    )
    raise typer.Exit(run(options))


@app.command("merge")
def merge(
    reports: Annotated[list[Path], typer.Argument(help="JSON reports of `layerscope audit --shard I/N`.")],
    output_format: Annotated[Format, typer.Option("--format", help="Report format.")] = Format.json,
    output: Annotated[Path | None, typer.Option(help="Write the merged report here instead of stdout.")] = None,
    fail_on: Annotated[FailOn, typer.Option(help="Exit 1 on findings at or above this severity.")] = FailOn.error,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary.")] = False,
) -> None:
    """Join shard reports into one document; the exit status is the whole batch's, as one audit's would be
    (0 clean, 1 findings at or above --fail-on, 2 a model not audited); a model in two shards is refused (2)."""
    raise typer.Exit(merge_reports(reports, output, output_format, fail_on, quiet))


def run(options: AuditOptions) -> int:
    """The audit, start to end; returns the exit status."""
    console = Console(stderr=True, quiet=options.quiet)
    errors = Console(stderr=True, soft_wrap=True)  # --quiet hides progress, never why the audit stopped
    if not options.paths:
        Console(stderr=True).print("[red]expected at least one model file or folder[/red]")
        return 2
    if not options.server:  # a server audit runs no workers here
        _warn_about_jobs(options.jobs, console)
    try:
        selection = select(batch.model_files(options.paths), options.shard, options.shard_by or ShardBy.COUNT)
        arrays = batch.load_inputs(options.inputs)
        labels = batch.load_inputs(options.targets)
    except (OSError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    files = selection.files
    if not files and options.shard is None:
        console.print(f"[red]expected .keras files; found none in {[str(p) for p in options.paths]}[/red]")
        return 2
    refusal = options.refusal() or render.unwritable(options.output)
    if refusal:
        errors.print(f"error: {refusal}", markup=False)
        return 2
    try:
        training = batch.Training(labels, options.probe_steps) if labels else None
        progress = render.progress(_entries(options, files, arrays, training), len(files), console)
        doc = report.document(progress, selection.stamp)
    except batch.AuditAborted as exc:
        errors.print(f"error: {exc.message}", markup=False, highlight=False)
        return 2
    return _deliver(doc, options.output_format, options.output, options.fail_on, console)


def _deliver(doc: report.Document, fmt: Format, output: Path | None, fail_on: FailOn, console: Console) -> int:
    """Write the report and the summary; the exit status, 2 when the report could not be written."""
    try:
        render.write(doc, fmt.value, output)
    except OSError as exc:
        Console(stderr=True, soft_wrap=True).print(
            f"error: could not write the report to {str(output)!r}: {exc.strerror or exc}", markup=False
        )
        return 2
    render.summary(doc, console)
    return report.exit_status(doc, fail_on.value)


def _warn_about_jobs(jobs: int, console: Console) -> None:
    """Each worker loads TensorFlow and runs its own threads: past the core count they only compete."""
    cores = os.cpu_count() or 1
    if jobs > cores:
        console.print(
            f"[yellow]warning:[/] --jobs {jobs} is more than the {cores} CPU cores here; "
            f"each worker loads TensorFlow and competes for them. --jobs {cores} or fewer is faster."
        )


def _entries(
    options: AuditOptions, files: list[Path], arrays: batch.Arrays, training: batch.Training | None
) -> Iterator[report.Entry]:
    if options.server:
        from layerscope.cli.audit import remote

        return remote.entries(files, arrays, options.server, options.token, training)
    from layerscope.service.audit import runner  # audit processes: not for --help, --explain or --server

    return runner.entries(files, arrays, options.jobs, options.custom_objects, training, options.model_timeout)


def merge_reports(
    reports: list[Path],
    output: Path | None,
    fmt: Format = Format.json,
    fail_on: FailOn = FailOn.error,
    quiet: bool = False,
) -> int:
    errors = Console(stderr=True, soft_wrap=True)  # --quiet hides the summary, never why the merge stopped
    refusal = render.unwritable(output)
    if refusal:
        errors.print(f"error: {refusal}", markup=False)
        return 2
    parsed: list[tuple[str, Any]] = []
    for path in reports:
        try:
            parsed.append((str(path), json.loads(path.read_text())))
        except (OSError, ValueError) as exc:
            errors.print(f"error: expected a layerscope audit JSON report: {path}: {exc}", markup=False)
            return 2
    try:
        doc = report.merge(parsed)
    except report.MergeRefused as exc:
        errors.print(f"error: {exc}", markup=False)
        return 2
    return _deliver(doc, fmt, output, fail_on, Console(stderr=True, quiet=quiet))


def list_all_codes() -> int:
    """Every finding code with its severity and what it fires on, one line each."""
    from layerscope.service.diagnosis.catalog import CATALOG

    console = Console(soft_wrap=True)
    width = max(len(code) for code in CATALOG)
    for info in sorted(CATALOG.values(), key=lambda i: (-report.SEVERITY_RANK[i.severity.value], i.code)):
        console.print(f"{info.code:<{width}}  {info.severity.value:<7}  {info.summary}", markup=False, highlight=False)
    console.print("layerscope audit --explain CODE says why it matters and how to fix it.", markup=False)
    return 0


def explain_code(code: str) -> int:
    from layerscope.service.diagnosis.catalog import explain as describe_code

    try:
        text = describe_code(code)
    except KeyError:
        from layerscope.service.diagnosis.catalog import CATALOG

        close = difflib.get_close_matches(code, list(CATALOG), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        Console(stderr=True, soft_wrap=True).print(
            f"error: unknown finding code {code!r}{hint} (layerscope audit --list-codes lists them)", markup=False
        )
        return 2
    Console().print(text)
    return 0
