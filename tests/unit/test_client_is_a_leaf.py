"""`layerscope.client` is a leaf: a user who installs it to talk to a server needs no TensorFlow, Keras,
service or command-line code on the import path, so none of it may be imported, not even lazily."""

from __future__ import annotations

import subprocess
import sys

UNIMPORTABLE = """
import importlib.abc, sys

FORBIDDEN = ("tensorflow", "keras", "layerscope.service", "layerscope.cli", "typer", "rich")

class Unimportable(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
            raise ImportError(f"{name} is unimportable in this interpreter")
        return None

sys.meta_path.insert(0, Unimportable())
"""


def run_isolated(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", UNIMPORTABLE + code], capture_output=True, text=True, timeout=120)


def test_every_client_module_imports_and_a_client_opens_with_tensorflow_and_the_service_unimportable() -> None:
    done = run_isolated(
        "import importlib, pkgutil, layerscope.client as client\n"
        "for module in pkgutil.walk_packages(client.__path__, 'layerscope.client.'):\n"
        "    importlib.import_module(module.name)\n"
        "with client.Client('127.0.0.1:1', timeout=1):\n"
        "    pass\n"
        "client.AsyncClient('127.0.0.1:1', timeout=1)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('layerscope.'))))\n"
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert {"layerscope.client._sync", "layerscope.client._async", "layerscope.client.codec"} <= loaded
    assert {"layerscope.v1.inspector_pb2_grpc", "layerscope.v1.tensor_pb2"} <= loaded


def test_the_isolation_really_refuses_what_it_names() -> None:
    """Guards the test above: were the finder to let TensorFlow through, that test would prove nothing."""
    for module in ("tensorflow", "keras", "layerscope.service.app", "layerscope.cli.app"):
        done = run_isolated(f"import {module}")
        assert done.returncode != 0 and "unimportable in this interpreter" in done.stderr, module
