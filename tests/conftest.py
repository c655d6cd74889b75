"""Shared fixtures: real Keras models saved to real archives, and a real server on a free port; and the two
tiers of the suite.

The fast tier (`-m "not slow"`) is every test that starts no server, no subprocess and no TensorFlow. What
is slow is named here, by path (SLOW_PATHS: the folders and modules that import TensorFlow or start servers
and processes throughout) or by fixture (SLOW_FIXTURES), and by a `pytest.mark.slow` on single tests of
otherwise fast modules. With slow tests deselected, the slow paths are not even collected, so no TensorFlow
is imported, and the run fails if a fast test imports it anyway (`_TensorFlowGuard`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
from _pytest.mark.expression import Expression

TESTS = Path(__file__).resolve().parent
SLOW_PATHS = frozenset(
    TESTS / p
    for p in (
        "diagnosis",  # Keras models throughout
        "integration",  # servers, the command line in subprocesses
        "interop",  # a server, Triton's client
        "security",  # servers, hostile archives loaded by Keras
        "unit/test_capture_engine.py",
        "unit/test_capture_gradients.py",
        "unit/test_capture_weights.py",
        "unit/test_model_formats.py",
        "unit/test_model_lifecycle.py",
        "unit/test_summary_statistics.py",
        "unit/test_training_probe.py",
        "unit/test_cli_startup.py",  # a fresh interpreter
        "unit/test_client_is_a_leaf.py",  # fresh interpreters
        "unit/test_generated_code.py",  # protoc
    )
)
"""Folders and modules whose every test is slow: they import TensorFlow, or start servers or processes."""

SLOW_FIXTURES = frozenset({"server", "client"})
"""Fixtures that start a server: a test of an otherwise fast module that asks for one is slow."""

TENSORFLOW_BUT_FAST: frozenset[Path] = frozenset()
"""Fast modules that import TensorFlow without running it (none: the use cases name the engine's types for type
checking only). Such a module imports it in a fixture and runs last, so the guard checks every other fast test
first."""


@dataclass
class ServerHandle:
    """A layerscope server running in its own thread and event loop, as a real process would."""

    app: Any
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    repository: Path
    database_url: str

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.app.metrics_port}/metrics"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.app.stop(grace=1.0), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


def start_server(tmp: Path, wait_for_models: bool = True, **overrides: Any) -> ServerHandle:
    """A server on free ports in `tmp`; with `wait_for_models`, returned once the models its repository held at
    start have loaded (the server itself answers, health SERVING, before that)."""
    from layerscope.service import app as application
    from layerscope.service.settings import Settings

    repository = tmp / "repository"
    database_url = overrides.pop("database_url", f"sqlite:///{tmp / 'runs.db'}")
    settings = Settings(
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        model_repository=repository,
        database_url=database_url,
        spool_dir=overrides.pop("spool_dir", tmp / "spool"),
        # A child-process trial load costs seconds per upload; its own test turns it on.
        isolated_loading=overrides.pop("isolated_loading", False),
        # In-process inference unless a test asks for workers: a worker is a TensorFlow process of its own.
        model_workers=overrides.pop("model_workers", False),
        **overrides,
    )
    loop = asyncio.new_event_loop()
    started: Future[Any] = Future()

    def run() -> None:
        asyncio.set_event_loop(loop)
        task = loop.create_task(application.start(settings))
        task.add_done_callback(
            lambda t: started.set_exception(t.exception()) if t.exception() else started.set_result(t.result())  # type: ignore[arg-type]
        )
        loop.run_forever()

    thread = threading.Thread(target=run, name="layerscope-test-server", daemon=True)
    thread.start()
    handle = ServerHandle(started.result(timeout=120), loop, thread, repository, database_url)
    if wait_for_models:
        asyncio.run_coroutine_threadsafe(handle.app.models_loaded(), loop).result(timeout=300)
    return handle


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start_server(tmp_path_factory.mktemp("server"))
    yield handle
    handle.stop()


@pytest.fixture()
def client(server: ServerHandle) -> Iterator[Any]:
    from layerscope.client import Client

    with Client(server.target, timeout=120) as c:
        yield c


def _is_slow_path(path: Path) -> bool:
    return any(path == slow or slow in path.parents for slow in SLOW_PATHS)


def _slow_deselected(config: pytest.Config) -> bool:
    """True when `-m` leaves out every test marked slow, whatever its other marks (`not slow`, `not slow and
    not postgres`; not `postgres`, which a slow test may match)."""
    markexpr = config.getoption("markexpr")
    if not markexpr:
        return False
    expression = Expression.compile(markexpr)
    others = sorted(set(re.findall(r"[A-Za-z_]\w*", markexpr)) - {"and", "or", "not", "slow"})
    combinations = itertools.product((False, True), repeat=len(others))
    return not any(
        expression.evaluate(_having({"slow", *(name for name, on in zip(others, values, strict=True) if on)}))
        for values in combinations
    )


def _having(marks: set[str]) -> Callable[..., bool]:
    return lambda name, **_: name in marks


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With slow tests deselected, slow modules are not imported at all: collecting them costs TensorFlow."""
    if _slow_deselected(config) and _is_slow_path(collection_path):
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _is_slow_path(item.path) or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    if _slow_deselected(config):
        items.sort(key=lambda item: item.path in TENSORFLOW_BUT_FAST)  # stable: the rest keep their order
        config.pluginmanager.register(_TensorFlowGuard(), "layerscope-tensorflow-guard")


class _TensorFlowGuard:
    """In the fast tier: collection must import no TensorFlow, and no fast test may import it (until one of
    TENSORFLOW_BUT_FAST has: from then on nothing can be told)."""

    def __init__(self) -> None:
        self._loaded_before = False

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if _tensorflow_loaded():
            raise pytest.UsageError(
                "Expected the fast tier (-m 'not slow') to collect without TensorFlow; a test module outside "
                "SLOW_PATHS (tests/conftest.py) imports it. Add the module there, or import TensorFlow inside "
                "tests marked slow."
            )

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self._loaded_before = _tensorflow_loaded()

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        if not self._loaded_before and _tensorflow_loaded() and item.path not in TENSORFLOW_BUT_FAST:
            pytest.fail(f"Expected no TensorFlow in the fast tier; {item.nodeid} imported it: mark it slow.")


def _tensorflow_loaded() -> bool:
    return "tensorflow" in sys.modules or "keras" in sys.modules
