"""Audits in this process or in worker processes: open each file safely, diagnose it, describe it as an entry.

TensorFlow loads where models run, once per process and quietly (`start_tensorflow`): in this process for
--jobs 1, only in the workers for --jobs N, never in the parent that hands out the files.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from layerscope.cli.audit import report
from layerscope.cli.audit.batch import Arrays, AuditAborted, Training, one_line
from layerscope.service.errors import InvalidInput, ServiceError
from layerscope.service.models.formats import legacy_format
from layerscope.service.models.scanner import sha256_of

if TYPE_CHECKING:
    from layerscope.service.diagnosis.diagnoser import Diagnoser

_worker: Diagnoser | AuditAborted = AuditAborted("an audit worker ran a model before its initializer")
"""In a worker process: its rules, built once by the pool's initializer, or why it could not start."""


def entries(
    files: Sequence[Path], inputs: Arrays, jobs: int, custom_objects: Path | None, training: Training | None = None
) -> Iterator[report.Entry]:
    """Entries in the order of `files`; AuditAborted when the audit as a whole cannot go on."""
    trusted = custom_objects is not None
    if jobs <= 1:
        diagnoser = _start_worker(custom_objects)
        for path in files:
            yield audit_file(path, diagnoser, inputs, trusted, training)
        return
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_pool_worker, initargs=(custom_objects,))
    try:
        yield from pool.map(
            _audit_in_worker, files, [inputs] * len(files), [trusted] * len(files), [training] * len(files)
        )
    except BrokenProcessPool as exc:
        raise AuditAborted(
            f"an audit worker process stopped abruptly ({one_line(exc)}); expected --jobs {jobs} workers to "
            "audit every model. --jobs 1 audits in this process and shows the error."
        ) from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def audit_file(
    path: Path,
    diagnoser: Diagnoser,
    inputs: Mapping[str, np.ndarray] | None = None,
    trusted: bool = False,
    training: Training | None = None,
) -> report.Entry:
    """Audit one file; a file that cannot be audited becomes an entry with an `error`, never an exception.

    The error code is a gRPC status name (`invalid-argument`, `internal`, ...), as a `--server` audit of the
    same file reports it.
    """
    started = time.perf_counter()
    source = str(path)
    other_format = legacy_format(path)
    if other_format:  # a SavedModel folder has no single file to hash
        return report.failed(source, "", InvalidInput.status, other_format, time.perf_counter() - started)
    try:
        sha = sha256_of(path)
    except OSError as exc:
        message = f"Expected a readable .keras file; received {source!r}: {exc}"
        return report.failed(source, "", InvalidInput.status, message, time.perf_counter() - started)
    from layerscope.service.domain.training import TrainingOptions
    from layerscope.service.model_diagnosis import activation_summaries, diagnose
    from layerscope.service.models.registry import open_model

    options = TrainingOptions(training.targets, probe_steps=training.probe_steps) if training else None

    try:
        with warnings.catch_warnings():
            # Keras warns about some faults it notices while building (a softmax over one unit); the
            # findings report them with layer names and remedies, so the warning would only repeat them.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"keras\.")
            model = open_model(path, path.stem, 1, allow_custom=trusted)
            diagnosis = diagnose(model, diagnoser, inputs, options)
    except ServiceError as exc:
        return report.failed(source, sha, exc.status, exc.message, time.perf_counter() - started)
    except Exception as exc:  # a model that breaks at run time is a finding about that model, not a crash
        message = f"{type(exc).__name__}: {str(exc)[:500]}"
        return report.failed(source, sha, ServiceError.status, message, time.perf_counter() - started)
    activations = activation_summaries(diagnosis.capture)
    layers = (
        report.layer(x.name, x.class_name, x.output_shapes[0] if x.output_shapes else (), activations.get(x.name))
        for x in model.description.layers
    )
    parameters = model.description.parameters
    seconds = time.perf_counter() - started
    return report.entry(source, sha, parameters, diagnosis.findings, layers, seconds, diagnosis.probe)


def _start_worker(custom_objects: Path | None) -> Diagnoser:
    """Import the trusted custom objects and build the rules once per worker, not once per model."""
    from layerscope.service.runtime.quiet_start import start_tensorflow

    start_tensorflow()
    _load_custom_objects(custom_objects)
    from layerscope.service.diagnosis.diagnoser import Diagnoser

    return Diagnoser()


def _start_pool_worker(custom_objects: Path | None) -> None:
    """The pool's initializer. It never raises: an initializer that fails breaks the pool without saying why,
    so the reason is kept and raised by the first model this worker is given."""
    global _worker
    try:
        _worker = _start_worker(custom_objects)
    except AuditAborted as exc:
        _worker = exc
    except Exception as exc:
        _worker = AuditAborted(f"an audit worker could not start: {one_line(exc)}")


def _audit_in_worker(path: Path, inputs: Arrays, trusted: bool, training: Training | None) -> report.Entry:
    if isinstance(_worker, AuditAborted):
        raise _worker  # told with the first model this worker is given
    return audit_file(path, _worker, inputs, trusted, training)


def _load_custom_objects(path: Path | None) -> None:
    if path is None:
        return
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not there"
        raise AuditAborted(f"expected a Python file for --custom-objects; received {str(path)!r}, which is {what}")
    spec = importlib.util.spec_from_file_location("layerscope_custom_objects", path)
    if spec is None or spec.loader is None:
        raise AuditAborted(f"expected a Python (.py) file for --custom-objects; received {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # a trusted local file, by the user's choice (local audits only)
    except (Exception, SystemExit) as exc:
        raise AuditAborted(f"--custom-objects {str(path)!r} failed on import: {one_line(exc)}") from exc
