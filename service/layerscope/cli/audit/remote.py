"""Audits through a running server: load each file transiently, diagnose it with the server's rules, unload it.

A transient upload never enters the server's repository (no version, no tombstone, no folder is left), its
runs are stored with kind "audit", and no metric, alert or live monitoring counts it. The server loads and
diagnoses it with the code a local audit runs (`open_model`, `model_diagnosis.diagnose`), and the entry is
built here by the same `report.described` from what the client received; a failure's code is its gRPC
status, as the local audit names it. This adapter stays in the CLI: the service never imports the client.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from layerscope.client import Client, LayerscopeError
from layerscope.service.audit import report
from layerscope.service.audit.batch import Arrays, Training


def entries(
    files: Sequence[Path], inputs: Arrays, target: str, token: str | None, training: Training | None = None
) -> Iterator[report.Entry]:
    """Entries in the order of `files`; the server keeps nothing of them."""
    with Client(target, token=token, timeout=600) as client:
        for path in files:
            yield audit_file(client, path, inputs, training)


def audit_file(client: Client, path: Path, inputs: Arrays, training: Training | None = None) -> report.Entry:
    started = time.perf_counter()
    # Unique, so that audits running side by side (two CI jobs, one file name) never meet on the server.
    name = f"audit-{re.sub(r'[^A-Za-z0-9._-]', '-', path.stem)[:100]}-{secrets.token_hex(4)}"
    try:
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        message = f"Expected a readable .keras file; received {str(path)!r}: {exc}"
        return report.failed(str(path), "", "invalid-argument", message, time.perf_counter() - started)
    try:
        info = client.upload_model(name, path, transient=True)
        try:
            if training is not None:
                diagnosis = client.diagnose(
                    name, inputs, version=info.version, y=training.targets, probe_steps=training.probe_steps
                )
            else:
                diagnosis = client.diagnose(name, inputs, version=info.version)
            run = client.get_run(diagnosis.run_id)
        finally:
            client.unload_model(name, version=info.version)  # a transient model's file goes with it
    except LayerscopeError as exc:
        return report.failed(str(path), sha256, exc.code_name, exc.message, time.perf_counter() - started)
    activations = {name: kinds["activation"] for name, kinds in run.summaries.items() if "activation" in kinds}
    seconds = time.perf_counter() - started
    return report.described(str(path), sha256, info, activations, diagnosis.findings, seconds, diagnosis.probe)
