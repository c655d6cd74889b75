"""Audits in audit processes: each file audited (`model_audit.audit_file`) where a crash costs that one model.

Every model is audited in an audit process (spawned: TensorFlow does not survive fork), `--jobs` of them at
a time, each auditing one file after another. A model that kills its process (a native crash, an abort, the
kernel's out-of-memory killer, a custom layer that exits) or runs past `model_timeout` costs that one model:
its entry says it could not be audited and why, a new process takes the next file, and the report still
lists every other model. TensorFlow loads only in the audit processes, never in the parent.

Custom objects: `custom_objects` names a trusted local file that each audit process imports before its first
model (the CLI's explicit --custom-objects opt-in). The server never runs caller code and never passes one.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import queue
import signal
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.service.audit import report
from layerscope.service.audit.batch import MODEL_TIMEOUT_SECONDS, Arrays, AuditAborted, Training, one_line
from layerscope.service.audit.model_audit import audit_file
from layerscope.service.errors import ModelUnavailable
from layerscope.service.models.scanner import sha256_of
from layerscope.service.workers.process import describe_exit

if TYPE_CHECKING:
    from layerscope.service.diagnosis.diagnoser import Diagnoser


def entries(
    files: Sequence[Path],
    inputs: Arrays,
    jobs: int,
    custom_objects: Path | None,
    training: Training | None = None,
    model_timeout: float = MODEL_TIMEOUT_SECONDS,
) -> Iterator[report.Entry]:
    """Entries in the order of `files`; AuditAborted when the audit as a whole cannot go on (an audit process
    that cannot start, e.g. a --custom-objects file that fails on import)."""
    trusted = custom_objects is not None
    setup = _Setup(custom_objects, inputs, trusted, training)
    auditors: queue.Queue[_Auditor] = queue.Queue()
    for _ in range(max(1, min(jobs, len(files)))):
        auditors.put(_Auditor(setup, model_timeout))

    def audit(path: Path) -> report.Entry:
        auditor = auditors.get()
        try:
            return auditor.audit(path)
        finally:
            auditors.put(auditor)

    pool = ThreadPoolExecutor(max(1, jobs), thread_name_prefix="layerscope-audit")
    try:
        yield from pool.map(audit, files)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        while not auditors.empty():
            auditors.get().close()


@dataclass(frozen=True)
class _Setup:
    """What every audit process needs (pickled once per process)."""

    custom_objects: Path | None
    inputs: Arrays
    trusted: bool
    training: Training | None


class _Auditor:
    """One audit process, started at its first file and again after one it did not survive."""

    def __init__(self, setup: _Setup, timeout: float) -> None:
        self._setup = setup
        self._timeout = timeout
        self._process: Any = None
        self._connection: Any = None

    def audit(self, path: Path) -> report.Entry:
        started = time.perf_counter()
        if self._process is None:
            self._start()
        self._connection.send(path)
        if self._connection.poll(self._timeout):
            try:
                entry: report.Entry = self._connection.recv()
                return entry
            except (EOFError, OSError):
                pass  # the process ended during this model: its exit status says how
            cause = self._stopped()
        else:
            self._process.kill()
            self._stopped()
            cause = f"it ran past the {self._timeout:g} s a model may take (--model-timeout) and was stopped"
        return report.failed(
            str(path),
            _sha256_or_empty(path),
            ModelUnavailable.status,
            f"Expected the model to be audited; its audit process stopped while auditing it: {cause}. The other "
            "models were audited in a new process.",
            time.perf_counter() - started,
        )

    def close(self) -> None:
        if self._process is not None:
            self._connection.close()
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(theirs, self._setup), name="layerscope-audit", daemon=True)
        process.start()
        theirs.close()
        self._process, self._connection = process, ours
        try:
            ready = ours.recv()
        except (EOFError, OSError):
            cause = self._stopped()
            raise AuditAborted(
                f"an audit worker process stopped abruptly while starting ({cause}); expected it to start and import "
                "--custom-objects if given. Check that file: a module that exits or crashes on import stops every "
                "audit process."
            ) from None
        if isinstance(ready, AuditAborted):
            self.close()
            self._process = None
            raise ready

    def _stopped(self) -> str:
        """Reap the ended process; what ended it, in words."""
        self._process.join(10)
        code = self._process.exitcode
        self._connection.close()
        self._process = None
        return describe_exit(code if code is not None else -signal.SIGKILL, None).text


def _serve(connection: Any, setup: _Setup) -> None:
    """An audit process: start TensorFlow and the rules once, then audit each path the parent sends."""
    try:
        diagnoser = _start_worker(setup.custom_objects)
    except AuditAborted as exc:
        connection.send(exc)
        return
    except Exception as exc:
        connection.send(AuditAborted(f"an audit worker could not start: {one_line(exc)}"))
        return
    connection.send("ready")
    while True:
        try:
            path = connection.recv()
        except (EOFError, OSError):
            return  # the parent is done
        connection.send(audit_file(path, diagnoser, setup.inputs, setup.trusted, setup.training))


def _sha256_or_empty(path: Path) -> str:
    try:
        return sha256_of(path)
    except OSError:
        return ""


def _start_worker(custom_objects: Path | None) -> Diagnoser:
    """Import the trusted custom objects and build the rules once per worker, not once per model."""
    from layerscope.service.runtime.quiet_start import start_tensorflow

    start_tensorflow()
    _load_custom_objects(custom_objects)
    from layerscope.service.diagnosis.diagnoser import Diagnoser

    return Diagnoser()


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
