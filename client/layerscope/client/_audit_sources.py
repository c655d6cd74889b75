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

Arrays = dict[str, np.ndarray] | None
_diagnoser: Any = None  # one per worker process, built by the initializer


def _start_worker(custom_objects: str | None) -> None:
    """Import TensorFlow and build the rules once per worker, not once per model."""
    global _diagnoser
    from layerscope.service.diagnosis.diagnoser import Diagnoser

    _load_custom_objects(custom_objects)
    _diagnoser = Diagnoser()


def _load_custom_objects(path: str | None) -> None:
    if path:
        import importlib.util

        spec = importlib.util.spec_from_file_location("layerscope_custom_objects", path)
        if spec is None or spec.loader is None:
            raise ValueError(f"Expected a Python file for --custom-objects; received {path!r}.")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # a trusted local file, by the user's choice (local audits only)


def _audit_one(path: str, inputs: Arrays, trusted: bool) -> dict[str, Any]:
    from layerscope.service.audit import audit_file, model_entry

    return model_entry(audit_file(Path(path), _diagnoser, inputs, trusted=trusted))


def local(files: Sequence[Path], inputs: Arrays, jobs: int, custom_objects: str | None) -> Iterator[dict[str, Any]]:
    trusted = custom_objects is not None
    if jobs <= 1:
        _start_worker(custom_objects)
        for path in files:
            yield _audit_one(str(path), inputs, trusted)
        return
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(custom_objects,)) as pool:
        yield from pool.map(_audit_one, [str(p) for p in files], [inputs] * len(files), [trusted] * len(files))


def remote(files: Sequence[Path], inputs: Arrays, target: str, token: str | None) -> Iterator[dict[str, Any]]:
    """The same audit through a running server: upload, diagnose with the same rules, unload."""
    from layerscope.client._sync import Client
    from layerscope.client.errors import LayerscopeError

    with Client(target, token=token, timeout=600) as client:
        for path in files:
            yield _remote_one(client, path, inputs, LayerscopeError)


def _remote_one(client: Any, path: Path, inputs: Arrays, failure: type[Exception]) -> dict[str, Any]:
    import hashlib
    import time

    started = time.perf_counter()
    sha = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    name = "audit-" + re.sub(r"[^A-Za-z0-9._-]", "-", path.stem)[:100]
    entry: dict[str, Any] = {"source": str(path), "sha256": sha, "parameters": 0, "error": None, "findings": []}
    try:
        info = client.upload_model(name, path)
        try:
            report = client.diagnose(name, inputs, version=info.version)
            run = client.get_run(report.run_id)
        finally:
            client.unload_model(name, version=info.version)
    except (failure, OSError) as exc:
        entry.update(error={"code": type(exc).__name__, "message": getattr(exc, "message", str(exc))}, layers=[])
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
