"""Where audits run: in this process, in worker processes, or through a running server.

Each source turns model files into entries of the `layerscope.audit/v1` document, in the order given.
"""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np


class AuditAborted(Exception):
    """The whole audit cannot go on (a --custom-objects file that does not import, a worker pool that broke):
    the CLI prints the one-line message and exits 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type[AuditAborted], tuple[str]]:
        return type(self), (self.message,)


Arrays = dict[str, np.ndarray] | None
_diagnoser: Any = None  # one per worker process, built by the initializer
_worker_failure: AuditAborted | None = None  # why this worker could not start, told with its first model


def _start_worker(custom_objects: str | None) -> None:
    """Import TensorFlow and build the rules once per worker, not once per model."""
    global _diagnoser
    _load_custom_objects(custom_objects)  # first: a file that does not import fails before TensorFlow loads
    from layerscope.service.diagnosis.diagnoser import Diagnoser

    _diagnoser = Diagnoser()


def _start_pool_worker(custom_objects: str | None) -> None:
    """The pool's initializer. It never raises: an initializer that fails breaks the pool without saying why,
    so the reason is kept and raised by the first model this worker is given."""
    global _worker_failure
    try:
        _start_worker(custom_objects)
    except AuditAborted as exc:
        _worker_failure = exc
    except Exception as exc:
        _worker_failure = AuditAborted(f"an audit worker could not start: {_one_line(exc)}")


def _load_custom_objects(path: str | None) -> None:
    if not path:
        return
    import importlib.util

    if not Path(path).is_file():
        what = "a folder" if Path(path).is_dir() else "not there"
        raise AuditAborted(f"expected a Python file for --custom-objects; received {path!r}, which is {what}")
    spec = importlib.util.spec_from_file_location("layerscope_custom_objects", path)
    if spec is None or spec.loader is None:
        raise AuditAborted(f"expected a Python (.py) file for --custom-objects; received {path!r}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # a trusted local file, by the user's choice (local audits only)
    except (Exception, SystemExit) as exc:
        raise AuditAborted(f"--custom-objects {path!r} failed on import: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _audit_one(path: str, inputs: Arrays, trusted: bool) -> dict[str, Any]:
    if _worker_failure is not None:
        raise _worker_failure
    from layerscope.service.audit import audit_file, model_entry

    return model_entry(audit_file(Path(path), _diagnoser, inputs, trusted=trusted))


def local(files: Sequence[Path], inputs: Arrays, jobs: int, custom_objects: str | None) -> Iterator[dict[str, Any]]:
    """Entries in the order of `files`; AuditAborted when the audit as a whole cannot go on."""
    from concurrent.futures.process import BrokenProcessPool

    trusted = custom_objects is not None
    if jobs <= 1:
        _start_worker(custom_objects)
        for path in files:
            yield _audit_one(str(path), inputs, trusted)
        return
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_pool_worker, initargs=(custom_objects,))
    try:
        yield from pool.map(_audit_one, [str(p) for p in files], [inputs] * len(files), [trusted] * len(files))
    except BrokenProcessPool as exc:
        raise AuditAborted(
            f"an audit worker process stopped abruptly ({_one_line(exc)}); expected --jobs {jobs} workers to "
            "audit every model. --jobs 1 audits in this process and shows the error."
        ) from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def remote(files: Sequence[Path], inputs: Arrays, target: str, token: str | None) -> Iterator[dict[str, Any]]:
    """The same audit through a running server: upload, diagnose with the same rules, unload."""
    from layerscope.client._sync import Client

    with Client(target, token=token, timeout=600) as client:
        for path in files:
            yield _remote_one(client, path, inputs)


def _remote_one(client: Any, path: Path, inputs: Arrays) -> dict[str, Any]:
    """One model's entry, as `layerscope.service.audit.model_entry` writes it for a local audit; a failure's
    code is its gRPC status (`invalid-argument`), as the local audit names it."""
    import hashlib
    import time

    from layerscope.client.errors import LayerscopeError

    started = time.perf_counter()
    name = "audit-" + re.sub(r"[^A-Za-z0-9._-]", "-", path.stem)[:100]
    entry: dict[str, Any] = {"source": str(path), "sha256": "", "parameters": 0, "error": None, "findings": []}
    try:
        entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        message = f"Expected a readable .keras file; received {str(path)!r}: {exc}"
        entry.update(error={"code": "invalid-argument", "message": message}, layers=[])
        entry["seconds"] = round(time.perf_counter() - started, 3)
        return entry
    try:
        info = client.upload_model(name, path)
        try:
            report = client.diagnose(name, inputs, version=info.version)
            run = client.get_run(report.run_id)
        finally:
            client.unload_model(name, version=info.version, remove=True)  # the server keeps nothing of it
    except LayerscopeError as exc:
        entry.update(error={"code": exc.code_name, "message": exc.message}, layers=[])
        entry["seconds"] = round(time.perf_counter() - started, 3)
        return entry
    entry["parameters"] = info.parameters
    entry["findings"] = [
        {"code": f.code, "severity": f.severity, "layers": list(f.layers), "message": f.message,
         "suggestion": f.suggestion, "evidence": f.evidence}
        for f in report.findings
    ]  # fmt: skip
    entry["layers"] = [
        {"name": d.name, "class": d.class_name, "output_shape": list(d.output_shape),
         "activation": _stats(run.summaries.get(d.name, {}))}
        for d in info.layer_details
    ]  # fmt: skip
    entry["seconds"] = round(time.perf_counter() - started, 3)
    return entry


def _stats(kinds: dict[str, Any]) -> dict[str, Any] | None:
    s = kinds.get("activation")
    if s is None:
        return None
    return {"mean": s.mean, "std": s.std, "min": s.min, "max": s.max, "zero_fraction": s.zero_fraction,
            "nan": s.nan, "inf": s.posinf + s.neginf}  # fmt: skip


def shard(files: Sequence[Path], spec: str | None) -> list[Path]:
    """The I-th (0-based) of N interleaved slices of the sorted list: every file in exactly one shard."""
    if spec is None:
        return list(files)
    match = re.fullmatch(r"(\d+)/(\d+)", spec)
    if not match or int(match[2]) == 0 or int(match[1]) >= int(match[2]):
        raise ValueError(f"Expected --shard I/N with 0 <= I < N (e.g. 0/4); received {spec!r}.")
    index, count = int(match[1]), int(match[2])
    return sorted(files)[index::count]


ProgressHook = Callable[[dict[str, Any]], None]
